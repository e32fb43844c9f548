import * as codec from './codec.ts'
import type { BudgetRow, ChainStoreTx, HoldRow, MaybePromise, StoreDialect, StoreTx } from './types.ts'

/**
 * The ledger's write statements, written once with `?` placeholders and turned into
 * each dialect's form. A store supplies an {@link Executor}; {@link createStoreTx} builds
 * the engine's {@link StoreTx} over it.
 */
export type Raw = Record<string, unknown>
export type Params = readonly (string | number | null)[]

export interface Executor {
  get(sql: string, params: Params): MaybePromise<Raw | undefined>
  all(sql: string, params: Params): MaybePromise<Raw[]>
  /** Resolves with the number of rows changed. */
  run(sql: string, params: Params): MaybePromise<number>
}

/** Applies `fn` to a value now or later, staying synchronous while the value is. */
export function andThen<T, U>(value: MaybePromise<T>, fn: (value: T) => U): MaybePromise<U> {
  return value instanceof Promise ? value.then(fn) : fn(value)
}

const ignore = (): void => {}

/** `?` → `$1, $2, …` for PostgreSQL. */
function toDialect(dialect: StoreDialect, text: string): string {
  if (dialect === 'sqlite') return text
  let n = 0
  return text.replace(/\?/g, () => `$${++n}`)
}

function insert(table: codec.TableCodec<unknown>, rows = 1): string {
  const tuple = `(${table.columns.map(() => '?').join(', ')})`
  return `insert into ${table.table} (${table.columns.join(', ')}) values ${Array(rows).fill(tuple).join(', ')}`
}

const changedColumns = Object.values(codec.budgetChanges)
/** Where each changed column sits in a budget row's encoding. */
const changedAt = changedColumns.map((c) => codec.budgets.columns.indexOf(c))

/** Rows per multi-row statement: few statements, well under every dialect's parameter limit. */
const chunkRows = 64

export function statements(dialect: StoreDialect) {
  const lock = dialect === 'postgres' ? ' for update' : ''
  const s = {
    budget: `select * from budgets where task_id = ?${lock}`,
    readBudget: 'select * from budgets where task_id = ?',
    insertBudget: insert(codec.budgets as codec.TableCodec<unknown>),
    updateBudget: `update budgets set ${changedColumns.map((c) => `${c} = ?`).join(', ')} where task_id = ?`,
    hold: 'select * from holds where id = ?',
    holdByKey: 'select * from holds where task_id = ? and key = ?',
    holdByRef: 'select * from holds where ref = ?',
    insertHold: insert(codec.holds as codec.TableCodec<unknown>),
    settleHold:
      "update holds set status = ?, settled_at = ?, captured_amount = ?, entry_id = ?, settle_sig = ? where id = ? and status = 'open'",
    reopenHold:
      "update holds set status = 'open', settled_at = null, captured_amount = null, entry_id = null, settle_sig = null where id = ? and status = 'captured'",
    openHolds: "select * from holds where task_id = ? and status = 'open' order by created_at, id",
    dueHolds:
      "select * from holds where task_id = ? and status = 'open' and expires_at <= ? order by expires_at, id",
    entry: 'select * from entries where id = ?',
    // Through the partial index entries_chain_hold: on-chain entries that paid for a hold.
    chainEntryOfHold:
      "select * from entries where hold_id = ? and source = 'onchain' and hold_id is not null and reverted = 0 order by id limit 1",
    insertEntry: insert(codec.entries as codec.TableCodec<unknown>),
    updateEntry: 'update entries set confirmed = ?, reverted = ? where id = ?',
    appendJournal: insert(codec.journal as codec.TableCodec<unknown>),
    insertOutbox: insert(codec.outbox as codec.TableCodec<unknown>),
    // Locked on PostgreSQL: two trackers of one hook apply their batches one after the other.
    cursor: `select * from chain_cursors where chain_id = ? and hook = ?${lock}`,
    // A cursor moves only from where its batch began: a first batch inserts it (and loses to
    // another tracker's first batch), a later one updates the very row it read. Two trackers
    // starting at once on PostgreSQL both read no row, which the lock above cannot lock.
    claimCursor:
      'insert into chain_cursors (chain_id, hook, block_number, block_hash, updated_at) values (?, ?, ?, ?, ?) on conflict (chain_id, hook) do nothing',
    advanceCursor:
      'update chain_cursors set block_number = ?, block_hash = ?, updated_at = ? where chain_id = ? and hook = ? and block_number = ? and block_hash = ?',
    insertBlock:
      insert(codec.chainBlocks as codec.TableCodec<unknown>) +
      ' on conflict (chain_id, hook, number) do update set hash = excluded.hash, parent_hash = excluded.parent_hash',
    deleteBlocksFrom: 'delete from chain_blocks where chain_id = ? and hook = ? and number >= ?',
    pruneBlocksBelow: 'delete from chain_blocks where chain_id = ? and hook = ? and number < ?',
    log: 'select * from chain_logs where chain_id = ? and block_hash = ? and log_index = ?',
    insertLog: insert(codec.chainLogs as codec.TableCodec<unknown>),
    deleteLogsFrom: 'delete from chain_logs where chain_id = ? and hook = ? and block_number >= ?',
    confirmLogsUpTo:
      'update chain_logs set confirmed = 1 where chain_id = ? and hook = ? and confirmed = 0 and block_number <= ?',
    confirmEntriesUpTo:
      'update entries set confirmed = 1 where chain_id = ? and hook = ? and chain_id is not null and confirmed = 0 and block_number <= ?',
    entriesFrom:
      'select * from entries where chain_id = ? and hook = ? and chain_id is not null and block_number >= ? and reverted = 0 order by block_number desc, log_index desc',
    bindings: 'select * from bindings where chain_id = ? and hook = ?',
    saveBinding:
      insert(codec.bindings as codec.TableCodec<unknown>) +
      ' on conflict (chain_id, hook, account, sender) do update set task_id = excluded.task_id, token = excluded.token, created_at = excluded.created_at',
    deleteBinding: 'delete from bindings where chain_id = ? and hook = ? and account = ? and sender = ?',
  }
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, toDialect(dialect, v)])) as typeof s
}

