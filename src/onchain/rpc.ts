import { type PublicClient, createPublicClient, http, numberToHex } from 'viem'
import { InvalidArgumentError } from '../engine/errors.ts'
import { RpcFailedError } from './errors.ts'
import type { RpcLog } from './decode.ts'
import { isRangeError, isRetryable } from './range.ts'

/**
 * The few JSON-RPC calls the tracker makes, through a viem client, each retried with
 * backoff a bounded number of times. Results stay raw (hex strings): the tracker decodes
 * only what it needs.
 */
export type RpcOptions = {
  /** Attempts per request, at most (default 8). */
  attemptsMax?: number
  /** First retry delay; doubles per attempt up to 2 s (default 50 ms). */
  retryDelayMs?: number
}

export type BlockHeader = { number: bigint; hash: `0x${string}`; parentHash: `0x${string}` }

/** Checks that `value` is an http(s) URL, the transport the tracker builds from an RPC URL. */
export function assertRpcUrl(value: unknown): asserts value is string {
  let protocol: string | undefined
  try {
    protocol = typeof value === 'string' ? new URL(value).protocol : undefined
  } catch {}
  if (protocol !== 'http:' && protocol !== 'https:')
    throw new InvalidArgumentError({ argument: 'rpcUrl', value, reason: 'an http(s) URL (or pass a viem client)' })
}

export function createRpcClient(rpcUrl: string, { timeoutMs = 10_000 }: { timeoutMs?: number } = {}): PublicClient {
  // Retries are the tracker's own (range errors must not be retried as they are).
  return createPublicClient({ transport: http(rpcUrl, { retryCount: 0, timeout: timeoutMs }) })
}

export async function withRetry<T>(method: string, fn: () => Promise<T>, options: RpcOptions = {}): Promise<T> {
  const attemptsMax = options.attemptsMax ?? 8
  const retryDelayMs = options.retryDelayMs ?? 50
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (error) {
      // A range error is the caller's to handle (it asks for less), never retried as is.
      if (isRangeError(error) || !isRetryable(error)) throw error
      if (attempt >= attemptsMax) throw new RpcFailedError({ method, attempts: attempt, cause: error })
      await new Promise((r) => setTimeout(r, Math.min(2_000, retryDelayMs * 2 ** (attempt - 1))))
    }
  }
}

type Request = (args: { method: string; params?: unknown }) => Promise<unknown>
const request = (client: PublicClient) => client.request as unknown as Request

export async function getChainId(client: PublicClient, options?: RpcOptions): Promise<number> {
  const hex = (await withRetry('eth_chainId', () => request(client)({ method: 'eth_chainId' }), options)) as string
  return Number(hex)
}

export async function getHeader(
  client: PublicClient,
  block: bigint | 'latest',
  options?: RpcOptions,
): Promise<BlockHeader | undefined> {
  const tag = block === 'latest' ? 'latest' : numberToHex(block)
  const raw = (await withRetry(
    'eth_getBlockByNumber',
    () => request(client)({ method: 'eth_getBlockByNumber', params: [tag, false] }),
    options,
  )) as { number: string; hash: string; parentHash: string } | null
  if (!raw) return undefined
  return {
    number: BigInt(raw.number),
    hash: raw.hash.toLowerCase() as `0x${string}`,
    parentHash: raw.parentHash.toLowerCase() as `0x${string}`,
  }
}

/**
 * `eth_getLogs` of one address and topic, over `[fromBlock, toBlock]` or in the one block
 * `blockHash` names (EIP-234: a node that does not have that block answers with an error
 * rather than an empty list). Range errors are thrown as they are.
 */
export async function getRawLogs(
  client: PublicClient,
  params: { address: string; topic: string } & ({ fromBlock: bigint; toBlock: bigint } | { blockHash: `0x${string}` }),
  options?: RpcOptions,
): Promise<RpcLog[]> {
  const where =
    'blockHash' in params
      ? { blockHash: params.blockHash }
      : { fromBlock: numberToHex(params.fromBlock), toBlock: numberToHex(params.toBlock) }
  return (await withRetry(
    'eth_getLogs',
    () => request(client)({ method: 'eth_getLogs', params: [{ address: params.address, topics: [params.topic], ...where }] }),
    options,
  )) as RpcLog[]
}
