import { setTimeout as sleep } from 'node:timers/promises'
import {
  type DatabaseIntrospector,
  type DatabaseMetadata,
  Kysely,
  Migrator,
  PostgresDialect,
  type SchemaMetadata,
  type TableMetadata,
  sql,
} from 'kysely'
import pg from 'pg'
import { CommitUnknownError, InvalidArgumentError, InvariantViolationError, invariant } from '../errors.ts'
import { createChainReads } from './chain-reads.ts'
import { budgets as budgetCodec, outbox as outboxCodec } from './codec.ts'
import { type Database as Schema, migrations } from './schema.ts'
import { serial } from './serial.ts'
import { type Executor, type Params, type Raw, createStoreTx, statements } from './statements.ts'
import type { JournalRow, Store, StoreTx } from './types.ts'

/**
 * Journal rows are appended at the end of their transaction, under a transaction-level
 * advisory lock of the schema held until the commit: seq values (from a sequence, which
 * ignores transactions) then commit in seq order across processes, so a reader paging by
 * `afterSeq` never sees a seq before a smaller one has committed.
 */
const journalLock = "select pg_advisory_xact_lock(hashtext('spendguard.journal.' || current_schema()))"

export type PostgresStoreOptions = {
  connectionString: string
  /** Connections for reads, at most. */
  readPoolMax?: number
  /** How long to keep asking whether a commit whose answer was lost landed (default 30 s). */
  lostCommitWaitMs?: number | undefined
}

/**
 * Errors after which the whole transaction is run again: serialization failures,
 * deadlocks, and unique violations (two processes inserting the same idempotent id;
 * the retry finds the other's row and answers from it).
 */
const retryableCodes = new Set(['40001', '40P01', '23505'])
const retriesMax = 20

