import { randomBytes } from 'node:crypto'
import { reaches, toFraction } from './amount.ts'
import {
  BudgetClosedError,
  BudgetExceededError,
  BudgetExistsError,
  BudgetNotFoundError,
  HoldNotFoundError,
  HoldNotOpenError,
  IdempotencyConflictError,
  invariant,
} from './errors.ts'
import type { BudgetRow, EntryRow, HoldRow, JournalRow, OutboxRow, StoreTx } from './store/types.ts'
import type { BudgetReport, ChainPosition, JournalKind, Source } from './types.ts'

/**
 * The ledger rules. Each operation runs inside one write transaction (possibly shared
 * with other callers' operations) and follows one shape: read and validate first, throw
 * a domain error only before its first write, then write the budget, the journal row
 * and any outbox rows together.
 */
export type RuleContext = {
  tx: StoreTx
  now: number
  /** Outbox rows this operation raised; the writer stores them with the operation's writes. */
  outbox: OutboxRow[]
  /** Lease set on new outbox rows when this process has listeners for them. */
  leaseFor(kind: string): number | null
  /**
   * Budgets read or changed in this transaction, shared by the operations of one batch:
   * each budget is read (and locked) once and written once, when the batch commits.
   */
  budgets: BudgetCache
}

export type BudgetCache = {
  rows: Map<string, BudgetRow>
  dirty: Set<string>
}

export const createBudgetCache = (): BudgetCache => ({ rows: new Map(), dirty: new Set() })

/** A budget as of this transaction; the first read of a batch locks its row. */
async function readBudget(ctx: RuleContext, taskId: string): Promise<BudgetRow | undefined> {
  const cached = ctx.budgets.rows.get(taskId)
  if (cached) return cached
  const row = await ctx.tx.budget(taskId)
  if (row) ctx.budgets.rows.set(taskId, row)
  return row
}

function writeBudget(ctx: RuleContext, row: BudgetRow): void {
  ctx.budgets.rows.set(row.taskId, row)
  ctx.budgets.dirty.add(row.taskId)
}

/** Writes the budgets the batch changed; the writer calls it once, before the commit. */
export async function flushBudgets(tx: StoreTx, cache: BudgetCache): Promise<void> {
  for (const taskId of cache.dirty) await tx.updateBudget(cache.rows.get(taskId) as BudgetRow)
  cache.dirty.clear()
}

export type AllocateInput = {
  taskId: string
  total: bigint
  asset: string
  decimals: number
  thresholds: number[]
  hardLimit: boolean
  metadata: string | null
}

export type ReserveInput = {
  taskId: string
  amount: bigint
  key: string | null
  ttlMs: number | null
  ref: string | null
}

export type CaptureInput = {
  holdId: string
  amount: bigint
  entryId: string | null
  peer: string | null
  tool: string | null
  reason: string | null
  at: number | null
  /** A payment that already happened: more than the hold is captured whatever the limit. */
  fact?: boolean
}

export type RecordInput = {
  taskId: string
  id: string | null
  amount: bigint
  peer: string | null
  tool: string | null
  reason: string | null
  at: number | null
  /** A spend that already happened: recorded whatever the limit or the budget's state. */
  fact?: boolean
}

export type ChainSpendInput = {
  taskId: string
  /** The SpendingHook that logged the spend. */
  hook: string
  amount: bigint
  ref: string
  to: string
  chain: ChainPosition
}

/** Remaining and overspent of a budget, exactly as SPEC §2 defines them. */
export function balance(b: Pick<BudgetRow, 'total' | 'spent' | 'reserved'>) {
  const free = b.total - b.spent - b.reserved
  return { remaining: free > 0n ? free : 0n, overspent: free < 0n ? -free : 0n }
}

export function isExhausted(b: Pick<BudgetRow, 'total' | 'spent' | 'reserved'>): boolean {
  return balance(b).remaining === 0n || b.spent >= b.total
}

let idCounter = 0
/** Random bits drawn once per process: ids of two processes never collide. */
const processTag = randomBytes(6).toString('hex')
/**
 * Ids that sort in creation order within a process: milliseconds, a counter, then the
 * process's random tag.
 */
const newId = (prefix: string) => {
  idCounter = (idCounter + 1) % 0x1000000
  const time = Date.now().toString(16).padStart(12, '0')
  const counter = idCounter.toString(16).padStart(6, '0')
  return `${prefix}_${time}${counter}${processTag}`
}

/** Random bytes drawn in blocks, so a hold's ref costs no system call. */
const refPool = { bytes: Buffer.alloc(0), offset: 0 }
let refCounter = 0

