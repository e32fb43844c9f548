import * as codec from './codec.ts'
import type { ChainStoreTx, MaybePromise, StoreDialect, StoreTx } from './types.ts'

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

function then<T, U>(value: MaybePromise<T>, fn: (value: T) => U): MaybePromise<U> {
  return value instanceof Promise ? value.then(fn) : fn(value)
}

const ignore = (): void => {}

/** `?` → `$1, $2, …` for PostgreSQL. */
export function toDialect(dialect: StoreDialect, text: string): string {
  if (dialect === 'sqlite') return text
  let n = 0
  return text.replace(/\?/g, () => `$${++n}`)
}

function insert(table: codec.TableCodec<unknown>): string {
  return `insert into ${table.table} (${table.columns.join(', ')}) values (${table.columns.map(() => '?').join(', ')})`
}

export function statements(dialect: StoreDialect) {
  const lock = dialect === 'postgres' ? ' for update' : ''
  const s = {
    budget: `select * from budgets where task_id = ?${lock}`,
    readBudget: 'select * from budgets where task_id = ?',
    insertBudget: insert(codec.budgets as codec.TableCodec<unknown>),
    updateBudget:
      'update budgets set spent = ?, reserved = ?, fired_mask = ?, exhausted = ?, progress = ?, closed = ?, ' +
      'updated_at = ?, closed_at = ?, entry_count = ?, open_holds = ?, next_expiry_at = ?, report = ? where task_id = ?',
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
    insertEntry: insert(codec.entries as codec.TableCodec<unknown>),
    updateEntry: 'update entries set confirmed = ?, reverted = ? where id = ?',
    appendJournal: insert(codec.journal as codec.TableCodec<unknown>),
    insertOutbox: insert(codec.outbox as codec.TableCodec<unknown>),
    cursor: 'select * from chain_cursors where chain_id = ? and hook = ?',
    saveCursor:
      'insert into chain_cursors (chain_id, hook, block_number, block_hash, updated_at) values (?, ?, ?, ?, ?) ' +
      'on conflict (chain_id, hook) do update set block_number = excluded.block_number, block_hash = excluded.block_hash, updated_at = excluded.updated_at',
    blocks: 'select * from chain_blocks where chain_id = ? and hook = ? and number >= ? order by number',
    insertBlock:
      insert(codec.chainBlocks as codec.TableCodec<unknown>) +
      ' on conflict (chain_id, hook, number) do update set hash = excluded.hash, parent_hash = excluded.parent_hash',
    deleteBlocksFrom: 'delete from chain_blocks where chain_id = ? and hook = ? and number >= ?',
    pruneBlocksBelow: 'delete from chain_blocks where chain_id = ? and hook = ? and number < ?',
    log: 'select * from chain_logs where chain_id = ? and block_hash = ? and log_index = ?',
    insertLog: insert(codec.chainLogs as codec.TableCodec<unknown>),
    logsFrom:
      'select * from chain_logs where chain_id = ? and hook = ? and block_number >= ? order by block_number desc, log_index desc',
    deleteLogsFrom: 'delete from chain_logs where chain_id = ? and hook = ? and block_number >= ?',
    confirmLogsUpTo:
      'update chain_logs set confirmed = 1 where chain_id = ? and hook = ? and confirmed = 0 and block_number <= ?',
    confirmEntriesUpTo:
      'update entries set confirmed = 1 where chain_id = ? and chain_id is not null and confirmed = 0 and reverted = 0 and block_number <= ?',
    binding: 'select * from bindings where chain_id = ? and hook = ? and account = ? and sender = ?',
    saveBinding:
      insert(codec.bindings as codec.TableCodec<unknown>) +
      ' on conflict (chain_id, hook, account, sender) do update set task_id = excluded.task_id, token = excluded.token, created_at = excluded.created_at',
    deleteBinding: 'delete from bindings where chain_id = ? and hook = ? and account = ? and sender = ?',
  }
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, toDialect(dialect, v)])) as typeof s
}

