import PQueue from 'p-queue'
import { type PublicClient, getAddress } from 'viem'
import type { Guard } from '../engine/guard.ts'
import { InvalidArgumentError } from '../engine/errors.ts'
import type { BindingRow, ChainBlockRow, ChainLogRow } from '../engine/store/types.ts'

export type { BindParameters } from './bindings.ts'
import { type RpcLog, type SpendLog, decodeSpendLog, spendRecordedTopic } from './decode.ts'
import { ChainMismatchError, CursorMovedError, NodeBehindWindowError, ReorgTooDeepError, RpcInconsistentError } from './errors.ts'
import { type PagePolicy, defaultPagePolicy, grow, isRangeError, isRetryable, isTimeout, shrink } from './range.ts'
import { type BindParameters, type ChainScope, assertScope, bindAccount, listBindings, unbindAccount } from './bindings.ts'
import * as reconcile from './reconcile.ts'
import {
  type BlockHeader,
  type RpcOptions,
  assertRpcUrl,
  createRpcClient,
  getChainId,
  getCumulativeSpent,
  getHeader,
  getRawLogs,
  isBlockUnknown,
} from './rpc.ts'

export type CreateTrackerParameters = {
  guard: Guard
  /** JSON-RPC endpoint; or pass a viem `client`. */
  rpcUrl?: string | undefined
  client?: PublicClient | undefined
  chainId: number
  /** The SpendingHook whose `SpendRecorded` logs are followed; any other emitter is ignored. */
  hook: `0x${string}`
  /** First block to read when no cursor is stored yet (default 0). */
  fromBlock?: bigint | undefined
  /** Depth at which a log counts as confirmed (default 12). */
  confirmations?: number | undefined
  /** How often `start()` polls for new blocks (default 2000 ms). */
  pollIntervalMs?: number | undefined
  /** Blocks of hashes kept to undo reorgs; a deeper reorg stops the tracker (default 64). */
  reorgDepthMax?: number | undefined
  /** getLogs and header requests in flight, at most (default 4). */
  rpcConcurrency?: number | undefined
  rpcTimeoutMs?: number | undefined
  /** Attempts per RPC request before its error surfaces (default 8). */
  rpcAttemptsMax?: number | undefined
  rpcRetryDelayMs?: number | undefined
  /** Page sizes in blocks for backfill: first, smallest, largest. */
  pageBlocks?: Partial<PagePolicy> | undefined
  onProgress?: ((progress: SyncProgress) => void) | undefined
  /** Called after each pass of `start()`'s loop with what it did. */
  onSync?: ((result: SyncResult) => void) | undefined
  /** Called when `start()`'s loop meets an error; fatal errors also stop the loop. */
  onError?: ((error: unknown) => void) | undefined
}

export type SyncProgress = {
  phase: 'backfill' | 'follow'
  fromBlock: bigint
  toBlock: bigint
  /** Last block committed to the ledger. */
  cursor: bigint
  logs: number
  elapsedMs: number
}

export type SyncResult = {
  fromBlock: bigint
  toBlock: bigint
  head: bigint
  logs: number
  applied: number
  duplicates: number
  unbound: number
  foreign: number
  reorgs: number
  reverted: number
}

export type TrackerStatus = {
  chainId: number
  hook: `0x${string}`
  running: boolean
  cursor: { blockNumber: bigint; blockHash: string } | null
  head: bigint | null
  lagBlocks: bigint | null
  confirmed: number
  unconfirmed: number
  unassigned: { unbound: number; foreign: number; recent: ChainLogRow[] }
  error: Error | null
}

export type Tracker = {
  bind(parameters: BindParameters): Promise<BindingRow>
  unbind(parameters: { account: `0x${string}`; sender?: `0x${string}` | undefined }): Promise<boolean>
  bindings(): Promise<BindingRow[]>
  syncOnce(): Promise<SyncResult>
  start(): void
  stop(): Promise<void>
  status(): Promise<TrackerStatus>
}

/** Errors on which `start()`'s loop stops by itself: following on would diverge from the chain. */
export function stopsTracker(error: unknown): boolean {
  return error instanceof ReorgTooDeepError || error instanceof ChainMismatchError
}