/**
 * A hold's ref: 8 bytes of time and counter, then 24 random bytes. Unique and unguessable,
 * and new refs land next to each other in the ref index instead of all over it.
 */
export const newRef = () => {
  if (refPool.offset + 24 > refPool.bytes.length) {
    refPool.bytes = randomBytes(24 * 1024)
    refPool.offset = 0
  }
  refCounter = (refCounter + 1) % 0x10000
  const head = Date.now().toString(16).padStart(12, '0') + refCounter.toString(16).padStart(4, '0')
  const ref = `0x${head}${refPool.bytes.toString('hex', refPool.offset, refPool.offset + 24)}`
  refPool.offset += 24
  return ref
}

/** A canonical signature of a call's parameters; equal parameters, equal strings. */
function signature(fields: Record<string, string | number | bigint | null | undefined>): string {
  const out: Record<string, string | number> = {}
  for (const key of Object.keys(fields).sort()) {
    const value = fields[key]
    if (value === null || value === undefined) continue
    out[key] = typeof value === 'bigint' ? value.toString() : value
  }
  return JSON.stringify(out)
}

function differences(before: string, after: string): string[] {
  const a = JSON.parse(before) as Record<string, unknown>
  const b = JSON.parse(after) as Record<string, unknown>
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
  return keys
    .filter((k) => a[k] !== b[k])
    .map((k) => `${k}: was ${JSON.stringify(a[k] ?? null)}, now ${JSON.stringify(b[k] ?? null)}`)
}

async function loadBudget(ctx: RuleContext, taskId: string): Promise<BudgetRow> {
  return (await loadBudgetAsOfNow(ctx, taskId)).budget
}

/** The budget with its due holds expired; `expired` tells whether any were. */
async function loadBudgetAsOfNow(ctx: RuleContext, taskId: string): Promise<{ budget: BudgetRow; expired: boolean }> {
  const b = await readBudget(ctx, taskId)
  if (!b) throw new BudgetNotFoundError({ taskId })
  if (b.nextExpiryAt !== null && b.nextExpiryAt <= ctx.now) {
    const after = await expireDue(ctx, b)
    return { budget: after, expired: after.openHolds !== b.openHolds }
  }
  return { budget: b, expired: false }
}

/** The earlier of two expiry times; null is "never". */
const earliest = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.min(a, b))

function assertOpen(b: BudgetRow): void {
  if (b.closed) throw new BudgetClosedError({ taskId: b.taskId, closedAt: b.closedAt ?? undefined })
}

/** A new spend of `amount` on `b`: refused on a closed budget, and past `remaining` under a hard limit. */
function assertSpendable(b: BudgetRow, amount: bigint): void {
  assertOpen(b)
  const { remaining } = balance(b)
  if (b.hardLimit && amount > remaining) throw new BudgetExceededError({ taskId: b.taskId, requested: amount, remaining })
}

type Change = {
  kind: JournalKind
  amount: bigint | null
  holdId?: string | null
  entryId?: string | null
  source?: Source
  chain?: ChainPosition | null
}

/** Writes the new budget state, its journal row and the alerts its change raised. */
async function apply(ctx: RuleContext, before: BudgetRow, after: BudgetRow, change: Change): Promise<void> {
  await ctx.tx.appendJournal(transition(ctx, before, after, change))
}

/**
 * The budget's move from `before` to `after`: checks the invariants, raises the alerts the
 * move crosses, caches the new state (written once per batch) and returns its journal row.
 */
function transition(ctx: RuleContext, before: BudgetRow, after: BudgetRow, change: Change): Omit<JournalRow, 'seq'> {
  invariant(after.spent >= 0n && after.reserved >= 0n, `negative balance on ${after.taskId}`)
  invariant(after.openHolds >= 0 && after.entryCount >= 0, `negative counter on ${after.taskId}`)
  after.updatedAt = ctx.now
  after.exhausted = isExhausted(after)
  after.firedMask = thresholdAlerts(ctx, after)
  if (!isExhausted(before) && after.exhausted && !after.closed)
    emit(ctx, 'exhausted', after.taskId, {
      spent: after.spent,
      reserved: after.reserved,
      total: after.total,
    })
  const overspent = balance(after).overspent
  if (before.spent <= before.total && after.spent > after.total)
    emit(ctx, 'overspent', after.taskId, { spent: after.spent, total: after.total, overspent })
  writeBudget(ctx, after)
  return {
    taskId: after.taskId,
    kind: change.kind,
    amount: change.amount,
    holdId: change.holdId ?? null,
    entryId: change.entryId ?? null,
    source: change.source ?? 'offchain',
    chain: change.chain ? JSON.stringify(chainJson(change.chain)) : null,
    spentAfter: after.spent,
    reservedAfter: after.reserved,
    at: ctx.now,
  }
}

