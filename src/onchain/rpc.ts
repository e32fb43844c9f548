import { type PublicClient, createPublicClient, http, numberToHex, toFunctionSelector } from 'viem'
import { InvalidArgumentError } from '../engine/errors.ts'
import { RpcFailedError } from './errors.ts'
import type { RpcLog } from './decode.ts'
import { isRangeError, isRetryable, isTimeout } from './range.ts'

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

export async function withRetry<T>(
  method: string,
  fn: () => Promise<T>,
  options: RpcOptions = {},
  retryable: (error: unknown) => boolean = isRetryable,
): Promise<T> {
  const attemptsMax = options.attemptsMax ?? 8
  const retryDelayMs = options.retryDelayMs ?? 50
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (error) {
      // A range error of getLogs is the caller's to handle (it asks for less), never retried as is.
      if ((method === 'eth_getLogs' && isRangeError(error)) || !retryable(error)) throw error
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
  // A range of several blocks that timed out is not asked again as it is: the caller asks for
  // less, as after a range error (a node may take longer to answer a range than it may wait).
  const several = 'fromBlock' in params && params.toBlock > params.fromBlock
  return (await withRetry(
    'eth_getLogs',
    () => request(client)({ method: 'eth_getLogs', params: [{ address: params.address, topics: [params.topic], ...where }] }),
    options,
    several ? (error) => isRetryable(error) && !isTimeout(error) : isRetryable,
  )) as RpcLog[]
}

const spendStateSelector = toFunctionSelector('spendState(address,address)')
/** `SpendState` is seven static words; `cumulativeSpent` is the last. */
const spendStateLength = 2 + 7 * 64

/** Answers of a node that has pruned a block's state (not a full archive): it will not have it again. */
const statePrunedPatterns = [/missing trie node/i, /historical state/i, /state .*(not available|unavailable|pruned)/i]
/** Answers of a node that lacks the block itself: behind a load balancer, another node may have it. */
const blockUnknownPatterns = [/(header|block) (for hash )?not found/i, /unknown block/i, /resource not found/i]

function matches(error: unknown, patterns: RegExp[], code?: number): boolean {
  for (let e: unknown = error, i = 0; e && i < 8; i++, e = (e as { cause?: unknown }).cause) {
    const x = e as { code?: number; message?: string; details?: string; shortMessage?: string }
    if (code !== undefined && x.code === code) return true
    const text = [x.shortMessage, x.details, x.message].filter(Boolean).join(' ')
    if (patterns.some((p) => p.test(text))) return true
  }
  return false
}

/** The node does not have the block a request named by hash (-32001: resource not found). */
export function isBlockUnknown(error: unknown): boolean {
  return matches(error, blockUnknownPatterns, -32001)
}

/**
 * The SpendingHook's `cumulativeSpent` of `(account, token)` after the block `blockHash`
 * names, read with `eth_call` at that hash (EIP-1898): a node that lacks the block errors
 * instead of answering. That error is retried (another node may have the block), then
 * thrown. Resolves undefined when the answer cannot be had: the block's state is pruned,
 * the call reverts, the answer is not a `SpendState`; the tracker then reads those blocks'
 * logs by hash. An empty answer (no code at `hook` in that block) is 0: nothing was metered
 * there yet.
 */
export async function getCumulativeSpent(
  client: PublicClient,
  params: { hook: string; account: string; token: string; blockHash: string },
  options?: RpcOptions,
): Promise<bigint | undefined> {
  const data = `${spendStateSelector}${params.account.slice(2).padStart(64, '0')}${params.token.slice(2).padStart(64, '0')}`
  const raw = (await withRetry(
    'eth_call',
    async () => {
      try {
        return await request(client)({ method: 'eth_call', params: [{ to: params.hook, data }, { blockHash: params.blockHash }] })
      } catch (error) {
        if (isBlockUnknown(error)) throw error
        // Any other final answer (pruned state, a revert) is not retried: the caller reads blocks instead.
        if (matches(error, statePrunedPatterns) || isRangeError(error) || !isRetryable(error)) return null
        throw error
      }
    },
    options,
    (error) => isBlockUnknown(error) || isRetryable(error),
  )) as string | null
  if (typeof raw !== 'string') return undefined
  if (raw === '0x') return 0n
  if (raw.length !== spendStateLength) return undefined
  return BigInt(`0x${raw.slice(spendStateLength - 64)}`)
}