/** The chain moved under a pass (a reorg, or blocks replaced between two requests). */
class ChainMoved extends Error {
  constructor(readonly atCursor: boolean) {
    super('chain moved')
  }
}

/**
 * The node answering lacks a block the ledger already has (behind a load balancer, nodes
 * lag one another). Only another hash at a height is evidence of a reorg: a missing block
 * is waited for, since rolling back spends that are still on the chain would free budget
 * that is already spent.
 */
class NodeBehind extends Error {
  constructor() {
    super('node behind')
  }
}

/** A bound `(account, token)`: the hook counts its spends in `cumulativeSpent`. */
type Pair = { key: string; account: string; token: string }
/** `cumulativeSpent` of each pair after one block; undefined when no node could say. */
type Counters = Map<string, bigint> | undefined
/** A block that bounds a range of logs, with the counters after it. */
type Anchor = { number: bigint; hash: string | undefined; counters: Counters }

const passesMax = 32
/** Pages answered in a row after which a range refusal no longer caps growth. */
const capPagesMax = 256
const recentUnassignedMax = 20
/** A range this narrow that the counters do not confirm is read block by block, by hash. */
const bisectBlocksMin = 8n
/** Blocks read by hash in one round, at most: headers in memory stay bounded. */
const byHashChunkBlocks = 256
const uint256Max = 2n ** 256n - 1n

/**
 * Follows the `SpendRecorded` logs of one SpendingHook on one chain and reconciles them into
 * the guard's ledger, exactly once, across reorgs, restarts and failing RPC nodes.
 *
 * @example
 * import { createGuard, createTracker } from 'spendguard'
 *
 * const guard = await createGuard()
 * const tracker = createTracker({ guard, rpcUrl: 'http://127.0.0.1:8545', chainId: 31337, hook })
 * await tracker.bind({ account, taskId: 'task-1', token: usdc })
 * await tracker.syncOnce()
 * tracker.start()
 */