function chainJson(chain: ChainPosition) {
  return { ...chain, blockNumber: chain.blockNumber.toString() }
}

const fractions = new Map<number, ReturnType<typeof toFraction>>()
function fraction(threshold: number) {
  let f = fractions.get(threshold)
  if (!f) {
    f = toFraction(threshold)
    fractions.set(threshold, f)
  }
  return f
}

/** Fires each threshold once per upward crossing of `spent`; re-arms it below. */
function thresholdAlerts(ctx: RuleContext, b: BudgetRow): number {
  let mask = b.firedMask
  for (let i = 0; i < b.thresholds.length; i++) {
    const threshold = b.thresholds[i] as number
    const bit = 1 << i
    const reached = b.spent > 0n && reaches(b.spent, b.total, fraction(threshold))
    if (reached && (mask & bit) === 0) {
      mask |= bit
      emit(ctx, 'alert', b.taskId, { threshold, spent: b.spent, total: b.total })
    } else if (!reached && (mask & bit) !== 0) mask &= ~bit
  }
  return mask
}

function emit(ctx: RuleContext, kind: string, taskId: string, fields: Record<string, unknown>): void {
  const id = newId('ev')
  const payload = JSON.stringify({ id, taskId, ...fields, at: ctx.now }, (_, v) =>
    typeof v === 'bigint' ? v.toString() : v,
  )
  ctx.outbox.push({ id, kind, taskId, payload, createdAt: ctx.now, leaseUntil: ctx.leaseFor(kind) })
}

// ---------------------------------------------------------------------------------------
// Operations

export async function allocate(ctx: RuleContext, input: AllocateInput): Promise<BudgetRow> {
  const existing = await readBudget(ctx, input.taskId)
  if (existing) {
    const diffs: string[] = []
    if (existing.total !== input.total) diffs.push(`total: was ${existing.total}, now ${input.total}`)
    if (existing.asset !== input.asset) diffs.push(`asset: was ${existing.asset}, now ${input.asset}`)
    if (existing.decimals !== input.decimals) diffs.push(`decimals: was ${existing.decimals}, now ${input.decimals}`)
    if (JSON.stringify(existing.thresholds) !== JSON.stringify(input.thresholds))
      diffs.push(`thresholds: was ${JSON.stringify(existing.thresholds)}, now ${JSON.stringify(input.thresholds)}`)
    if (existing.hardLimit !== input.hardLimit) diffs.push(`hardLimit: was ${existing.hardLimit}, now ${input.hardLimit}`)
    if (existing.metadata !== input.metadata) diffs.push(`metadata: was ${existing.metadata}, now ${input.metadata}`)
    if (diffs.length) throw new BudgetExistsError({ taskId: input.taskId, differences: diffs })
    return existing
  }
  const row: BudgetRow = {
    ...input,
    spent: 0n,
    reserved: 0n,
    firedMask: 0,
    exhausted: input.total === 0n,
    progress: 0,
    closed: false,
    createdAt: ctx.now,
    updatedAt: ctx.now,
    closedAt: null,
    entryCount: 0,
    openHolds: 0,
    nextExpiryAt: null,
    report: null,
  }
  await ctx.tx.insertBudget(row)
  ctx.budgets.rows.set(row.taskId, row)
  await ctx.tx.appendJournal({
    taskId: row.taskId,
    kind: 'allocate',
    amount: row.total,
    holdId: null,
    entryId: null,
    source: 'offchain',
    chain: null,
    spentAfter: 0n,
    reservedAfter: 0n,
    at: ctx.now,
  })
  return row
}

export async function reserve(ctx: RuleContext, input: ReserveInput): Promise<HoldRow> {
  return (await reserveOnce(ctx, input)).hold
}