/** Multi-row and `in (…)` statements by row count, built once per count. */
function variadic(dialect: StoreDialect) {
  const cache = new Map<string, string>()
  const get = (key: string, build: () => string) => {
    let text = cache.get(key)
    if (text === undefined) {
      text = toDialect(dialect, build())
      cache.set(key, text)
    }
    return text
  }
  const list = (n: number) => Array(n).fill('?').join(', ')
  return {
    insertEntries: (n: number) => get(`e${n}`, () => insert(codec.entries as codec.TableCodec<unknown>, n)),
    appendJournals: (n: number) => get(`j${n}`, () => insert(codec.journal as codec.TableCodec<unknown>, n)),
    entryStates: (n: number) => get(`i${n}`, () => `select id, reverted from entries where id in (${list(n)})`),
    holdsByRefs: (n: number) => get(`r${n}`, () => `select * from holds where ref in (${list(n)})`),
    lockBudgets: (n: number) =>
      get(`b${n}`, () => `select * from budgets where task_id in (${list(n)}) order by task_id${dialect === 'postgres' ? ' for update' : ''}`),
  }
}

function chunks<T>(rows: T[]): T[][] {
  const out: T[][] = []
  for (let i = 0; i < rows.length; i += chunkRows) out.push(rows.slice(i, i + chunkRows))
  return out
}

/** Runs `step` for each chunk in order, synchronously while the executor answers synchronously. */
function eachChunk<T, U>(rows: T[], step: (chunk: T[]) => MaybePromise<U>, collect: (value: U) => void): MaybePromise<void> {
  const parts = chunks(rows)
  let i = 0
  const next = (): MaybePromise<void> => {
    while (i < parts.length) {
      const result = step(parts[i++] as T[])
      if (result instanceof Promise) return result.then((value) => {
        collect(value)
        return next()
      })
      collect(result)
    }
  }
  return next()
}