/**
 * PostgreSQL through pg: one writer connection per process (budgets are locked with
 * SELECT … FOR UPDATE, so processes on any number of machines serialize per budget) and
 * a small pool behind kysely for reads. Amounts are numeric(78,0); running sums are numeric.
 */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const pool = new pg.Pool({ connectionString: options.connectionString, max: options.readPoolMax ?? 8 })
  pool.on('error', () => {
    // An idle client lost its connection; the pool replaces it on next use.
  })
  pool.on('connect', (client) => {
    // While a client is lent out the pool's own listener is off it: a connection lost then
    // fails the query under way (or the next), and its 'error' event must not end the process.
    client.on('error', () => {})
  })
  const db = new Kysely<Schema>({ dialect: new SchemaDialect({ pool }) })
  let writer: pg.Client
  let writerBackend: Backend | undefined
  try {
    await migrate(db)
    writer = await connect(options.connectionString)
  } catch (error) {
    // Nothing stays open behind a failed open: the pool would keep the process alive.
    await db.destroy()
    throw error
  }
  try {
    writerBackend = await backendOf(writer)
  } catch (error) {
    await writer.end().catch(() => {})
    await db.destroy()
    throw error
  }
  const names = new Map<string, string>()
  const named = (text: string) => {
    let name = names.get(text)
    if (!name) {
      name = `sg${names.size}`
      names.set(text, name)
    }
    return name
  }
  const query = (text: string, params: Params) =>
    writer.query({ name: named(text), text, values: params as unknown[] })
  // A transaction's BEGIN waits for its first statement and goes to the server with it, its
  // values written in: one round trip for both.
  let beginPending = false
  /** The running transaction's id, once its BEGIN has been answered. */
  let began: string | undefined
  async function statement(text: string, params: Params): Promise<pg.QueryResult> {
    if (!beginPending) return query(text, params)
    beginPending = false
    const results = (await writer.query(`${beginText};\n${inlineParams(text, params)}`)) as unknown as pg.QueryResult[]
    began = transactionId(results.slice(0, 2))
    return results[2] as pg.QueryResult
  }
  const exec: Executor = {
    get: async (text, params) => (await statement(text, params)).rows[0] as Raw | undefined,
    all: async (text, params) => (await statement(text, params)).rows as Raw[],
    run: async (text, params) => (await statement(text, params)).rowCount ?? 0,
  }
  const tx: StoreTx = createStoreTx('postgres', exec)
  // Writes nothing reads back before the commit (budget updates, journal rows) are kept as
  // statements with their values written in, and sent with the COMMIT: one round trip for all.
  let tail: string[] = []
  const readsNothing = (): never => {
    throw new InvariantViolationError('a deferred statement reads nothing')
  }
  const deferred = createStoreTx('postgres', {
    get: readsNothing,
    all: readsNothing,
    run: (text, params) => {
      tail.push(inlineParams(text, params))
      return 0
    },
  })
  const readBudget = statements('postgres').readBudget
  const lostCommitWaitMs = options.lostCommitWaitMs ?? lostCommitWaitMsDefault
  // One writer connection: its transactions and queries take turns.
  const inTurn = serial()

  /** A new writer connection (the old one is dead or ending); its prepared statements start over. */
  async function reconnect(timeoutMs?: number): Promise<void> {
    writer = await connect(options.connectionString, timeoutMs)
    names.clear()
    writerBackend = await backendOf(writer, timeoutMs)
  }

  /**
   * Ends `backend` if it still runs: the server side of a writer connection whose client side
   * died may sit in its transaction (idle, or still waiting for a lock it then holds), holding
   * budget locks the next transaction needs. Its pid alone could name a newer backend by now;
   * with its start time it names only that one. Ending it settles its transaction.
   */
  function endBackend(backend: Backend, timeoutMs?: number) {
    return writer.query({
      text: 'select pg_terminate_backend(pid) from pg_stat_activity where pid = $1 and backend_start::text = $2',
      values: [backend.pid, backend.start],
      query_timeout: timeoutMs,
    } as pg.QueryConfig)
  }

  async function runTransaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let committing = false
      let result: T | undefined
      beginPending = true
      began = undefined
      try {
        const journal: Omit<JournalRow, 'seq'>[] = []
        tail = []
        result = await fn({
          ...tx,
          updateBudget: deferred.updateBudget,
          appendJournal: (row) => {
            journal.push(row)
          },
          appendJournals: (rows) => {
            journal.push(...rows)
          },
        })
        if (journal.length > 0) {
          tail.push(journalLock)
          deferred.appendJournals(journal)
        }
        tail.push('commit')
        // The transaction's id is needed before its COMMIT is sent, to ask the server whether it
        // committed should the answer be lost: a transaction that ran no statement yet begins alone.
        if (beginPending) {
          beginPending = false
          began = transactionId(await writer.query(beginText))
        }
        committing = true
        // One simple-protocol query: the statements run in order and stop at the first error,
        // which leaves the transaction aborted and the COMMIT unrun.
        await writer.query(tail.join(';\n'))
        return result
      } catch (error) {
        await writer.query('rollback').catch(() => {})
        if (committing && commitMayHaveLanded(error)) {
          // The commit may or may not have landed: the server knows which. Never run a
          // committed batch twice, nor report it failed.
          const dead = writerBackend
          writer.end().catch(() => {})
          const status = await commitStatus(began, dead)
          if (status === 'committed') return result as T
          if (status === undefined) throw new CommitUnknownError({ cause: error })
          // Rolled back: nothing landed, so the batch runs again.
          if (attempt < retriesMax) continue
          throw error
        }
        const code = (error as { code?: string }).code
        if (code !== undefined && retryableCodes.has(code) && attempt < retriesMax) {
          await sleep(Math.random() * Math.min(50, 2 ** attempt))
          continue
        }
        if (isConnectionError(error) && attempt < retriesMax) {
          // The connection died before COMMIT: nothing of it commits. Its backend may still sit
          // in the transaction, holding the budgets' locks the run again needs (even when the
          // answer to its BEGIN never came back): it is ended first.
          const dead = writerBackend
          writer.end().catch(() => {})
          await reconnect()
          if (dead !== undefined) await endBackend(dead).catch(() => {})
          continue
        }
        throw error
      }
    }
  }

  /**
   * Whether transaction `xid` committed, asked on a new writer connection. While the server
   * says it is in progress, its old backend (`dead`) is still finishing it, or sits idle in it:
   * after a short wait that backend is ended (see `endBackend`). Undefined when the server
   * cannot tell within the deadline; no step waits past it.
   */
  async function commitStatus(xid: string | undefined, dead: Backend | undefined): Promise<'committed' | 'aborted' | undefined> {
    if (xid === undefined) return undefined
    const deadline = Date.now() + lostCommitWaitMs
    const left = () => Math.max(1, deadline - Date.now())
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      try {
        await reconnect(left())
        const inProgressSince = Date.now()
        let ended = false
        for (;;) {
          const { rows } = await writer.query<{ status: string | null }>({
            text: 'select txid_status($1::bigint) as status',
            values: [xid],
            query_timeout: left(),
          } as pg.QueryConfig)
          const status = rows[0]?.status
          if (status === 'committed' || status === 'aborted') return status
          if (status !== 'in progress' || Date.now() >= deadline) return undefined
          if (!ended && Date.now() - inProgressSince >= inProgressGraceMs) {
            if (dead !== undefined) await endBackend(dead, left())
            ended = true
          }
          await sleep(10)
        }
      } catch {
        // The server may be restarting (refused, or "starting up"): ask again until the deadline.
        writer.end().catch(() => {})
        await sleep(Math.min(500, 20 * 2 ** attempt, left()))
      }
    }
    return undefined
  }

  return {
    dialect: 'postgres',
    db,
    chain: createChainReads(db),
    transaction: (fn) => inTurn(() => runTransaction(fn)),
    snapshot: (fn) =>
      db
        .transaction()
        .setIsolationLevel('repeatable read')
        .setAccessMode('read only')
        .execute((trx) => fn(trx)),
    async readBudget(taskId) {
      const { rows } = await pool.query({ name: 'readBudget', text: readBudget, values: [taskId] })
      return rows[0] === undefined ? undefined : budgetCodec.decode(rows[0] as Raw)
    },
    async claimOutbox(kinds, now, leaseMs, limit) {
      if (kinds.length === 0) return []
      const { rows } = await pool.query(
        `update outbox set lease_until = $1 where id in (
           select id from outbox where delivered_at is null and (lease_until is null or lease_until <= $2)
           and kind = any($3) order by created_at limit $4 for update skip locked)
         returning *`,
        [now + leaseMs, now, kinds, limit],
      )
      return (rows as Raw[]).map(outboxCodec.decode)
    },
    async markDelivered(ids, now) {
      if (ids.length === 0) return
      await pool.query('update outbox set delivered_at = $1 where id = any($2)', [now, ids])
    },
    async tasksWithDueHolds(now, limit) {
      const { rows } = await pool.query(
        "select distinct task_id from holds where status = 'open' and expires_at is not null and expires_at <= $1 limit $2",
        [now, limit],
      )
      return rows.map((r: { task_id: string }) => r.task_id)
    },
    async durability() {
      // Asked on the writer's own connection, in its turn: a role or database setting applies there.
      const { rows } = await inTurn(() => writer.query<{ synchronous_commit: string }>('show synchronous_commit'))
      return rows[0]?.synchronous_commit ?? 'unknown'
    },
    async destroy() {
      await inTurn(async () => {}).catch(() => {})
      await writer.end().catch(() => {})
      await db.destroy()
    },
  }
}