/** {@link reserve}, telling a new hold (`created`) from the one an earlier call with the key made. */
export async function reserveOnce(ctx: RuleContext, input: ReserveInput): Promise<{ hold: HoldRow; created: boolean }> {
  const sig = signature({ amount: input.amount, ttlMs: input.ttlMs, ref: input.ref })
  if (input.key !== null) {
    const prior = await ctx.tx.holdByKey(input.taskId, input.key)
    if (prior) {
      if (prior.sig !== sig) throw new IdempotencyConflictError({ key: input.key, differences: differences(prior.sig, sig) })
      return { hold: prior, created: false }
    }
  }
  const b = await loadBudget(ctx, input.taskId)
  assertSpendable(b, input.amount)
  if (input.ref !== null && (await ctx.tx.holdByRef(input.ref)))
    throw new IdempotencyConflictError({ key: input.ref, differences: ['ref: already carried by another hold'] })

  const expiresAt = input.ttlMs === null ? null : ctx.now + input.ttlMs
  const hold: HoldRow = {
    id: newId('hold'),
    taskId: b.taskId,
    ref: input.ref ?? newRef(),
    key: input.key,
    amount: input.amount,
    status: 'open',
    expiresAt,
    createdAt: ctx.now,
    settledAt: null,
    capturedAmount: null,
    entryId: null,
    settleSig: null,
    sig,
  }
  await ctx.tx.insertHold(hold)
  const after: BudgetRow = {
    ...b,
    reserved: b.reserved + input.amount,
    openHolds: b.openHolds + 1,
    nextExpiryAt: earliest(b.nextExpiryAt, expiresAt),
  }
  await apply(ctx, b, after, { kind: 'reserve', amount: input.amount, holdId: hold.id })
  return { hold, created: true }
}

/** Loads a hold and locks its budget; the hold is read again under the budget's lock. */
async function loadHold(ctx: RuleContext, holdId: string) {
  const first = await ctx.tx.hold(holdId)
  if (!first) throw new HoldNotFoundError({ holdId })
  // Every writer locks the budget before it changes one of its holds. The first read stands
  // when nothing could have changed the hold since: SQLite's transaction holds the whole
  // file, or this transaction already held the budget's row lock; and no expiry ran.
  const lockedBefore = !ctx.tx.rowLocks || ctx.budgets.rows.has(first.taskId)
  const { budget, expired } = await loadBudgetAsOfNow(ctx, first.taskId)
  if (lockedBefore && !expired) return { hold: first, budget }
  const hold = await ctx.tx.hold(holdId)
  invariant(hold, `hold ${holdId} vanished`)
  return { hold, budget }
}

export async function capture(
  ctx: RuleContext,
  input: CaptureInput,
): Promise<{ entry: EntryRow; hold: HoldRow }> {
  const settleSig = signature({
    amount: input.amount,
    id: input.entryId,
    peer: input.peer,
    tool: input.tool,
    reason: input.reason,
    at: input.at,
  })
  const { hold, budget: b } = await loadHold(ctx, input.holdId)
  if (hold.status !== 'open') {
    if (hold.status === 'captured' && hold.entryId) {
      const entry = await ctx.tx.entry(hold.entryId)
      invariant(entry, `captured hold ${hold.id} has no entry`)
      if (hold.settleSig === settleSig) return { entry, hold }
      // A retry of this capture with other parameters; a capture the chain made is no call's to retry.
      if (entry.source === 'offchain' && hold.settleSig !== null)
        throw new IdempotencyConflictError({ key: hold.id, differences: differences(hold.settleSig, settleSig) })
    }
    throw new HoldNotOpenError({ holdId: hold.id, status: hold.status })
  }
  invariant(!b.closed, `open hold ${hold.id} on closed budget ${b.taskId}`)
  const extra = input.amount - hold.amount
  const { remaining } = balance(b)
  if (b.hardLimit && extra > remaining && !input.fact)
    throw new BudgetExceededError({ taskId: b.taskId, requested: input.amount, remaining: remaining + hold.amount })
  if (input.entryId !== null && (await ctx.tx.entry(input.entryId)))
    throw new IdempotencyConflictError({ key: input.entryId, differences: ['id: already used by another entry'] })

  return settleCapture(ctx, b, hold, input, settleSig, 'offchain', null)
}

type EntryFields = Pick<EntryRow, 'id' | 'taskId' | 'holdId' | 'amount' | 'peer' | 'tool' | 'reason' | 'at' | 'source' | 'sig'>

/** A live entry; an on-chain one also carries its chain position and hook. */
function entryRow(f: EntryFields, chain: ChainPosition | null = null, hook: string | null = null): EntryRow {
  return {
    id: f.id,
    taskId: f.taskId,
    holdId: f.holdId,
    amount: f.amount,
    peer: f.peer,
    tool: f.tool,
    reason: f.reason,
    at: f.at,
    source: f.source,
    chainId: chain?.chainId ?? null,
    hook,
    blockNumber: chain?.blockNumber ?? null,
    blockHash: chain?.blockHash ?? null,
    txHash: chain?.txHash ?? null,
    logIndex: chain?.logIndex ?? null,
    confirmed: chain?.confirmed ?? false,
    reverted: false,
    sig: f.sig,
  }
}

