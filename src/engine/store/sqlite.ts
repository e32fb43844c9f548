import { realpathSync } from 'node:fs'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { Kysely, Migrator, SqliteDialect } from 'kysely'
import { InvariantViolationError } from '../errors.ts'
import { createChainReads } from './chain-reads.ts'
import { createRowCache } from './row-cache.ts'
import { serial } from './serial.ts'
import { budgets as budgetCodec, outbox as outboxCodec } from './codec.ts'
import { type Database as Schema, migrations } from './schema.ts'
import { type Executor, type Params, type Raw, createStoreTx, statements } from './statements.ts'
import type { Store, StoreTx } from './types.ts'

export type SqliteStoreOptions = {
  path: string
  /** `FULL` (default) makes every commit durable before it resolves. */
  synchronous?: 'FULL' | 'NORMAL' | 'EXTRA' | 'OFF'
  /** How long one attempt waits for another process's write lock. */
  busyTimeoutMs?: number
}

const cacheKib = 16 * 1024

/** Bounded retries of a write transaction that found the file locked. */
const busyRetriesMax = 50

/**
 * SQLite through better-sqlite3: one writer connection (every write transaction starts
 * with BEGIN IMMEDIATE, so it holds the file's write lock from its first statement) and
 * one reader connection behind kysely, which never sees this process's uncommitted writes.
 */
export async function createSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  const synchronous = options.synchronous ?? 'FULL'
  const busyTimeoutMs = options.busyTimeoutMs ?? 5_000
  const open = () => {
    const db = new Database(options.path, { timeout: busyTimeoutMs })
    // 16 MiB of page cache (the default is 2 MiB): the hot index pages of a large ledger stay in memory.
    db.pragma(`cache_size = ${-cacheKib}`)
    return db
  }

  const writer = open()
  // Writers of one file in this process take turns without blocking: SQLite's busy wait is
  // synchronous, so a connection waiting for another guard's write lock in the same thread
  // would hold up the very event loop that guard needs to finish its transaction. Opening
  // (the switch to WAL, the migrations) takes its turn too.
  const turn = fileTurn(options.path)
  const inTurn = turn.inTurn
  try {
    await inTurn(async () => {
      await withBusyRetry(() => {
        writer.pragma('journal_mode = WAL')
      })
      writer.pragma(`synchronous = ${synchronous}`)
      const migrationConnection = open()
      const migrator = new Kysely<Schema>({ dialect: new SqliteDialect({ database: migrationConnection }) })
      try {
        await migrate(migrator, migrationConnection)
      } finally {
        await migrator.destroy()
        migrationConnection.close()
      }
    })
  } catch (error) {
    writer.close()
    turn.release()
    throw error
  }

  const reader = open()
  reader.pragma('query_only = true')
  const readBudget = reader.prepare(statements('sqlite').readBudget)
  const dueTasks = reader.prepare(
    "select distinct task_id from holds where status = 'open' and expires_at is not null and expires_at <= ? limit ?",
  )
  const db = new Kysely<Schema>({ dialect: new SqliteDialect({ database: reader }) })

  const cache = new Map<string, Database.Statement>()
  const prepare = (sql: string) => {
    let statement = cache.get(sql)
    if (!statement) {
      statement = writer.prepare(sql)
      cache.set(sql, statement)
    }
    return statement
  }
  const exec: Executor = {
    get: (sql: string, params: Params) => prepare(sql).get(params) as Raw | undefined,
    all: (sql: string, params: Params) => prepare(sql).all(params) as Raw[],
    run: (sql: string, params: Params) => prepare(sql).run(params).changes,
  }
  const tx: StoreTx = createStoreTx('sqlite', exec)
  const begin = writer.prepare('begin immediate')
  const commit = writer.prepare('commit')
  const rollback = writer.prepare('rollback')
  // Budgets and holds this connection knows, valid while no other connection commits:
  // data_version moves exactly when one did (this connection's own commits leave it).
  const rows = createRowCache()
  const dataVersion = writer.prepare('pragma data_version').pluck()
  let seenVersion: unknown

  async function runTransaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    if (writer.inTransaction) throw new InvariantViolationError('sqlite writer re-entered')
    for (let attempt = 0; ; attempt++) {
      try {
        begin.run()
      } catch (error) {
        if (isBusy(error) && attempt < busyRetriesMax) {
          await sleep(Math.min(100, 2 ** attempt))
          continue
        }
        throw error
      }
      const view = rows.wrap(tx)
      try {
        const version = dataVersion.get()
        if (version !== seenVersion) {
          rows.clear()
          seenVersion = version
        }
        const result = await fn(view.tx)
        commit.run()
        view.commit()
        return result
      } catch (error) {
        if (writer.inTransaction) rollback.run()
        if (isBusy(error) && attempt < busyRetriesMax) continue
        throw error
      }
    }
  }

  const store: Store = {
    dialect: 'sqlite',
    db,
    chain: createChainReads(db),
    transaction: (fn) => inTurn(() => runTransaction(fn)),
    async readBudget(taskId) {
      const raw = readBudget.get(taskId) as Raw | undefined
      return raw === undefined ? undefined : budgetCodec.decode(raw)
    },
    async snapshot(fn) {
      // A connection of its own: the shared reader keeps answering everyone else with the
      // newest commits meanwhile. A WAL read transaction sees one snapshot from its first read.
      const connection = open()
      connection.pragma('query_only = true')
      const snapshotDb = new Kysely<Schema>({ dialect: new SqliteDialect({ database: connection }) })
      try {
        connection.exec('begin')
        const result = await fn(snapshotDb)
        connection.exec('commit')
        return result
      } finally {
        await snapshotDb.destroy()
        // kysely closes the connection only if a query of its own opened it.
        connection.close()
      }
    },
    async claimOutbox(kinds, now, leaseMs, limit) {
      if (kinds.length === 0) return []
      // Claims are writes: take them through the writer so no two processes claim one row.
      return store.transaction(async () => {
        const rows = prepare(
          `select * from outbox where delivered_at is null and (lease_until is null or lease_until <= ?) and kind in (${kinds.map(() => '?').join(', ')}) order by created_at limit ?`,
        ).all(now, ...kinds, limit) as Raw[]
        const lease = prepare('update outbox set lease_until = ? where id = ?')
        for (const row of rows) lease.run(now + leaseMs, row.id as string)
        return rows.map(outboxCodec.decode)
      })
    },
    async markDelivered(ids, now) {
      if (ids.length === 0) return
      await store.transaction(async () => {
        const mark = prepare('update outbox set delivered_at = ? where id = ?')
        for (const id of ids) mark.run(now, id)
      })
    },
    async tasksWithDueHolds(now, limit) {
      const rows = dueTasks.all(now, limit) as { task_id: string }[]
      return rows.map((r) => r.task_id)
    },
    async durability() {
      const level = writer.pragma('synchronous', { simple: true }) as number
      return ['OFF', 'NORMAL', 'FULL', 'EXTRA'][level] ?? String(level)
    },
    async destroy() {
      await db.destroy()
      // kysely closes the reader only if a query of its own ever opened it.
      reader.close()
      writer.close()
      turn.release()
    },
  }
  return store
}