/** How long to keep asking whether a commit whose answer was lost landed, unless told otherwise. */
const lostCommitWaitMsDefault = 30_000
/** How long a transaction may stay in progress after its answer was lost before its backend is ended. */
const inProgressGraceMs = 500

/** Begins a transaction and answers with its id. */
const beginText = 'begin; select txid_current()::text as xid'

/** The id `begin; select txid_current()` returned: pg answers a multi-statement query with a result per statement. */
function transactionId(results: pg.QueryResult | pg.QueryResult[]): string {
  const last = Array.isArray(results) ? results[results.length - 1] : results
  const xid = (last?.rows[0] as { xid?: unknown } | undefined)?.xid
  invariant(typeof xid === 'string', 'begin returned no transaction id')
  return xid
}

/** A server process, by its pid and start time (a pid alone may be reused). */
type Backend = { pid: number; start: string }

async function backendOf(client: pg.Client, timeoutMs?: number): Promise<Backend> {
  const { rows } = await client.query({
    text: 'select pid, backend_start::text as start from pg_stat_activity where pid = pg_backend_pid()',
    query_timeout: timeoutMs,
  } as pg.QueryConfig)
  const row = rows[0] as Partial<Backend> | undefined
  invariant(typeof row?.pid === 'number' && typeof row.start === 'string', 'pg_stat_activity does not show the connection')
  return { pid: row.pid, start: row.start }
}

async function connect(connectionString: string, timeoutMs?: number): Promise<pg.Client> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: timeoutMs })
  client.on('error', () => {
    // Surfaced by the next query on this client, which reconnects.
  })
  await client.connect()
  return client
}

/**
 * PostgreSQL through kysely, introspecting only the connection's own schema. kysely's own
 * introspector reads every table of every schema (the migrator asks it whether its tables
 * exist), calling has_schema_privilege by name on each: another tenant's schema dropped
 * meanwhile fails that call with "schema … does not exist", and the cost grows with every
 * schema in the database.
 */
class SchemaDialect extends PostgresDialect {
  override createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SchemaIntrospector(db)
  }
}

class SchemaIntrospector implements DatabaseIntrospector {
  readonly #db: Kysely<any>
  constructor(db: Kysely<any>) {
    this.#db = db
  }