export function createTracker(parameters: CreateTrackerParameters): Tracker {
  const p = parameters
  if (!p || typeof p !== 'object') throw new InvalidArgumentError({ argument: 'parameters', value: p, reason: 'an object' })
  const guard = p.guard
  assertScope({ chainId: p.chainId, hook: p.hook })
  const hook = p.hook.toLowerCase() as `0x${string}`
  const chainId = p.chainId
  const fromBlock = p.fromBlock ?? 0n
  if (typeof fromBlock !== 'bigint' || fromBlock < 0n)
    throw new InvalidArgumentError({ argument: 'fromBlock', value: fromBlock, reason: 'a bigint ≥ 0' })
  const confirmations = BigInt(nonNegative('confirmations', p.confirmations ?? 12))
  const reorgDepthMax = nonNegative('reorgDepthMax', p.reorgDepthMax ?? 64)
  const pollIntervalMs = nonNegative('pollIntervalMs', p.pollIntervalMs ?? 2_000)
  const rpcConcurrency = Math.max(1, nonNegative('rpcConcurrency', p.rpcConcurrency ?? 4))
  const policy: PagePolicy = { ...defaultPagePolicy, ...p.pageBlocks }
  const rpcOptions: RpcOptions = { attemptsMax: p.rpcAttemptsMax, retryDelayMs: p.rpcRetryDelayMs }
  if (!p.client && !p.rpcUrl) throw new InvalidArgumentError({ argument: 'rpcUrl', value: p.rpcUrl, reason: 'an RPC URL or a client' })
  if (!p.client) assertRpcUrl(p.rpcUrl)
  const client = p.client ?? createRpcClient(p.rpcUrl as string, { timeoutMs: p.rpcTimeoutMs })
  const store = guard.internal.store
  const scope: ChainScope = { chainId, hook }
  // Its own queue: counters are read from inside page fetches, which hold slots of theirs.
  const stateQueue = new PQueue({ concurrency: rpcConcurrency })

  let pageBlocks = policy.initialBlocks
  let chainChecked = false
  let lastHead: bigint | null = null
  let lastError: Error | null = null
  let running: Promise<SyncResult> | undefined
  /** The polling loop `start()` runs; `stop` asks it to end after its pass. */
  type Run = { stop: boolean; wake: (() => void) | undefined; done: Promise<void> }
  let run: Run | undefined
  const stopping = () => run?.stop === true

  async function ensureChain(): Promise<void> {
    if (chainChecked) return
    const actual = await getChainId(client, rpcOptions)
    if (actual !== chainId) throw new ChainMismatchError({ expected: chainId, actual })
    chainChecked = true
  }

  // A provider with a fixed range cap: pages grow back past it after each refusal, and would
  // be refused every other page. Growth instead stops halfway between the widest range
  // answered since the narrowest refused and that refusal, so the cap is found in a few
  // requests. Forgotten after `capPagesMax` pages answered in a row: a refusal may have been
  // about one dense range, not the provider's cap.
  let narrowestRefused: number | undefined
  let widestAnswered = 0
  let answeredInRow = 0

  /** Logs of `[from, to]`; a range the provider refuses is split in halves, never skipped. */
  async function fetchRange(from: bigint, to: bigint): Promise<SpendLog[]> {
    const blocks = Number(to - from + 1n)
    try {
      const raw = await getRawLogs(client, { address: hook, topic: spendRecordedTopic, fromBlock: from, toBlock: to }, rpcOptions)
      let next = grow(blocks, raw.length, policy)
      if (narrowestRefused !== undefined) {
        if (blocks < narrowestRefused) widestAnswered = Math.max(widestAnswered, blocks)
        if (++answeredInRow >= capPagesMax) narrowestRefused = undefined
        else next = Math.min(next, Math.max(policy.minBlocks, widestAnswered + Math.floor((narrowestRefused - widestAnswered) / 2)))
      }
      pageBlocks = next
      // Only logs of the asked range count; anything else a node returns is not ours.
      return decodeWhere(raw, (log) => log.blockNumber >= from && log.blockNumber <= to)
    } catch (error) {
      // A range error asks for less. So may a refusal worded in a way no pattern knows: any
      // final answer (not a transient failure, whose retries ran out) to a range of several
      // blocks is asked again in halves, down to one block, where it surfaces. So does a range
      // the node could not answer in time; a node that answers nothing in time fails along one
      // line of halves (a request per halving), not over the whole range.
      if (from === to || (!isRangeError(error) && !isTimeout(error) && isRetryable(error))) throw error
      narrowestRefused = Math.min(narrowestRefused ?? blocks, blocks)
      if (widestAnswered >= narrowestRefused) widestAnswered = 0
      answeredInRow = 0
      pageBlocks = Math.min(pageBlocks, shrink(blocks, policy))
      const mid = from + (to - from) / 2n
      const left = await fetchRange(from, mid)
      const right = await fetchRange(mid + 1n, to)
      return left.concat(right)
    }
  }

  /** Logs of the one block `header` names. */
  async function fetchBlock(header: BlockHeader): Promise<SpendLog[]> {
    try {
      const raw = await getRawLogs(client, { address: hook, topic: spendRecordedTopic, blockHash: header.hash }, rpcOptions)
      return decodeWhere(raw, () => true)
    } catch (error) {
      // The node that served the header has the block; the one asked for its logs, still not:
      // behind it, or the block was reorged out meanwhile. Either way the next pass reads anew.
      throw isBlockUnknown(error) ? new NodeBehind() : error
    }
  }

  /** The bound `(account, token)` pairs: their spends are the ones summed into budgets. */
  async function boundPairs(): Promise<Pair[]> {
    const pairs = new Map<string, Pair>()
    for (const b of await store.chain.bindings(chainId, hook)) {
      const key = reconcile.pairKey(b.account, b.token)
      pairs.set(key, { key, account: b.account, token: b.token })
    }
    return [...pairs.values()]
  }

  /** Each pair's `cumulativeSpent` after the block `hash` names; undefined if any is unknown. */
  async function readCounters(pairs: Pair[], hash: string): Promise<Counters> {
    const values = await Promise.all(
      pairs.map((pair) => stateQueue.add(() => getCumulativeSpent(client, { hook, account: pair.account, token: pair.token, blockHash: hash }, rpcOptions))),
    ).catch((error: unknown) => {
      // No node asked had the block yet: wait for them, as for a header they lack.
      throw isBlockUnknown(error) ? new NodeBehind() : error
    })
    const counters = new Map<string, bigint>()
    for (const [i, pair] of pairs.entries()) {
      const value = values[i]
      if (value === undefined) return undefined
      counters.set(pair.key, value)
    }
    return counters
  }

  /**
   * Whether `logs` (those of the blocks between `from` and `to`) hold every spend of every
   * pair: each pair's logs, in order, must carry its counter from its value after `from` to
   * its value after `to` one amount at a time. A counter at 2^256 − 1 counts nothing more.
   */
  function witnessed(pairs: Pair[], from: Anchor, to: Anchor, logs: SpendLog[]): boolean {
    if (!from.counters || !to.counters) return false
    const running = new Map(from.counters)
    for (const log of logs) {
      const key = reconcile.pairKey(log.account, log.token)
      const before = running.get(key)
      if (before === undefined) continue
      const after = before + log.amount
      if (log.cumulativeSpent !== after) return false
      running.set(key, after)
    }
    for (const pair of pairs) {
      const end = to.counters.get(pair.key)
      if (end === undefined || end >= uint256Max || running.get(pair.key) !== end) return false
    }
    return true
  }

  /**
   * The logs of the blocks after `from` up to `to`, complete for every bound pair. `logs` is
   * a range answer, which a node lacking the newest blocks gives without them; the hook's
   * counters, read by block hash, say whether anything is missing. A range they do not
   * confirm is halved (one header and one counter read per pair at its middle) down to a few
   * blocks, which are read by hash; so is a range whose counters cannot count (saturated,
   * or state a node no longer keeps). What is returned never depends on a range answer the
   * counters did not confirm.
   */
  async function settle(pairs: Pair[], from: Anchor, to: Anchor, logs: SpendLog[]): Promise<SpendLog[]> {
    if (pairs.length === 0 || witnessed(pairs, from, to, logs)) return logs
    const saturated = from.counters && [...from.counters.values()].some((v) => v >= uint256Max)
    if (!from.counters || !to.counters || saturated || to.number - from.number <= bisectBlocksMin) return readBlocks(from, to)
    const middle = from.number + (to.number - from.number) / 2n
    const header = await getHeader(client, middle, rpcOptions)
    if (!header) throw new NodeBehind()
    const mid: Anchor = { number: middle, hash: header.hash, counters: await readCounters(pairs, header.hash) }
    const left = await settle(pairs, from, mid, logs.filter((l) => l.blockNumber <= middle))
    const right = await settle(pairs, mid, to, logs.filter((l) => l.blockNumber > middle))
    return left.concat(right)
  }

  /**
   * Logs of the blocks after `from` up to `to`, block by block by hash, each header linked to
   * its parent from `from` to `to`: a node lacking a block has no header or logs to give.
   */
  async function readBlocks(from: Anchor, to: Anchor): Promise<SpendLog[]> {
    const queue = new PQueue({ concurrency: rpcConcurrency })
    const out: SpendLog[] = []
    let parent = from.hash
    for (let a = from.number + 1n; a <= to.number; a += BigInt(byHashChunkBlocks)) {
      const b = a + BigInt(byHashChunkBlocks) - 1n < to.number ? a + BigInt(byHashChunkBlocks) - 1n : to.number
      const numbers: bigint[] = []
      for (let n = a; n <= b; n++) numbers.push(n)
      const headers = await Promise.all(numbers.map((n) => queue.add(() => getHeader(client, n, rpcOptions)) as Promise<BlockHeader | undefined>))
      for (const h of headers) {
        if (!h) throw new NodeBehind()
        // Final blocks that do not link: nodes on different chains answered; the pass starts over.
        if (parent !== undefined && h.parentHash !== parent) throw new ChainMoved(false)
        parent = h.hash
      }
      const perBlock = await Promise.all(headers.map((h) => queue.add(() => fetchBlock(h as BlockHeader)) as Promise<SpendLog[]>))
      for (const logs of perBlock) for (const log of logs) out.push(log)
    }
    if (parent !== to.hash) throw new ChainMoved(false)
    return sortLogs(out)
  }

  /** The hook's `SpendRecorded` logs among `raw` that `keep` accepts. */
  function decodeWhere(raw: RpcLog[], keep: (log: SpendLog) => boolean): SpendLog[] {
    const out: SpendLog[] = []
    for (const log of raw) {
      const decoded = decodeSpendLog(log, hook)
      if (decoded && keep(decoded)) out.push(decoded)
    }
    return out
  }

  function blockRow(h: BlockHeader): ChainBlockRow {
    return { chainId, hook, number: h.number, hash: h.hash, parentHash: h.parentHash }
  }

  /**
   * Logs in chain order, each position once. A node may list a log twice in one answer
   * (the copy is dropped); two different logs at one position are an error, never a guess.
   */
  function sortLogs(logs: SpendLog[]): SpendLog[] {
    logs.sort((a, b) => (a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1))
    let kept = 0
    for (let i = 0; i < logs.length; i++) {
      const log = logs[i] as SpendLog
      const prior = kept > 0 ? (logs[kept - 1] as SpendLog) : undefined
      if (prior && prior.blockNumber === log.blockNumber && prior.logIndex === log.logIndex) {
        if (!sameLog(prior, log)) throw new RpcInconsistentError({ blockNumber: log.blockNumber, logIndex: log.logIndex })
        continue
      }
      logs[kept++] = log
    }
    logs.length = kept
    return logs
  }

  async function storedCursor(): Promise<reconcile.Cursor | null> {
    const c = await store.chain.cursor(chainId, hook)
    return c ? { number: c.blockNumber, hash: c.blockHash } : null
  }

  function emptyResult(from: bigint, head: bigint): SyncResult {
    return { fromBlock: from, toBlock: from - 1n, head, logs: 0, applied: 0, duplicates: 0, unbound: 0, foreign: 0, reorgs: 0, reverted: 0 }
  }

  function add(result: SyncResult, applied: reconcile.ApplyResult, logs: number, to: bigint): void {
    result.logs += logs
    result.applied += applied.applied
    result.duplicates += applied.duplicates
    result.unbound += applied.unbound
    result.foreign += applied.foreign
    result.toBlock = to
  }

  /** One pass from the stored cursor to the head. Throws ChainMoved when a reorg shows. */
  async function pass(result: SyncResult): Promise<void> {
    const head = await getHeader(client, 'latest', rpcOptions)
    if (!head) throw new Error('the node returned no latest block')
    lastHead = head.number
    result.head = head.number
    let cursor = await storedCursor()
    if (cursor) {
      if (cursor.number > head.number) {
        // The node's head is below the ledger's cursor: a node behind on the same chain (its
        // head is a block the ledger kept) is waited for; another hash there, or a head below
        // the kept window (a node far behind, or a chain started over), goes to handleReorg.
        const kept = (await store.chain.blocks(chainId, hook, head.number)).at(-1)
        if (kept?.number === head.number && kept.hash === head.hash) throw new NodeBehind()
        throw new ChainMoved(true)
      }
      // The cursor's block is checked however far the head has moved: a reorg while the
      // tracker was away (or busy) may have replaced blocks the ledger already applied.
      const at = await getHeader(client, cursor.number, rpcOptions)
      if (!at) throw new NodeBehind()
      if (at.hash !== cursor.hash) throw new ChainMoved(true)
    }
    const start = cursor ? cursor.number + 1n : fromBlock
    // A fresh start keeps the block before `fromBlock` as the base a reorg can fall back to.
    let pending: ChainBlockRow[] = []
    if (!cursor && fromBlock > 0n) {
      const base = await getHeader(client, fromBlock - 1n, rpcOptions)
      if (base) pending = [blockRow(base)]
    }
    const takePending = () => {
      const rows = pending
      pending = []
      return rows
    }
    if (result.toBlock < result.fromBlock) {
      result.fromBlock = start
      result.toBlock = start - 1n
    }
    const finalHead = head.number - BigInt(reorgDepthMax)
    const confirmedUpTo = head.number - confirmations
    const pruneBelow = finalHead
    const began = Date.now()

    // Final blocks: pages fetched in parallel, applied strictly in block order.
    if (start <= finalHead) {
      // A range answer is complete only as far as the node giving it had blocks: each page is
      // checked against the hook's counters of the bound pairs, read by block hash.
      const pairs = await boundPairs()
      const pairKeys = new Set(pairs.map((pair) => pair.key))
      const base = cursor ?? (pending[0] ? { number: pending[0].number, hash: pending[0].hash } : undefined)
      let before: Anchor = base
        ? { number: base.number, hash: base.hash, counters: await readCounters(pairs, base.hash) }
        : // Before the first block nothing was metered; a later start without its parent reads its first page by hash.
          { number: start - 1n, hash: undefined, counters: start === 0n ? new Map(pairs.map((pair) => [pair.key, 0n])) : undefined }
      const queue = new PQueue({ concurrency: rpcConcurrency })
      type Page = { from: bigint; to: bigint; logs: SpendLog[]; header: BlockHeader; counters: Counters }
      const inflight: Promise<Page>[] = []
      const arrived = new Map<Promise<Page>, Page>()
      let next = start
      const schedule = () => {
        // Few pages ahead: enough to overlap fetching with applying, few enough that pages
        // die young instead of piling up in the old generation.
        while (inflight.length < Math.max(2, rpcConcurrency / 2) && next <= finalHead) {
          const a = next
          const b = a + BigInt(pageBlocks) - 1n < finalHead ? a + BigInt(pageBlocks) - 1n : finalHead
          next = b + 1n
          const page = queue.add(async () => {
            const [logs, header] = await Promise.all([fetchRange(a, b), getHeader(client, b, rpcOptions)])
            if (!header) throw new NodeBehind()
            return { from: a, to: b, logs, header, counters: await readCounters(pairs, header.hash) }
          }) as Promise<Page>
          page.then((value) => arrived.set(page, value)).catch(() => {})
          inflight.push(page)
        }
      }
      schedule()
      try {
        while (inflight.length > 0) {
          const first = inflight.shift() as Promise<Page>
          const pages = [await first]
          arrived.delete(first)
          // Pages that have already arrived go into the same transaction: one commit for all.
          let logCount = (pages[0] as Page).logs.length
          while (inflight.length > 0 && logCount < policy.targetLogs * 4) {
            const ready = arrived.get(inflight[0] as Promise<Page>)
            if (!ready) break
            arrived.delete(inflight.shift() as Promise<Page>)
            pages.push(ready)
            logCount += ready.logs.length
          }
          for (const each of pages) {
            const after: Anchor = { number: each.to, hash: each.header.hash, counters: each.counters }
            each.logs = await settle(pairs, before, after, sortLogs(each.logs))
            before = after
          }
          const page = pages[pages.length - 1] as Page
          const logs = sortLogs(pages.length === 1 ? page.logs : pages.flatMap((p) => p.logs))
          const applied = await guard.internal.submit((ctx) =>
            reconcile.applyBatch(ctx, {
              ...scope,
              logs,
              blocks: [...takePending(), ...pages.map((p) => blockRow(p.header))],
              from: cursor,
              to: { number: page.to, hash: page.header.hash },
              confirmedUpTo,
              pruneBelow,
              checkedPairs: pairKeys,
            }),
          )
          cursor = { number: page.to, hash: page.header.hash }
          add(result, applied, logs.length, page.to)
          p.onProgress?.({ phase: 'backfill', fromBlock: start, toBlock: head.number, cursor: page.to, logs: result.logs, elapsedMs: Date.now() - began })
          if (stopping()) return
          schedule()
        }
      } finally {
        queue.clear()
      }
    }

    // Unfinalized blocks: every header kept, hash-linked to the cursor, logs checked against them.
    const liveFrom = cursor ? cursor.number + 1n : start
    // Nothing new: confirmations only move when the head does, with the next batch.
    if (liveFrom > head.number) return
    const numbers: bigint[] = []
    for (let n = liveFrom; n <= head.number; n++) numbers.push(n)
    const queue = new PQueue({ concurrency: rpcConcurrency })
    const headers = await Promise.all(numbers.map((n) => queue.add(() => getHeader(client, n, rpcOptions)) as Promise<BlockHeader | undefined>))
    const base = cursor ?? (pending[0] ? { number: pending[0].number, hash: pending[0].hash } : undefined)
    for (const [i, h] of headers.entries()) {
      if (!h) throw new NodeBehind()
      const parent = i === 0 ? base?.hash : headers[i - 1]?.hash
      const parentNumber = i === 0 ? base?.number : (headers[i - 1] as BlockHeader).number
      if (parent !== undefined && parentNumber === h.number - 1n && h.parentHash !== parent) throw new ChainMoved(i === 0)
    }
    // Logs block by block, by hash: a node behind the one that served the headers cannot
    // answer "no logs" for a block it does not have yet, as a range query would.
    const perBlock = await Promise.all(headers.map((h) => queue.add(() => fetchBlock(h as BlockHeader)) as Promise<SpendLog[]>))
    const logs = sortLogs(perBlock.flat())
    const hashes = new Map(headers.map((h) => [(h as BlockHeader).number, (h as BlockHeader).hash]))
    // A log from a block other than the one whose header we hold: the chain moved between requests.
    for (const log of logs) if (hashes.get(log.blockNumber) !== log.blockHash) throw new ChainMoved(false)
    const last = headers[headers.length - 1] as BlockHeader
    const blocks: ChainBlockRow[] = [...takePending(), ...headers.map((h) => blockRow(h as BlockHeader))]
    const applied = await guard.internal.submit((ctx) =>
      reconcile.applyBatch(ctx, {
        ...scope,
        logs,
        blocks,
        from: cursor,
        to: { number: last.number, hash: last.hash },
        confirmedUpTo,
        pruneBelow,
      }),
    )
    add(result, applied, logs.length, last.number)
    p.onProgress?.({ phase: 'follow', fromBlock: liveFrom, toBlock: head.number, cursor: last.number, logs: result.logs, elapsedMs: Date.now() - began })
  }

  /**
   * The node's head is below every kept block: a node far behind, or a chain that started over.
   * Only another hash at a block a log was applied from proves the chain started over: the
   * tracker stops. Without that proof (no such block at or below the head, or the node has that
   * very block and the fork, if any, lies above it), nothing is applied and the pass ends with
   * `NodeBehindWindowError`; once the node reaches the kept blocks, their hashes decide.
   */
  async function belowWindow(nodeHead: bigint, oldest: bigint): Promise<Error> {
    const known = await store.chain.loggedBlock(chainId, hook, nodeHead)
    const header = known ? await getHeader(client, known.number, rpcOptions) : undefined
    if (known && header && header.hash !== known.hash) return new ReorgTooDeepError({ chainId, oldestKnown: oldest, reorgDepthMax })
    return new NodeBehindWindowError({ chainId, head: nodeHead, oldestKept: oldest })
  }

  /** Walks back to the newest kept block the chain still has, and rolls back everything above it. */
  async function handleReorg(result: SyncResult): Promise<void> {
    const cursor = await storedCursor()
    if (!cursor) return
    const kept = await store.chain.blocks(chainId, hook, 0n)
    let ancestor: reconcile.Cursor | undefined
    let base: ChainBlockRow | undefined
    let compared = false
    for (const block of kept) {
      const header = await getHeader(client, block.number, rpcOptions)
      if (!header) {
        // Above the node's head: the chain it follows is shorter; below it, the node is unsure.
        if (lastHead !== null && block.number > lastHead) continue
        throw new NodeBehind()
      }
      compared = true
      if (header.hash === block.hash) {
        ancestor = { number: block.number, hash: block.hash }
        break
      }
      if (block === kept.at(-1) && fromBlock > 0n && block.number === fromBlock - 1n && !(await store.chain.loggedBlock(chainId, hook, block.number))) {
        // The oldest kept block is the base a fresh start kept, the block before `fromBlock`, no
        // log was applied at or below it (a tracker that once started lower has), and the reorg
        // replaced it too: every block the tracker read is gone. All of it is undone, over the
        // new chain's base.
        base = blockRow(header)
        ancestor = { number: header.number, hash: header.hash }
      }
    }
    if (!ancestor) {
      const oldest = kept.length ? (kept[kept.length - 1] as ChainBlockRow).number : cursor.number
      if (!compared && lastHead !== null && lastHead < oldest) throw await belowWindow(lastHead, oldest)
      throw new ReorgTooDeepError({ chainId, oldestKnown: oldest, reorgDepthMax })
    }
    const rolled = await guard.internal.submit((ctx) =>
      reconcile.rollback(ctx, { ...scope, expected: cursor, ancestor: ancestor as reconcile.Cursor, base }),
    )
    result.reorgs++
    result.reverted += rolled.reverted
  }

  async function syncOnce(): Promise<SyncResult> {
    await ensureChain()
    const result = emptyResult(fromBlock, 0n)
    for (let attempt = 0; ; attempt++) {
      try {
        try {
          await pass(result)
        } catch (error) {
          if (error instanceof reconcile.BindingsChanged && attempt < passesMax) continue
          if (!(error instanceof ChainMoved) || attempt >= passesMax) throw error
          if (error.atCursor) await handleReorg(result)
          continue
        }
        lastError = null
        return result
      } catch (error) {
        // Nothing more to do until the node catches up (or the bindings stop changing): what was
        // applied stays, the next sync goes on.
        if (error instanceof NodeBehind || error instanceof reconcile.BindingsChanged) {
          lastError = null
          return result
        }
        if (error instanceof CursorMovedError && attempt < passesMax) continue
        throw error
      }
    }
  }

  function serialized(): Promise<SyncResult> {
    if (running) return running
    running = syncOnce().finally(() => {
      running = undefined
    })
    return running
  }

  return {
    bind: (b) => bindAccount(guard, scope, b),
    unbind: (u) => unbindAccount(guard, scope, u),
    bindings: () => listBindings(guard, scope),
    syncOnce: serialized,
    start() {
      if (run && !run.stop) return
      // A stop still under way finishes first; then this loop starts.
      const previous = run?.done
      const current: Run = { stop: false, wake: undefined, done: Promise.resolve() }
      run = current
      current.done = (async () => {
        await previous
        while (!current.stop) {
          try {
            const result = await serialized()
            p.onSync?.(result)
          } catch (error) {
            lastError = error as Error
            p.onError?.(error)
            if (stopsTracker(error)) {
              current.stop = true
              break
            }
          }
          if (current.stop) break
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, pollIntervalMs)
            current.wake = () => {
              clearTimeout(timer)
              resolve()
            }
          })
          current.wake = undefined
        }
      })().finally(() => {
        if (run === current) run = undefined
      })
    },
    async stop() {
      const current = run
      if (current) {
        current.stop = true
        current.wake?.()
        await current.done
      }
      await running?.catch(() => {})
    },
    async status() {
      const cursor = await store.chain.cursor(chainId, hook)
      const counts = await store.chain.status(chainId, hook)
      const recent = await store.chain.unassigned(chainId, hook, recentUnassignedMax)
      return {
        chainId,
        hook: getAddress(hook),
        running: run !== undefined && !run.stop,
        cursor: cursor ? { blockNumber: cursor.blockNumber, blockHash: cursor.blockHash } : null,
        head: lastHead,
        // Never below 0: a node behind the cursor does not put the tracker ahead of the chain.
        lagBlocks: lastHead === null ? null : max0(lastHead - (cursor?.blockNumber ?? fromBlock - 1n)),
        confirmed: counts.confirmed,
        unconfirmed: counts.unconfirmed,
        unassigned: { unbound: counts.unbound, foreign: counts.foreign, recent },
        error: lastError,
      }
    },
  }
}

function nonNegative(argument: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new InvalidArgumentError({ argument, value, reason: 'an integer ≥ 0' })
  return value
}

function sameLog(a: SpendLog, b: SpendLog): boolean {
  return (
    a.blockHash === b.blockHash &&
    a.txHash === b.txHash &&
    a.account === b.account &&
    a.token === b.token &&
    a.sender === b.sender &&
    a.to === b.to &&
    a.amount === b.amount &&
    a.windowSpent === b.windowSpent &&
    a.cumulativeSpent === b.cumulativeSpent &&
    a.ref === b.ref
  )
}

const max0 = (n: bigint) => (n > 0n ? n : 0n)
