import type { Kysely } from 'kysely'
import type { HoldStatus, JournalKind, Source } from '../types.ts'
import type { Database } from './schema.ts'

/** A value now (SQLite answers synchronously) or later (PostgreSQL). */
export type MaybePromise<T> = T | Promise<T>

export type BudgetRow = {
  taskId: string
  asset: string
  decimals: number
  total: bigint
  spent: bigint
  reserved: bigint
  hardLimit: boolean
  thresholds: number[]
  /** Bit i set: threshold i has fired and not re-armed. */
  firedMask: number
  exhausted: boolean
  progress: number
  metadata: string | null
  closed: boolean
  createdAt: number
  updatedAt: number
  closedAt: number | null
  entryCount: number
  openHolds: number
  /** Earliest `expiresAt` of the open holds (may be stale-early, never late). */
  nextExpiryAt: number | null
  /** The close report, as JSON, once closed. */
  report: string | null
}

export type HoldRow = {
  id: string
  taskId: string
  ref: string
  key: string | null
  amount: bigint
  status: HoldStatus
  expiresAt: number | null
  createdAt: number
  settledAt: number | null
  capturedAmount: bigint | null
  entryId: string | null
  /** Canonical parameters of the settling call, for retries. */
  settleSig: string | null
  /** Canonical parameters of the reserving call, for retries. */
  sig: string
}

export type EntryRow = {
  id: string
  taskId: string
  holdId: string | null
  amount: bigint
  peer: string | null
  tool: string | null
  reason: string | null
  at: number
  source: Source
  chainId: number | null
  /** The SpendingHook that logged an on-chain entry. */
  hook: string | null
  blockNumber: bigint | null
  blockHash: string | null
  txHash: string | null
  logIndex: number | null
  confirmed: boolean
  reverted: boolean
  /** Canonical parameters of the recording call, for retries. */
  sig: string
}

export type JournalRow = {
  seq: bigint
  taskId: string
  kind: JournalKind
  amount: bigint | null
  holdId: string | null
  entryId: string | null
  source: Source
  chain: string | null
  spentAfter: bigint
  reservedAfter: bigint
  at: number
}

export type OutboxRow = {
  id: string
  kind: string
  taskId: string
  payload: string
  createdAt: number
  /** Until when the process that wrote or claimed the row holds it for delivery. */
  leaseUntil: number | null
}

/**
 * The write side of a store inside one transaction. Every method is a single
 * statement; a `forUpdate` read takes the row's write lock where the store has row locks.
 */
export interface StoreTx {
  /** Whether `budget()` takes a row lock (PostgreSQL); SQLite's transaction holds the whole file. */
  readonly rowLocks: boolean
  budget(taskId: string): MaybePromise<BudgetRow | undefined>
  /** Locks and reads several budgets in one statement, in task id order (PostgreSQL). */
  lockBudgets(taskIds: string[]): MaybePromise<BudgetRow[]>
  insertBudget(row: BudgetRow): MaybePromise<void>
  updateBudget(row: BudgetRow): MaybePromise<void>

  hold(id: string): MaybePromise<HoldRow | undefined>
  holdByKey(taskId: string, key: string): MaybePromise<HoldRow | undefined>
  holdByRef(ref: string): MaybePromise<HoldRow | undefined>
  insertHold(row: HoldRow): MaybePromise<void>
  /** Moves an open hold to `status`; resolves with the number of rows changed (0 or 1). */
  settleHold(row: HoldRow): MaybePromise<number>
  /** Moves a captured hold back to open (a reorg removed its capture); rows changed. */
  reopenHold(id: string): MaybePromise<number>
  openHolds(taskId: string): MaybePromise<HoldRow[]>
  dueHolds(taskId: string, now: number): MaybePromise<HoldRow[]>

  entry(id: string): MaybePromise<EntryRow | undefined>
  /**
   * A live on-chain entry that paid for `holdId`: the log that captured it, or one whose `ref`
   * named it after it had ended or been settled off the chain.
   */
  chainEntryOfHold(holdId: string): MaybePromise<EntryRow | undefined>
  insertEntry(row: EntryRow): MaybePromise<void>
  updateEntry(row: EntryRow): MaybePromise<void>

  /** Several entries at once (one statement per chunk of rows). */
  insertEntries(rows: EntryRow[]): MaybePromise<void>
  /** Of `ids`, those that are taken, and whether their entry was reverted. */
  entryStates(ids: string[]): MaybePromise<{ id: string; reverted: boolean }[]>
  /** Holds carrying any of `refs`. */
  holdsByRefs(refs: string[]): MaybePromise<HoldRow[]>

  appendJournal(row: Omit<JournalRow, 'seq'>): MaybePromise<void>
  /** Several journal rows at once, in order. */
  appendJournals(rows: Omit<JournalRow, 'seq'>[]): MaybePromise<void>
  insertOutbox(row: OutboxRow): MaybePromise<void>

  /** Generic key/value rows of other parts of spendguard (the chain tracker). */
  readonly chain: ChainStoreTx
}

