import { HttpRequestError, LimitExceededRpcError, ResponseBodyTooLargeError, RpcRequestError, TimeoutError } from 'viem'
import { describe, expect, test } from 'vitest'
import { defaultPagePolicy, grow, isRangeError, isRetryable, shrink } from '../src/onchain/range.ts'

describe('getLogs paging', () => {
  test('default: range and size refusals ask for less', () => {
    const rpc = (code: number, message: string) => new RpcRequestError({ body: {}, url: 'http://x', error: { code, message } })
    for (const error of [
      rpc(-32005, 'query returned more than 10000 results'),
      rpc(-32602, 'block range too large'),
      rpc(-32000, 'Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range'),
      rpc(-32600, 'exceed maximum block range: 5000'),
      rpc(-32614, 'eth_getLogs is limited to a 10,000 range'),
      rpc(-32000, 'eth_getLogs is limited to a 1000 blocks range'),
      new ResponseBodyTooLargeError({ maxSize: 10, size: 11 }),
      new LimitExceededRpcError(new Error('limit')),
    ])
      expect(isRangeError(error), error.message).toBe(true)
    expect(isRangeError(rpc(429, 'Too Many Requests'))).toBe(false)
    expect(isRangeError(new Error('execution reverted'))).toBe(false)
  })

  test('behavior: transient failures are retried, others are not', () => {
    expect(isRetryable(new TimeoutError({ body: {}, url: 'http://x' }))).toBe(true)
    expect(isRetryable(new HttpRequestError({ url: 'http://x', status: 503 }))).toBe(true)
    expect(isRetryable(new HttpRequestError({ url: 'http://x', status: 429 }))).toBe(true)
    expect(isRetryable(new HttpRequestError({ url: 'http://x', details: 'fetch failed' }))).toBe(true)
    expect(isRetryable(new HttpRequestError({ url: 'http://x', status: 401 }))).toBe(false)
    expect(isRetryable(new Error('invalid params'))).toBe(false)
  })

  test('behavior: pages shrink by half and grow toward the target log count', () => {
    expect(shrink(1000)).toBe(500)
    expect(shrink(1)).toBe(1)
    const target = defaultPagePolicy.targetLogs
    expect(grow(100, 0)).toBe(200)
    expect(grow(100, target * 10)).toBe(10)
    expect(grow(100, target / 2)).toBe(200)
    expect(grow(100, target)).toBe(100)
    expect(grow(defaultPagePolicy.maxBlocks, 0)).toBe(defaultPagePolicy.maxBlocks)
  })
})