async function settleCapture(
  ctx: RuleContext,
  b: BudgetRow,
  hold: HoldRow,
  input: Pick<CaptureInput, 'amount' | 'entryId' | 'peer' | 'tool' | 'reason' | 'at'>,
  settleSig: string,
  source: Source,
  chain: ChainPosition | null,
  chainHook: string | null = null,
): Promise<{ entry: EntryRow; hold: HoldRow }> {
  const entry = entryRow(
    {
      id: input.entryId ?? newId('entry'),
      taskId: b.taskId,
      holdId: hold.id,
      amount: input.amount,
      peer: input.peer,
      tool: input.tool,
      reason: input.reason,
      at: input.at ?? ctx.now,
      source,
      sig: settleSig,
    },
    chain,
    chainHook,
  )
  const settled: HoldRow = {
    ...hold,
    status: 'captured',
    settledAt: ctx.now,
    capturedAmount: input.amount,
    entryId: entry.id,
    settleSig,
  }
  const changed = await ctx.tx.settleHold(settled)
  // The conditional update decides the single winner; more than one row is corruption.
  invariant(changed <= 1, `settling hold ${hold.id} changed ${changed} rows`)
  if (changed === 0) throw new HoldNotOpenError({ holdId: hold.id, status: 'settled' })
  await ctx.tx.insertEntry(entry)
  const after: BudgetRow = {
    ...b,
    spent: b.spent + input.amount,
    reserved: b.reserved - hold.amount,
    openHolds: b.openHolds - 1,
    entryCount: b.entryCount + 1,
  }
  await apply(ctx, b, after, {
    kind: 'capture',
    amount: input.amount,
    holdId: hold.id,
    entryId: entry.id,
    source,
    chain,
  })
  return { entry, hold: settled }
}

export async function release(ctx: RuleContext, holdId: string): Promise<HoldRow> {
  const { hold, budget: b } = await loadHold(ctx, holdId)
  if (hold.status === 'released') return hold
  if (hold.status !== 'open') throw new HoldNotOpenError({ holdId: hold.id, status: hold.status })
  return (await settleRelease(ctx, b, hold, 'released')).hold
}

async function settleRelease(
  ctx: RuleContext,
  b: BudgetRow,
  hold: HoldRow,
  status: 'released' | 'expired',
): Promise<{ hold: HoldRow; budget: BudgetRow }> {
  const settled: HoldRow = { ...hold, status, settledAt: ctx.now, settleSig: status }
  const changed = await ctx.tx.settleHold(settled)
  invariant(changed <= 1, `settling hold ${hold.id} changed ${changed} rows`)
  if (changed === 0) throw new HoldNotOpenError({ holdId: hold.id, status: 'settled' })
  const after: BudgetRow = { ...b, reserved: b.reserved - hold.amount, openHolds: b.openHolds - 1 }
  await apply(ctx, b, after, { kind: status === 'released' ? 'release' : 'expire', amount: hold.amount, holdId: hold.id })
  return { hold: settled, budget: after }
}

/** Expires the budget's open holds whose time has come; returns the budget after. */
async function expireDue(ctx: RuleContext, budget: BudgetRow): Promise<BudgetRow> {
  let b = budget
  const due = await ctx.tx.dueHolds(b.taskId, ctx.now)
  for (const hold of due) b = (await settleRelease(ctx, b, hold, 'expired')).budget
  const next = b.openHolds === 0 ? null : (await ctx.tx.openHolds(b.taskId)).reduce<number | null>(
    (min, h) => earliest(min, h.expiresAt),
    null,
  )
  if (next !== b.nextExpiryAt) {
    b = { ...b, nextExpiryAt: next }
    writeBudget(ctx, b)
  }
  return b
}

/** Expires due holds of one task; resolves with how many expired. */
export async function expireTask(ctx: RuleContext, taskId: string): Promise<number> {
  const b = await readBudget(ctx, taskId)
  if (!b) return 0
  const after = await expireDue(ctx, b)
  return b.openHolds - after.openHolds
}

export async function record(ctx: RuleContext, input: RecordInput): Promise<EntryRow> {
  const sig = signature({
    taskId: input.taskId,
    amount: input.amount,
    peer: input.peer,
    tool: input.tool,
    reason: input.reason,
    at: input.at,
  })
  if (input.id !== null) {
    const prior = await ctx.tx.entry(input.id)
    if (prior) {
      if (prior.sig !== sig || prior.holdId !== null)
        throw new IdempotencyConflictError({ key: input.id, differences: differences(prior.sig, sig) })
      return prior
    }
  }
  const b = await loadBudget(ctx, input.taskId)
  if (!input.fact) assertSpendable(b, input.amount)
  const entry = entryRow({
    id: input.id ?? newId('entry'),
    taskId: b.taskId,
    holdId: null,
    amount: input.amount,
    peer: input.peer,
    tool: input.tool,
    reason: input.reason,
    at: input.at ?? ctx.now,
    source: 'offchain',
    sig,
  })
  await ctx.tx.insertEntry(entry)
  const after: BudgetRow = { ...b, spent: b.spent + input.amount, entryCount: b.entryCount + 1 }
  await apply(ctx, b, after, { kind: 'record', amount: input.amount, entryId: entry.id })
  return entry
}