/**
 * Runs kysely's migrations inside one transaction that takes the file's write lock up front
 * (kysely's own would start with a deferred BEGIN, and two processes opening a fresh file
 * could then both decide to migrate it).
 */
async function migrate(db: Kysely<Schema>, connection: Database.Database): Promise<void> {
  const migrator = new Migrator({ db, provider: migrations('sqlite'), disableTransactions: true })
  for (let attempt = 0; ; attempt++) {
    try {
      connection.exec('begin immediate')
    } catch (error) {
      if (isBusy(error) && attempt < busyRetriesMax) {
        await sleep(Math.min(200, 5 * 2 ** attempt))
        continue
      }
      throw error
    }
    const { error } = await migrator.migrateToLatest()
    if (!error) {
      connection.exec('commit')
      return
    }
    if (connection.inTransaction) connection.exec('rollback')
    if (isBusy(error) && attempt < busyRetriesMax) {
      await sleep(Math.min(200, 5 * 2 ** attempt))
      continue
    }
    throw error
  }
}

async function withBusyRetry(fn: () => void): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return fn()
    } catch (error) {
      if (!isBusy(error) || attempt >= busyRetriesMax) throw error
      await sleep(Math.min(100, 2 ** attempt))
    }
  }
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
}

type Turn = { inTurn: ReturnType<typeof serial>; users: number }
const turns = new Map<string, Turn>()

/** The turn-taker shared by every store of this process on the file at `path`. */
function fileTurn(path: string): { inTurn: Turn['inTurn']; release(): void } {
  let key = resolve(path)
  try {
    key = realpathSync(key)
  } catch {}
  let turn = turns.get(key)
  if (!turn) {
    turn = { inTurn: serial(), users: 0 }
    turns.set(key, turn)
  }
  turn.users++
  const shared = turn
  let released = false
  return {
    inTurn: shared.inTurn,
    release() {
      if (released) return
      released = true
      if (--shared.users === 0 && turns.get(key) === shared) turns.delete(key)
    },
  }
}
