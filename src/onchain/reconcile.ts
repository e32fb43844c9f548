import { invariant } from '../engine/errors.ts'
import * as rules from '../engine/rules.ts'
import type { BindingRow, ChainBlockRow, ChainLogRow } from '../engine/store/types.ts'
import type { SpendLog } from './decode.ts'
import { CursorMovedError } from './errors.ts'

/**
 * Reconciliation: the ledger side of the tracker. Each function is one operation of the
 * engine's writer, so a batch of logs, the block hashes that came with it and the new
 * cursor commit in one transaction, or not at all.
 */
export type ChainKey = { chainId: number; hook: string }
export type Cursor = { number: bigint; hash: string }

export type ApplyBatch = ChainKey & {
  logs: SpendLog[]
  /** Headers of unfinalized blocks in this batch, kept to detect reorgs. */
  blocks: ChainBlockRow[]
  /** The cursor this batch starts from (as the tracker last read it) and ends at. */
  from: Cursor | null
  to: Cursor
  /** Logs at or below this block are confirmed. */
  confirmedUpTo: bigint
  /** Block hashes below this number are no longer needed. */
  pruneBelow: bigint
  /**
   * The bound `(account, token)` pairs (`account:token`) whose counters the tracker checked these
   * logs against, if it did: when the transaction finds a pair bound besides them, the pages were
   * never checked for its spends (a node may have left some out), and the batch is refused with
   * {@link BindingsChanged}.
   */
  checkedPairs?: ReadonlySet<string> | undefined
}

export type ApplyResult = { applied: number; duplicates: number; unbound: number; foreign: number; zero: number }

/** How a bound `(account, token)` pair is named in {@link ApplyBatch.checkedPairs}. */
export const pairKey = (account: string, token: string) => `${account}:${token}`

/** The bindings changed under a batch checked for the old ones: nothing is written, the pass starts over. */
export class BindingsChanged extends Error {
  constructor() {
    super('bindings changed')
  }
}

const sameCursor = (a: Cursor | null, b: { blockNumber: bigint; blockHash: string } | undefined) =>
  a === null ? b === undefined : b !== undefined && a.number === b.blockNumber && a.hash === b.blockHash

export async function applyBatch(ctx: rules.RuleContext, batch: ApplyBatch): Promise<ApplyResult> {
  const { chainId, hook } = batch
  const stored = await ctx.tx.chain.cursor(chainId, hook)
  // Another tracker process moved on: write nothing; the caller resumes from the stored cursor.
  if (!sameCursor(batch.from, stored)) throw new CursorMovedError()
  // The cursor moves first, and only from where the batch began: a tracker that read the same
  // cursor (or none) at the same time waits for this transaction, then finds it moved.
  await moveCursor(ctx, { chainId, hook }, batch.from, batch.to)
  // The bindings are read once: the check below and every log of the batch see the same ones
  // (on PostgreSQL each statement would otherwise see bindings committed since the last).
  const all = await ctx.tx.chain.bindings(chainId, hook)
  const checked = batch.checkedPairs
  if (checked && all.some((b) => !checked.has(pairKey(b.account, b.token)))) throw new BindingsChanged()

  const result: ApplyResult = { applied: 0, duplicates: 0, unbound: 0, foreign: 0, zero: 0 }
  const bindings = new Map(all.map((b) => [`${b.account}:${b.sender}`, b]))
  const bindingOf = (account: string, sender: string): BindingRow | null =>
    bindings.get(`${account}:${sender}`) ?? bindings.get(`${account}:`) ?? null

  // Spends of bound accounts in the task's token become ledger entries, per task in block
  // order; everything else is kept in chain_logs and reported, never summed into a budget.
  const spends = new Map<string, rules.ChainSpendInput[]>()
  const kept: ChainLogRow[] = []
  let prior: SpendLog | undefined
  for (const log of batch.logs) {
    // Each position once, in chain order: a repeat would be a second entry for one fact.
    invariant(
      !prior || prior.blockNumber < log.blockNumber || (prior.blockNumber === log.blockNumber && prior.logIndex < log.logIndex),
      `chain logs of a batch out of order or repeated at block ${log.blockNumber}, log index ${log.logIndex}`,
    )
    prior = log
    const binding = bindingOf(log.account, log.sender)
    const confirmed = log.blockNumber <= batch.confirmedUpTo
    if (binding && binding.token === log.token && log.amount > 0n) {
      const list = spends.get(binding.taskId) ?? []
      list.push({
        taskId: binding.taskId,
        hook,
        amount: log.amount,
        ref: log.ref,
        to: log.to,
        chain: { chainId, blockNumber: log.blockNumber, blockHash: log.blockHash, txHash: log.txHash, logIndex: log.logIndex, confirmed },
      })
      spends.set(binding.taskId, list)
      continue
    }
    const disposition: ChainLogRow['disposition'] = !binding ? 'unbound' : binding.token !== log.token ? 'foreign' : 'zero'
    if (await ctx.tx.chain.log(chainId, log.blockHash, log.logIndex)) {
      result.duplicates++
      continue
    }
    result[disposition]++
    kept.push({
      chainId,
      hook,
      blockHash: log.blockHash,
      logIndex: log.logIndex,
      blockNumber: log.blockNumber,
      txHash: log.txHash,
      account: log.account,
      token: log.token,
      sender: log.sender,
      to: log.to,
      amount: log.amount,
      ref: log.ref,
      disposition,
      taskId: binding?.taskId ?? null,
      confirmed,
    })
  }
  // Budgets in task id order, as every batch locks them.
  for (const [taskId, list] of [...spends].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const written = await rules.applyChainSpends(ctx, taskId, list)
    result.applied += written.length
    result.duplicates += list.length - written.length
  }
  for (const row of kept) await ctx.tx.chain.insertLog(row)
  for (const block of batch.blocks) await ctx.tx.chain.insertBlock(block)
  await confirm(ctx, batch)
  await ctx.tx.chain.pruneBlocksBelow(chainId, hook, batch.pruneBelow)
  return result
}