export function createStoreTx(dialect: StoreDialect, exec: Executor): StoreTx {
  const q = statements(dialect)
  const one =
    <T>(decode: (raw: Raw) => T) =>
    (raw: Raw | undefined): T | undefined =>
      raw === undefined ? undefined : decode(raw)
  const many =
    <T>(decode: (raw: Raw) => T) =>
    (raws: Raw[]): T[] =>
      raws.map(decode)

  const chain: ChainStoreTx = {
    cursor: (chainId, hook) => then(exec.get(q.cursor, [chainId, hook]), one(codec.chainCursors.decode)),
    saveCursor: (row) => then(exec.run(q.saveCursor, codec.chainCursors.encode(row)), ignore),
    blocks: (chainId, hook, from) =>
      then(exec.all(q.blocks, [chainId, hook, from.toString()]), many(codec.chainBlocks.decode)),
    insertBlock: (row) => then(exec.run(q.insertBlock, codec.chainBlocks.encode(row)), ignore),
    deleteBlocksFrom: (chainId, hook, from) =>
      then(exec.run(q.deleteBlocksFrom, [chainId, hook, from.toString()]), ignore),
    pruneBlocksBelow: (chainId, hook, below) =>
      then(exec.run(q.pruneBlocksBelow, [chainId, hook, below.toString()]), ignore),
    log: (chainId, blockHash, logIndex) =>
      then(exec.get(q.log, [chainId, blockHash, logIndex]), one(codec.chainLogs.decode)),
    insertLog: (row) => then(exec.run(q.insertLog, codec.chainLogs.encode(row)), ignore),
    logsFrom: (chainId, hook, from) =>
      then(exec.all(q.logsFrom, [chainId, hook, from.toString()]), many(codec.chainLogs.decode)),
    deleteLogsFrom: (chainId, hook, from) => then(exec.run(q.deleteLogsFrom, [chainId, hook, from.toString()]), ignore),
    confirmLogsUpTo: (chainId, hook, upTo) =>
      then(exec.run(q.confirmLogsUpTo, [chainId, hook, upTo.toString()]), ignore),
    confirmEntriesUpTo: (chainId, upTo) => then(exec.run(q.confirmEntriesUpTo, [chainId, upTo.toString()]), ignore),
    binding: (chainId, hook, account, sender) =>
      then(exec.get(q.binding, [chainId, hook, account, sender]), one(codec.bindings.decode)),
    saveBinding: (row) => then(exec.run(q.saveBinding, codec.bindings.encode(row)), ignore),
    deleteBinding: (chainId, hook, account, sender) => exec.run(q.deleteBinding, [chainId, hook, account, sender]),
  }

  return {
    rowLocks: dialect === 'postgres',
    budget: (taskId) => then(exec.get(q.budget, [taskId]), one(codec.budgets.decode)),
    insertBudget: (row) => then(exec.run(q.insertBudget, codec.budgets.encode(row)), ignore),
    updateBudget: (r) =>
      then(
        exec.run(q.updateBudget, [
          r.spent.toString(),
          r.reserved.toString(),
          r.firedMask,
          r.exhausted ? 1 : 0,
          r.progress,
          r.closed ? 1 : 0,
          r.updatedAt,
          r.closedAt,
          r.entryCount,
          r.openHolds,
          r.nextExpiryAt,
          r.report,
          r.taskId,
        ]),
        ignore,
      ),
    hold: (id) => then(exec.get(q.hold, [id]), one(codec.holds.decode)),
    holdByKey: (taskId, key) => then(exec.get(q.holdByKey, [taskId, key]), one(codec.holds.decode)),
    holdByRef: (ref) => then(exec.get(q.holdByRef, [ref]), one(codec.holds.decode)),
    insertHold: (row) => then(exec.run(q.insertHold, codec.holds.encode(row)), ignore),
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
    openHolds: (taskId) => then(exec.all(q.openHolds, [taskId]), many(codec.holds.decode)),
    dueHolds: (taskId, now) => then(exec.all(q.dueHolds, [taskId, now]), many(codec.holds.decode)),
    entry: (id) => then(exec.get(q.entry, [id]), one(codec.entries.decode)),
    insertEntry: (row) => then(exec.run(q.insertEntry, codec.entries.encode(row)), ignore),
    updateEntry: (r) => then(exec.run(q.updateEntry, [r.confirmed ? 1 : 0, r.reverted ? 1 : 0, r.id]), ignore),
    appendJournal: (row) => then(exec.run(q.appendJournal, codec.journal.encode(row)), ignore),
    insertOutbox: (row) => then(exec.run(q.insertOutbox, codec.outbox.encode(row)), ignore),
    chain,
  }
}