export async function close(ctx: RuleContext, taskId: string): Promise<BudgetReport> {
  const b0 = await readBudget(ctx, taskId)
  if (!b0) throw new BudgetNotFoundError({ taskId })
  if (b0.closed) {
    invariant(b0.report, `closed budget ${taskId} has no report`)
    return parseReport(b0.report)
  }
  let b = await loadBudget(ctx, taskId)
  const open = await ctx.tx.openHolds(taskId)
  for (const hold of open) b = (await settleRelease(ctx, b, hold, 'released')).budget
  const report: BudgetReport = {
    taskId,
    asset: b.asset,
    total: b.total,
    spent: b.spent,
    entryCount: b.entryCount,
    releasedHolds: open.length,
    durationMs: ctx.now - b.createdAt,
    status: 'closed',
  }
  const after: BudgetRow = {
    ...b,
    closed: true,
    closedAt: ctx.now,
    nextExpiryAt: null,
    report: JSON.stringify(report, (_, v) => (typeof v === 'bigint' ? v.toString() : v)),
  }
  await apply(ctx, b, after, { kind: 'close', amount: null })
  return report
}

function parseReport(text: string): BudgetReport {
  const raw = JSON.parse(text) as Record<string, unknown>
  return {
    taskId: raw.taskId as string,
    asset: raw.asset as string,
    total: BigInt(raw.total as string),
    spent: BigInt(raw.spent as string),
    entryCount: raw.entryCount as number,
    releasedHolds: raw.releasedHolds as number,
    durationMs: raw.durationMs as number,
    status: 'closed',
  }
}

export async function setProgress(ctx: RuleContext, taskId: string, progress: number): Promise<BudgetRow> {
  const b = await loadBudget(ctx, taskId)
  assertOpen(b)
  const after: BudgetRow = { ...b, progress }
  await apply(ctx, b, after, { kind: 'progress', amount: null })
  return after
}

// ---------------------------------------------------------------------------------------
// On-chain facts. They are recorded whatever the limit or the budget's state.

const zeroRef = `0x${'0'.repeat(64)}`

/** The entry of a payment `pay` settled after its hold had ended (close, release, expiry). */
export const paidAfterHoldEnded = (holdId: string) => `entry_paid_${holdId}`

/**
 * The entry of a payment `pay` was told is made on chain, carrying the hold's `ref`: its
 * capture, or its record when the hold had ended. Ids starting with `entry_` are the engine's
 * alone, so no caller can declare a settlement paid on chain.
 */
export const paidOnChain = (holdId: string) => `entry_onchain_${holdId}`

/** The entry of an x402 payment that settled after its hold had ended (the x402 adapter's fact). */
export const x402PaidAfterHoldEnded = (holdId: string) => `x402_${holdId}`

/** Applies one on-chain spend; see {@link applyChainSpends}. Undefined: it was applied before. */
export async function applyChainSpend(ctx: RuleContext, input: ChainSpendInput): Promise<EntryRow | undefined> {
  return (await applyChainSpends(ctx, input.taskId, [input]))[0]
}

/**
 * Applies on-chain spends of one task, in order, as facts: recorded whatever the limit or the
 * budget's state. A `ref` that matches an open hold of the task captures it with the on-chain
 * amount; every other spend is recorded, and the batch raises one `unreserved_spend` event
 * naming them. Each spend gets its own entry; a run of plain spends between captures is one
 * change of the budget, journaled as one `reconcile` row, its entries written with multi-row
 * statements. Resolves with the entries written; a spend that already has a live entry is
 * not applied again.
 */