async function confirm(ctx: rules.RuleContext, key: ChainKey & { confirmedUpTo: bigint }): Promise<void> {
  if (key.confirmedUpTo < 0n) return
  await ctx.tx.chain.confirmLogsUpTo(key.chainId, key.hook, key.confirmedUpTo)
  await ctx.tx.chain.confirmEntriesUpTo(key.chainId, key.hook, key.confirmedUpTo)
}

export type Rollback = ChainKey & {
  expected: Cursor
  ancestor: Cursor
  /** The new chain's block at `ancestor`, replacing the kept one there (a fresh start's base the reorg replaced too). */
  base?: ChainBlockRow | undefined
}

/**
 * Undoes every log above `ancestor` (newest first): their spends leave the budgets,
 * captured holds open again, thresholds re-arm. The cursor moves back to the ancestor.
 */
export async function rollback(ctx: rules.RuleContext, r: Rollback): Promise<{ reverted: number }> {
  const { chainId, hook } = r
  const stored = await ctx.tx.chain.cursor(chainId, hook)
  if (!sameCursor(r.expected, stored)) throw new CursorMovedError()
  invariant(r.ancestor.number <= r.expected.number, 'rollback ancestor above the cursor')
  await moveCursor(ctx, { chainId, hook }, r.expected, r.ancestor)
  // Newest first: each spend leaves its budget, a hold it captured opens again.
  const orphaned = await ctx.tx.chain.entriesFrom(chainId, hook, r.ancestor.number + 1n)
  for (const entry of orphaned) await rules.revertChainSpend(ctx, entry.id)
  await ctx.tx.chain.deleteLogsFrom(chainId, hook, r.ancestor.number + 1n)
  await ctx.tx.chain.deleteBlocksFrom(chainId, hook, r.base ? r.ancestor.number : r.ancestor.number + 1n)
  if (r.base) await ctx.tx.chain.insertBlock(r.base)
  return { reverted: orphaned.length }
}

async function moveCursor(ctx: rules.RuleContext, { chainId, hook }: ChainKey, from: Cursor | null, to: Cursor): Promise<void> {
  const row = { chainId, hook, blockNumber: to.number, blockHash: to.hash, updatedAt: ctx.now }
  const moved = await ctx.tx.chain.moveCursor(row, from && { blockNumber: from.number, blockHash: from.hash })
  if (moved !== 1) throw new CursorMovedError()
}

export async function saveBinding(ctx: rules.RuleContext, row: BindingRow): Promise<BindingRow> {
  await ctx.tx.chain.saveBinding(row)
  return row
}

export async function deleteBinding(
  ctx: rules.RuleContext,
  key: ChainKey & { account: string; sender: string },
): Promise<boolean> {
  return (await ctx.tx.chain.deleteBinding(key.chainId, key.hook, key.account, key.sender)) > 0
}