  async getSchemas(): Promise<SchemaMetadata[]> {
    const { rows } = await sql<SchemaMetadata>`select current_schema() as name`.execute(this.#db)
    return rows.filter((r) => r.name !== null)
  }

  async getTables(): Promise<TableMetadata[]> {
    // By oid within the one schema: nothing here looks another schema up by name.
    const { rows } = await sql<{
      schema: string
      table: string
      kind: string
      column: string
      type: string
      type_schema: string
      not_null: boolean
      has_default: boolean
      auto_incrementing: boolean
    }>`
      select ns.nspname as schema, c.relname as table, c.relkind as kind, a.attname as column,
        t.typname as type, tns.nspname as type_schema, a.attnotnull as not_null,
        a.atthasdef as has_default,
        (a.attidentity <> '' or coalesce(pg_get_expr(d.adbin, d.adrelid) like 'nextval(%', false)) as auto_incrementing
      from pg_catalog.pg_class c
      join pg_catalog.pg_namespace ns on ns.oid = c.relnamespace
      join pg_catalog.pg_attribute a on a.attrelid = c.oid
      join pg_catalog.pg_type t on t.oid = a.atttypid
      join pg_catalog.pg_namespace tns on tns.oid = t.typnamespace
      left join pg_catalog.pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
      where ns.nspname = current_schema() and c.relkind in ('r', 'v', 'p')
        and a.attnum > 0 and not a.attisdropped
      order by c.relname, a.attnum`.execute(this.#db)
    const tables = new Map<string, { name: string; schema: string; isView: boolean; columns: TableMetadata['columns'][number][] }>()
    for (const r of rows) {
      let table = tables.get(r.table)
      if (!table) {
        table = { name: r.table, schema: r.schema, isView: r.kind === 'v', columns: [] }
        tables.set(r.table, table)
      }
      table.columns.push({
        name: r.column,
        dataType: r.type,
        dataTypeSchema: r.type_schema,
        isNullable: !r.not_null,
        hasDefaultValue: r.has_default,
        isAutoIncrementing: r.auto_incrementing,
      })
    }
    return [...tables.values()]
  }

  async getMetadata(): Promise<DatabaseMetadata> {
    return { tables: await this.getTables() }
  }
}

async function migrate(db: Kysely<Schema>): Promise<void> {
  // kysely's own tables live in the schema the connection writes to (search_path may name
  // a schema per tenant); looking for them elsewhere would find another schema's.
  const { rows } = await sql<{ schema: string | null; path: string }>`select current_schema() as schema, current_setting('search_path') as path`.execute(db)
  const schema = rows[0]?.schema
  if (!schema)
    throw new InvalidArgumentError({
      argument: 'search_path',
      value: rows[0]?.path,
      reason: 'no schema in it exists in this database; create the schema first',
    })
  const migrator = new Migrator({ db, provider: migrations('postgres'), migrationTableSchema: schema })
  for (let attempt = 0; ; attempt++) {
    const { error } = await migrator.migrateToLatest()
    if (!error) return
    // Several processes opening a fresh database race to create kysely's own tables.
    const code = (error as { code?: string }).code
    if (attempt < 10 && (code === '23505' || code === '42P07' || code === '40P01')) {
      await sleep(20 + Math.random() * 100)
      continue
    }
    throw error
  }
}

/**
 * `text` with its `$n` placeholders replaced by `params` written as SQL literals. The
 * statement texts are spendguard's own (no `$` of theirs in a string constant); strings are
 * quoted by pg's escapeLiteral, numbers must be finite.
 */
function inlineParams(text: string, params: Params): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const value = params[Number(n) - 1]
    invariant(value !== undefined, `no value for $${n}`)
    if (value === null) return 'null'
    if (typeof value === 'number') {
      invariant(Number.isFinite(value), `a non-finite number for $${n}`)
      // Parenthesized when negative: after a minus sign, "-5" would start a comment.
      return value < 0 ? `(${value})` : String(value)
    }
    invariant(!value.includes('\0'), `a NUL in the value for $${n}`)
    return pg.escapeLiteral(value)
  })
}

/**
 * Whether a COMMIT that failed with `error` may still have committed. A server error of an
 * ordinary class answers the COMMIT: the transaction rolled back. A lost connection, a
 * session ended by the server (class 57P: shutdown, crash, restart) or a connection
 * exception (class 08) leaves it unknown.
 */
function commitMayHaveLanded(error: unknown): boolean {
  const code = (error as { code?: unknown }).code
  if (isConnectionError(error) || typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true
  return code.startsWith('57P') || code.startsWith('08')
}

function isConnectionError(error: unknown): boolean {
  const message = (error as Error)?.message ?? ''
  const code = (error as { code?: string }).code
  return (
    code === 'ECONNRESET' ||
    code === 'EPIPE' ||
    code === '57P01' ||
    /Connection terminated|Client has encountered a connection error|not queryable/.test(message)
  )
}