/** The tracker's tables, written in the same transaction as the ledger changes. */
export interface ChainStoreTx {
  cursor(chainId: number, hook: string): MaybePromise<ChainCursorRow | undefined>
  /**
   * Moves the cursor to `row` from `from` (null: no cursor yet); resolves with the rows changed,
   * 0 when the stored cursor is not `from` (another tracker moved it).
   */
  moveCursor(row: ChainCursorRow, from: { blockNumber: bigint; blockHash: string } | null): MaybePromise<number>
  insertBlock(row: ChainBlockRow): MaybePromise<void>
  deleteBlocksFrom(chainId: number, hook: string, fromNumber: bigint): MaybePromise<void>
  pruneBlocksBelow(chainId: number, hook: string, belowNumber: bigint): MaybePromise<void>
  log(chainId: number, blockHash: string, logIndex: number): MaybePromise<ChainLogRow | undefined>
  insertLog(row: ChainLogRow): MaybePromise<void>
  deleteLogsFrom(chainId: number, hook: string, fromNumber: bigint): MaybePromise<void>
  confirmLogsUpTo(chainId: number, hook: string, upToNumber: bigint): MaybePromise<void>
  confirmEntriesUpTo(chainId: number, hook: string, upToNumber: bigint): MaybePromise<void>
  /** Live on-chain entries of a hook at or above `fromNumber`, newest first. */
  entriesFrom(chainId: number, hook: string, fromNumber: bigint): MaybePromise<EntryRow[]>
  /** Every binding of a hook, as this transaction sees them. */
  bindings(chainId: number, hook: string): MaybePromise<BindingRow[]>
  saveBinding(row: BindingRow): MaybePromise<void>
  deleteBinding(chainId: number, hook: string, account: string, sender: string): MaybePromise<number>
}

/** Reads of the tracker's tables (committed state). */
export interface ChainReads {
  status(chainId: number, hook: string): Promise<{ confirmed: number; unconfirmed: number; unbound: number; foreign: number }>
  unassigned(chainId: number, hook: string, limit: number): Promise<ChainLogRow[]>
  bindings(chainId: number, hook: string): Promise<BindingRow[]>
  cursor(chainId: number, hook: string): Promise<ChainCursorRow | undefined>
  /** Kept block hashes at or above `fromNumber`, newest first. */
  blocks(chainId: number, hook: string, fromNumber: bigint): Promise<ChainBlockRow[]>
  /** The newest block at or below `atMost` that a live log of the hook was applied or kept from. */
  loggedBlock(chainId: number, hook: string, atMost: bigint): Promise<{ number: bigint; hash: string } | undefined>
}

export type ChainCursorRow = {
  chainId: number
  hook: string
  blockNumber: bigint
  blockHash: string
  updatedAt: number
}

export type ChainBlockRow = {
  chainId: number
  hook: string
  number: bigint
  hash: string
  parentHash: string
}

export type ChainLogRow = {
  chainId: number
  hook: string
  blockHash: string
  logIndex: number
  blockNumber: bigint
  txHash: string
  account: string
  token: string
  sender: string
  to: string
  amount: bigint
  ref: string
  /** `unbound` (no binding), `foreign` (token not the task's asset), `zero` (nothing moved); applied logs are entries. */
  disposition: 'unbound' | 'foreign' | 'zero'
  taskId: string | null
  confirmed: boolean
}

export type BindingRow = {
  chainId: number
  hook: string
  account: string
  /** The sender this binding is limited to; `''` for any sender. */
  sender: string
  taskId: string
  token: string
  createdAt: number
}

export type StoreDialect = 'sqlite' | 'postgres'

/** One ledger store: a transaction runner for the writer and kysely for reads. */
export interface Store {
  readonly dialect: StoreDialect
  /** Kysely over a connection that never sees uncommitted writes of this process. */
  readonly db: Kysely<Database>
  /**
   * Runs `fn` in one write transaction (the write lock is taken up front), retrying
   * lock and serialization failures a bounded number of times. `fn` may run more than once.
   */
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>
  /**
   * Runs `fn`'s reads on one consistent snapshot of the committed ledger, on a connection
   * of their own: commits landing meanwhile (from any process) stay out of it.
   */
  snapshot<T>(fn: (db: Kysely<Database>) => Promise<T>): Promise<T>
  /** One budget as last committed (a primary-key read, the hot path of `check`). */
  readBudget(taskId: string): Promise<BudgetRow | undefined>
  /** Claims up to `limit` undelivered outbox rows for `leaseMs`. */
  claimOutbox(kinds: string[], now: number, leaseMs: number, limit: number): Promise<OutboxRow[]>
  markDelivered(ids: string[], now: number): Promise<void>
  /** Task ids having open holds that expired at or before `now`. */
  tasksWithDueHolds(now: number, limit: number): Promise<string[]>
  readonly chain: ChainReads
  /**
   * How durable a commit is, as the writer connection itself reports it: SQLite's
   * `synchronous` (`FULL`, `EXTRA`, `NORMAL`, `OFF`), PostgreSQL's `synchronous_commit`.
   */
  durability(): Promise<string>
  destroy(): Promise<void>
}
