import { HttpRequestError, LimitExceededRpcError, ResponseBodyTooLargeError, RpcRequestError, TimeoutError } from 'viem'
import { describe, expect, test } from 'vitest'
import { defaultPagePolicy, grow, isRangeError, isRateLimit, isRetryable, shrink } from '../src/onchain/range.ts'
import { withRetry } from '../src/onchain/rpc.ts'

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

  test('behavior: a rate limit under the range code -32005 is retried later, never taken for a range refusal', () => {
    const rpc = (code: number, message: string) => new RpcRequestError({ body: {}, url: 'http://x', error: { code, message } })
    for (const error of [
      rpc(-32005, 'daily request count exceeded, request rate limited'),
      rpc(-32005, 'project ID request rate exceeded'),
      new LimitExceededRpcError(rpc(-32005, 'Too Many Requests')),
    ]) {
      expect(isRangeError(error), error.message).toBe(false)
      expect(isRateLimit(error), error.message).toBe(true)
      expect(isRetryable(error), error.message).toBe(true)
    }
    expect(isRateLimit(rpc(-32005, 'query returned more than 10000 results'))).toBe(false)
    // Size refusals that happen to use rate-like words stay range refusals.
    for (const message of [
      'Max request count exceeded: eth_getLogs block range must be at most 1000',
      'Requested range exceeds the separate limit of 5000 blocks',
    ]) {
      expect(isRateLimit(rpc(-32005, message)), message).toBe(false)
      expect(isRangeError(rpc(-32005, message)), message).toBe(true)
    }
    expect(isRateLimit(rpc(-32005, 'rate limit exceeded'))).toBe(true)
    expect(isRateLimit(rpc(-32000, 'Too Many Requests'))).toBe(true)
    // Rate limits that mention logs or blocks stay rate limits.
    expect(isRateLimit(rpc(-32005, 'Too many requests: exceeded 50 logs queries per minute'))).toBe(true)
    expect(isRateLimit(rpc(-32005, 'request rate exceeded, see https://example.com/limits#blocks'))).toBe(true)
  })

  test('behavior: withRetry retries a rate limit on any method, and leaves a getLogs range refusal to its caller', async () => {
    const rpc = (code: number, message: string) => new RpcRequestError({ body: {}, url: 'http://x', error: { code, message } })
    const failing = (error: Error, times: number) => {
      let calls = 0
      return {
        calls: () => calls,
        fn: async () => {
          if (++calls <= times) throw error
          return 'ok'
        },
      }
    }
    const limited = failing(rpc(-32005, 'request rate limited'), 2)
    await expect(withRetry('eth_getBlockByNumber', limited.fn, { retryDelayMs: 1 })).resolves.toBe('ok')
    expect(limited.calls()).toBe(3)
    const tooWide = failing(rpc(-32005, 'query returned more than 10000 results'), 1)
    await expect(withRetry('eth_getLogs', tooWide.fn, { retryDelayMs: 1 })).rejects.toThrow(/more than 10000/)
    expect(tooWide.calls()).toBe(1)
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