export async function applyChainSpends(ctx: RuleContext, taskId: string, inputs: ChainSpendInput[]): Promise<EntryRow[]> {
  if (inputs.length === 0) return []
  let b = await loadBudget(ctx, taskId)
  const refs = [...new Set(inputs.map((i) => i.ref).filter((r) => r !== zeroRef))]
  const holds = new Map((refs.length ? await ctx.tx.holdsByRefs(refs) : []).map((h) => [h.ref, h]))

  // Keyed by chain, block hash and log index. A live entry with the key is this very fact
  // applied before: skipped. A log that comes back after a reorg undid it (its block
  // canonical again) gets a fresh id beside its reverted entry.
  const ids = inputs.map((i) => `chain_${i.chain.chainId}_${i.chain.blockHash}_${i.chain.logIndex}`)
  const states = new Map((await ctx.tx.entryStates(ids)).map((e) => [e.id, e.reverted]))
  const skip = new Set<number>()
  for (let k = 0; k < ids.length; k++) {
    const id = ids[k] as string
    const reverted = states.get(id)
    if (reverted === undefined) continue
    if (!reverted) {
      skip.add(k)
      continue
    }
    for (let n = 1; ; n++) {
      const candidate = `${id}_${n}`
      const known = states.get(candidate) ?? (await ctx.tx.entryStates([candidate]))[0]?.reverted
      if (known === undefined) {
        ids[k] = candidate
        states.set(candidate, false)
        break
      }
      states.set(candidate, known)
      if (!known) {
        skip.add(k)
        break
      }
    }
  }

  // A run of plain spends between captures is one change of the budget: its entries are
  // written together and journaled as one `reconcile` row (amount: their sum).
  const out: EntryRow[] = []
  let run: EntryRow[] = []
  const unreserved: EntryRow[] = []
  const flush = async () => {
    if (run.length === 0) return
    const last = run[run.length - 1] as EntryRow
    let sum = 0n
    for (const e of run) sum += e.amount
    const after: BudgetRow = { ...b, spent: b.spent + sum, entryCount: b.entryCount + run.length }
    await ctx.tx.insertEntries(run)
    await apply(ctx, b, after, { kind: 'reconcile', amount: sum, source: 'onchain', chain: positionOf(last) })
    b = after
    run = []
  }
  // Holds a log of this batch paid for: a later log naming one again is another payment.
  const paid = new Set<string>()
  for (const [k, input] of inputs.entries()) {
    invariant(input.taskId === taskId, 'chain spends of one batch belong to one task')
    if (skip.has(k)) continue
    const entryId = ids[k] as string
    const hold = holds.get(input.ref)
    if (hold && hold.taskId === taskId && hold.status === 'open') {
      // The run before this capture goes first: the journal keeps the order of the facts.
      await flush()
      const sig = signature({ amount: input.amount, id: entryId, peer: input.to })
      const fields = { amount: input.amount, entryId, peer: input.to, tool: null, reason: null, at: null }
      const captured = await settleCapture(ctx, b, hold, fields, sig, 'onchain', input.chain, input.hook)
      holds.set(input.ref, captured.hold)
      paid.add(hold.id)
      b = ctx.budgets.rows.get(taskId) as BudgetRow
      out.push(captured.entry)
      continue
    }
    const match = hold && hold.taskId === taskId ? await paymentOfHold(ctx, hold, paid) : undefined
    const amount = match ? (input.amount > match.settled ? input.amount - match.settled : 0n) : input.amount
    const reason =
      match && match.settled > 0n
        ? `pays hold ${match.holdId}, settled off the chain as ${match.settled}: counts what it moved beyond that`
        : null
    const entry = entryRow(
      { id: entryId, taskId, holdId: match?.holdId ?? null, amount, peer: input.to, tool: null, reason, at: ctx.now, source: 'onchain', sig: chainSig },
      input.chain,
      input.hook,
    )
    run.push(entry)
    if (amount > 0n) unreserved.push(entry)
    out.push(entry)
  }
  await flush()
  if (unreserved.length > 0) {
    const first = unreserved[0] as EntryRow
    const last = unreserved[unreserved.length - 1] as EntryRow
    emit(ctx, 'unreserved_spend', taskId, {
      amount: unreserved.reduce((sum, e) => sum + e.amount, 0n),
      count: unreserved.length,
      entryIds: unreserved.map((e) => e.id),
      chainId: first.chainId,
      fromBlock: (first.blockNumber as bigint).toString(),
      toBlock: (last.blockNumber as bigint).toString(),
    })
  }
  return out
}

/**
 * What `pay` settled for a hold whose payment the tracker may have recorded first, from a log
 * carrying the hold's `ref` (it captured the hold, or the log was linked to it after it ended).
 * No such log: recorded as a fact. One: its entry answers, and beside it is recorded what `fn`
 * settled beyond it (`rest`: declared paid on chain, the payment counts the larger) or all of
 * it (`whole`: not declared, the log may be another payment). The budget is read (on
 * PostgreSQL, locked) first, as the tracker does before it looks for the same match: one of the
 * two finds the other's write.
 */
export async function settleBesideChain(ctx: RuleContext, holdId: string, input: RecordInput, beside: 'rest' | 'whole'): Promise<EntryRow> {
  await loadBudget(ctx, input.taskId)
  const chain = await ctx.tx.chainEntryOfHold(holdId)
  if (!chain) return record(ctx, input)
  const amount = beside === 'whole' ? input.amount : input.amount - chain.amount
  if (amount > 0n) await record(ctx, { ...input, amount })
  return chain
}