export function createStoreTx(dialect: StoreDialect, exec: Executor): StoreTx {
  const q = statements(dialect)
  const many_ = variadic(dialect)
  const one =
    <T>(decode: (raw: Raw) => T) =>
    (raw: Raw | undefined): T | undefined =>
      raw === undefined ? undefined : decode(raw)
  const many =
    <T>(decode: (raw: Raw) => T) =>
    (raws: Raw[]): T[] =>
      raws.map(decode)

  const chain: ChainStoreTx = {
    cursor: (chainId, hook) => andThen(exec.get(q.cursor, [chainId, hook]), one(codec.chainCursors.decode)),
    moveCursor: (row, from) =>
      from === null
        ? exec.run(q.claimCursor, codec.chainCursors.encode(row))
        : exec.run(q.advanceCursor, [row.blockNumber.toString(), row.blockHash, row.updatedAt, row.chainId, row.hook, from.blockNumber.toString(), from.blockHash]),
    insertBlock: (row) => andThen(exec.run(q.insertBlock, codec.chainBlocks.encode(row)), ignore),
    deleteBlocksFrom: (chainId, hook, from) =>
      andThen(exec.run(q.deleteBlocksFrom, [chainId, hook, from.toString()]), ignore),
    pruneBlocksBelow: (chainId, hook, below) =>
      andThen(exec.run(q.pruneBlocksBelow, [chainId, hook, below.toString()]), ignore),
    log: (chainId, blockHash, logIndex) =>
      andThen(exec.get(q.log, [chainId, blockHash, logIndex]), one(codec.chainLogs.decode)),
    insertLog: (row) => andThen(exec.run(q.insertLog, codec.chainLogs.encode(row)), ignore),
    deleteLogsFrom: (chainId, hook, from) => andThen(exec.run(q.deleteLogsFrom, [chainId, hook, from.toString()]), ignore),
    confirmLogsUpTo: (chainId, hook, upTo) =>
      andThen(exec.run(q.confirmLogsUpTo, [chainId, hook, upTo.toString()]), ignore),
    confirmEntriesUpTo: (chainId, hook, upTo) =>
      andThen(exec.run(q.confirmEntriesUpTo, [chainId, hook, upTo.toString()]), ignore),
    entriesFrom: (chainId, hook, from) =>
      andThen(exec.all(q.entriesFrom, [chainId, hook, from.toString()]), many(codec.entries.decode)),
    bindings: (chainId, hook) => andThen(exec.all(q.bindings, [chainId, hook]), many(codec.bindings.decode)),
    saveBinding: (row) => andThen(exec.run(q.saveBinding, codec.bindings.encode(row)), ignore),
    deleteBinding: (chainId, hook, account, sender) => exec.run(q.deleteBinding, [chainId, hook, account, sender]),
  }

  return {
    rowLocks: dialect === 'postgres',
    budget: (taskId) => andThen(exec.get(q.budget, [taskId]), one(codec.budgets.decode)),
    lockBudgets: (taskIds) => {
      const rows: BudgetRow[] = []
      // Chunks in order keep the locks in task id order across statements too.
      return andThen(
        eachChunk([...taskIds].sort(), (chunk) => exec.all(many_.lockBudgets(chunk.length), chunk), (raws) => {
          for (const raw of raws) rows.push(codec.budgets.decode(raw))
        }),
        () => rows,
      )
    },
    insertBudget: (row) => andThen(exec.run(q.insertBudget, codec.budgets.encode(row)), ignore),
    updateBudget: (r) => {
      const encoded = codec.budgets.encode(r)
      const params = changedAt.map((i) => encoded[i] as string | number | null)
      params.push(r.taskId)
      return andThen(exec.run(q.updateBudget, params), ignore)
    },
    hold: (id) => andThen(exec.get(q.hold, [id]), one(codec.holds.decode)),
    holdByKey: (taskId, key) => andThen(exec.get(q.holdByKey, [taskId, key]), one(codec.holds.decode)),
    holdByRef: (ref) => andThen(exec.get(q.holdByRef, [ref]), one(codec.holds.decode)),
    insertHold: (row) => andThen(exec.run(q.insertHold, codec.holds.encode(row)), ignore),
    settleHold: (r) =>
      exec.run(q.settleHold, [
        r.status,
        r.settledAt,
        r.capturedAmount === null ? null : r.capturedAmount.toString(),
        r.entryId,
        r.settleSig,
        r.id,
      ]),
    reopenHold: (id) => exec.run(q.reopenHold, [id]),
    openHolds: (taskId) => andThen(exec.all(q.openHolds, [taskId]), many(codec.holds.decode)),
    dueHolds: (taskId, now) => andThen(exec.all(q.dueHolds, [taskId, now]), many(codec.holds.decode)),
    entry: (id) => andThen(exec.get(q.entry, [id]), one(codec.entries.decode)),
    chainEntryOfHold: (holdId) => andThen(exec.get(q.chainEntryOfHold, [holdId]), one(codec.entries.decode)),
    insertEntry: (row) => andThen(exec.run(q.insertEntry, codec.entries.encode(row)), ignore),
    updateEntry: (r) => andThen(exec.run(q.updateEntry, [r.confirmed ? 1 : 0, r.reverted ? 1 : 0, r.id]), ignore),
    appendJournal: (row) => andThen(exec.run(q.appendJournal, codec.journal.encode(row)), ignore),
    appendJournals: (rows) =>
      eachChunk(rows, (chunk) => exec.run(many_.appendJournals(chunk.length), chunk.flatMap(codec.journal.encode)), ignore),
    insertEntries: (rows) =>
      eachChunk(rows, (chunk) => exec.run(many_.insertEntries(chunk.length), chunk.flatMap(codec.entries.encode)), ignore),
    entryStates: (ids) => {
      const taken: { id: string; reverted: boolean }[] = []
      return andThen(
        eachChunk(ids, (chunk) => exec.all(many_.entryStates(chunk.length), chunk), (raws) => {
          for (const raw of raws) taken.push({ id: raw.id as string, reverted: Number(raw.reverted) === 1 })
        }),
        () => taken,
      )
    },
    holdsByRefs: (refs) => {
      const found: HoldRow[] = []
      return andThen(
        eachChunk(refs, (chunk) => exec.all(many_.holdsByRefs(chunk.length), chunk), (raws) => {
          for (const raw of raws) found.push(codec.holds.decode(raw))
        }),
        () => found,
      )
    },
    insertOutbox: (row) => andThen(exec.run(q.insertOutbox, codec.outbox.encode(row)), ignore),
    chain,
  }
}