/** On-chain entries are identified by their position, never by call parameters. */
const chainSig = '{"source":"onchain"}'

/**
 * Whether a log whose `ref` names a hold of its task that is no longer open is that hold's
 * payment: only the first such log, and only for a hold that ended unsettled (the log counts
 * whole, linked to the hold) or that `pay` settled as paid on chain (the same payment: the
 * log counts what it moved beyond the settled amount). A hold settled any other way (`capture`,
 * x402, a `pay` not declared on chain) may have paid off the chain: a log naming it is a
 * payment of its own and counts whole, or an agent could hide a spend behind a settled ref.
 */
async function paymentOfHold(ctx: RuleContext, hold: HoldRow, paid: Set<string>): Promise<{ holdId: string; settled: bigint } | undefined> {
  if (paid.has(hold.id) || (await ctx.tx.chainEntryOfHold(hold.id))) return undefined
  const declared = paidOnChain(hold.id)
  let settled = 0n
  if (hold.status === 'captured') {
    if (hold.entryId !== declared) return undefined
    settled = hold.capturedAmount ?? 0n
  } else {
    // One statement at a time: a PostgreSQL connection runs one query at once.
    if ((await ctx.tx.entry(paidAfterHoldEnded(hold.id))) || (await ctx.tx.entry(x402PaidAfterHoldEnded(hold.id)))) return undefined
    settled = (await ctx.tx.entry(declared))?.amount ?? 0n
  }
  paid.add(hold.id)
  return { holdId: hold.id, settled }
}

/**
 * Undoes an on-chain spend whose block left the canonical chain: the entry is marked
 * reverted, `spent` falls back, and a hold it captured opens again (or expires, if its
 * time has passed).
 */
export async function revertChainSpend(ctx: RuleContext, entryId: string): Promise<void> {
  const entry = await ctx.tx.entry(entryId)
  invariant(entry, `reverting unknown entry ${entryId}`)
  invariant(entry.source === 'onchain' && !entry.reverted, `entry ${entryId} is not a live on-chain entry`)
  const b = await readBudget(ctx, entry.taskId)
  invariant(b, `entry ${entryId} has no budget`)
  await ctx.tx.updateEntry({ ...entry, reverted: true })
  const after: BudgetRow = { ...b, spent: b.spent - entry.amount, entryCount: b.entryCount - 1 }
  let holdId: string | null = null
  // The hold this entry captured opens again; one it paid after the hold had ended, or beside
  // an off-chain settlement, stays as it is.
  const hold = entry.holdId === null ? undefined : await ctx.tx.hold(entry.holdId)
  invariant(entry.holdId === null || hold, `reverted entry ${entryId} names no hold`)
  if (hold && hold.entryId === entryId) {
    invariant(hold.status === 'captured', `reverted entry ${entryId} has no captured hold`)
    holdId = hold.id
    const expired = hold.expiresAt !== null && hold.expiresAt <= ctx.now
    if (b.closed || expired) {
      // The hold's time (or its budget) is over: it ends released rather than open.
      const changed = await ctx.tx.reopenHold(hold.id)
      invariant(changed === 1, `reopening hold ${hold.id} changed ${changed} rows`)
      const ended: HoldRow = { ...hold, status: expired ? 'expired' : 'released', settledAt: ctx.now }
      ended.capturedAmount = null
      ended.entryId = null
      ended.settleSig = ended.status
      invariant((await ctx.tx.settleHold(ended)) === 1, `ending hold ${hold.id}`)
    } else {
      const changed = await ctx.tx.reopenHold(hold.id)
      invariant(changed === 1, `reopening hold ${hold.id} changed ${changed} rows`)
      after.reserved = b.reserved + hold.amount
      after.openHolds = b.openHolds + 1
      after.nextExpiryAt = earliest(b.nextExpiryAt, hold.expiresAt)
    }
  }
  await apply(ctx, b, after, {
    kind: 'revert',
    amount: entry.amount,
    holdId,
    entryId,
    source: 'onchain',
    chain: positionOf(entry),
  })
}

export function positionOf(entry: EntryRow): ChainPosition | null {
  if (entry.chainId === null) return null
  return {
    chainId: entry.chainId,
    blockNumber: entry.blockNumber as bigint,
    blockHash: entry.blockHash as `0x${string}`,
    txHash: entry.txHash as `0x${string}`,
    logIndex: entry.logIndex as number,
    confirmed: entry.confirmed,
  }
}
