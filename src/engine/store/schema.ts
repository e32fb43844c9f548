import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely'
import type { StoreDialect } from './types.ts'

/**
 * The ledger schema as kysely sees it. Amounts are decimal text in SQLite and
 * numeric(78,0) in PostgreSQL (a budget's running sums: plain numeric); both arrive here as
 * strings and become bigint in the store.
 * Timestamps are milliseconds since the epoch.
 */
export interface Database {
  budgets: {
    task_id: string
    asset: string
    decimals: number
    total: string
    spent: string
    reserved: string
    hard_limit: number
    thresholds: string
    fired_mask: number
    exhausted: number
    progress: number
    metadata: string | null
    closed: number
    created_at: number | string
    updated_at: number | string
    closed_at: number | string | null
    entry_count: number
    open_holds: number
    next_expiry_at: number | string | null
    report: string | null
  }
  holds: {
    id: string
    task_id: string
    ref: string
    key: string | null
    amount: string
    status: string
    expires_at: number | string | null
    created_at: number | string
    settled_at: number | string | null
    captured_amount: string | null
    entry_id: string | null
    settle_sig: string | null
    sig: string
  }
  entries: {
    id: string
    task_id: string
    hold_id: string | null
    amount: string
    peer: string | null
    tool: string | null
    reason: string | null
    at: number | string
    source: string
    chain_id: number | string | null
    hook: string | null
    block_number: number | string | null
    block_hash: string | null
    tx_hash: string | null
    log_index: number | null
    confirmed: number
    reverted: number
    sig: string
  }
  journal: {
    seq: number | string
    task_id: string
    kind: string
    amount: string | null
    hold_id: string | null
    entry_id: string | null
    source: string
    chain: string | null
    spent_after: string
    reserved_after: string
    at: number | string
  }
  outbox: {
    id: string
    kind: string
    task_id: string
    payload: string
    created_at: number | string
    delivered_at: number | string | null
    lease_until: number | string | null
  }
  chain_cursors: {
    chain_id: number | string
    hook: string
    block_number: number | string
    block_hash: string
    updated_at: number | string
  }
  chain_blocks: {
    chain_id: number | string
    hook: string
    number: number | string
    hash: string
    parent_hash: string
  }
  chain_logs: {
    chain_id: number | string
    hook: string
    block_hash: string
    log_index: number
    block_number: number | string
    tx_hash: string
    account: string
    token: string
    sender: string
    to_address: string
    amount: string
    ref: string
    disposition: string
    task_id: string | null
    confirmed: number
  }
  bindings: {
    chain_id: number | string
    hook: string
    account: string
    sender: string
    task_id: string
    token: string
    created_at: number | string
  }
}

/** Migrations are frozen in time: add a new one, never edit an old one. */
export function migrations(dialect: StoreDialect): MigrationProvider {
  const all: Record<string, Migration> = {
    '2026-11-21-ledger': ledger(dialect),
    '2026-11-21-unconfirmed': unconfirmed(),
    '2026-11-22-unbounded-sums': unboundedSums(dialect),
    '2026-11-22-unbounded-journal-amounts': unboundedJournalAmounts(dialect),
    '2026-11-22-wide-chain-ids': wideChainIds(dialect),
    '2026-11-23-chain-entries-by-hold': chainEntriesByHold(),
  }
  return { getMigrations: async () => all }
}

function ledger(dialect: StoreDialect): Migration {
  // uint256 needs 78 decimal digits; SQLite keeps the exact decimal text.
  const amount = dialect === 'postgres' ? sql`numeric(78,0)` : sql`text`
  const int64 = dialect === 'postgres' ? sql`bigint` : sql`integer`
  const real = dialect === 'postgres' ? sql`double precision` : sql`real`
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('budgets')
        .addColumn('task_id', 'text', (c) => c.primaryKey())
        .addColumn('asset', 'text', (c) => c.notNull())
        .addColumn('decimals', 'integer', (c) => c.notNull())
        .addColumn('total', amount, (c) => c.notNull())
        .addColumn('spent', amount, (c) => c.notNull())
        .addColumn('reserved', amount, (c) => c.notNull())
        .addColumn('hard_limit', 'integer', (c) => c.notNull())
        .addColumn('thresholds', 'text', (c) => c.notNull())
        .addColumn('fired_mask', 'integer', (c) => c.notNull())
        .addColumn('exhausted', 'integer', (c) => c.notNull())
        .addColumn('progress', real, (c) => c.notNull())
        .addColumn('metadata', 'text')
        .addColumn('closed', 'integer', (c) => c.notNull())
        .addColumn('created_at', int64, (c) => c.notNull())
        .addColumn('updated_at', int64, (c) => c.notNull())
        .addColumn('closed_at', int64)
        .addColumn('entry_count', 'integer', (c) => c.notNull())
        .addColumn('open_holds', 'integer', (c) => c.notNull())
        .addColumn('next_expiry_at', int64)
        .addColumn('report', 'text')
        .execute()

      await db.schema
        .createTable('holds')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('task_id', 'text', (c) => c.notNull().references('budgets.task_id'))
        .addColumn('ref', 'text', (c) => c.notNull().unique())
        .addColumn('key', 'text')
        .addColumn('amount', amount, (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('expires_at', int64)
        .addColumn('created_at', int64, (c) => c.notNull())
        .addColumn('settled_at', int64)
        .addColumn('captured_amount', amount)
        .addColumn('entry_id', 'text')
        .addColumn('settle_sig', 'text')
        .addColumn('sig', 'text', (c) => c.notNull())
        .execute()
      // Few, narrow indexes: every reserve and capture pays for each of them.
      await db.schema
        .createIndex('holds_task_key')
        .on('holds')
        .columns(['task_id', 'key'])
        .unique()
        .where(sql.ref('key'), 'is not', null)
        .execute()
      await db.schema.createIndex('holds_task').on('holds').columns(['task_id', 'created_at']).execute()
      await db.schema.createIndex('holds_open').on('holds').column('task_id').where(sql.ref('status'), '=', 'open').execute()
      await db.schema
        .createIndex('holds_open_expiry')
        .on('holds')
        .column('expires_at')
        .where(sql<boolean>`status = 'open' and expires_at is not null`)
        .execute()

      await db.schema
        .createTable('entries')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('task_id', 'text', (c) => c.notNull().references('budgets.task_id'))
        .addColumn('hold_id', 'text')
        .addColumn('amount', amount, (c) => c.notNull())
        .addColumn('peer', 'text')
        .addColumn('tool', 'text')
        .addColumn('reason', 'text')
        .addColumn('at', int64, (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('chain_id', 'integer')
        .addColumn('hook', 'text')
        .addColumn('block_number', int64)
        .addColumn('block_hash', 'text')
        .addColumn('tx_hash', 'text')
        .addColumn('log_index', 'integer')
        .addColumn('confirmed', 'integer', (c) => c.notNull())
        .addColumn('reverted', 'integer', (c) => c.notNull())
        .addColumn('sig', 'text', (c) => c.notNull())
        .execute()
      await db.schema.createIndex('entries_task').on('entries').columns(['task_id', 'at']).execute()
      // On-chain entries by position: confirmation, reorg rollback, tracker status.
      await db.schema
        .createIndex('entries_chain')
        .on('entries')
        .columns(['chain_id', 'hook', 'block_number'])
        .where(sql<boolean>`chain_id is not null`)
        .execute()

      await db.schema
        .createTable('journal')
        .addColumn('seq', dialect === 'postgres' ? 'bigserial' : 'integer', (c) =>
          dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
        )
        .addColumn('task_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('amount', amount)
        .addColumn('hold_id', 'text')
        .addColumn('entry_id', 'text')
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('chain', 'text')
        .addColumn('spent_after', amount, (c) => c.notNull())
        .addColumn('reserved_after', amount, (c) => c.notNull())
        .addColumn('at', int64, (c) => c.notNull())
        .execute()
      await db.schema.createIndex('journal_task').on('journal').columns(['task_id', 'seq']).execute()

      await db.schema
        .createTable('outbox')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('task_id', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('created_at', int64, (c) => c.notNull())
        .addColumn('delivered_at', int64)
        .addColumn('lease_until', int64)
        .execute()
      await db.schema
        .createIndex('outbox_pending')
        .on('outbox')
        .columns(['created_at'])
        .where(sql.ref('delivered_at'), 'is', null)
        .execute()

      await db.schema
        .createTable('chain_cursors')
        .addColumn('chain_id', 'integer', (c) => c.notNull())
        .addColumn('hook', 'text', (c) => c.notNull())
        .addColumn('block_number', int64, (c) => c.notNull())
        .addColumn('block_hash', 'text', (c) => c.notNull())
        .addColumn('updated_at', int64, (c) => c.notNull())
        .addPrimaryKeyConstraint('chain_cursors_pk', ['chain_id', 'hook'])
        .execute()
      await db.schema
        .createTable('chain_blocks')
        .addColumn('chain_id', 'integer', (c) => c.notNull())
        .addColumn('hook', 'text', (c) => c.notNull())
        .addColumn('number', int64, (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('parent_hash', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('chain_blocks_pk', ['chain_id', 'hook', 'number'])
        .execute()
      await db.schema
        .createTable('chain_logs')
        .addColumn('chain_id', 'integer', (c) => c.notNull())
        .addColumn('hook', 'text', (c) => c.notNull())
        .addColumn('block_hash', 'text', (c) => c.notNull())
        .addColumn('log_index', 'integer', (c) => c.notNull())
        .addColumn('block_number', int64, (c) => c.notNull())
        .addColumn('tx_hash', 'text', (c) => c.notNull())
        .addColumn('account', 'text', (c) => c.notNull())
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('sender', 'text', (c) => c.notNull())
        .addColumn('to_address', 'text', (c) => c.notNull())
        .addColumn('amount', amount, (c) => c.notNull())
        .addColumn('ref', 'text', (c) => c.notNull())
        .addColumn('disposition', 'text', (c) => c.notNull())
        .addColumn('task_id', 'text')
        .addColumn('confirmed', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('chain_logs_pk', ['chain_id', 'block_hash', 'log_index'])
        .execute()
      await db.schema
        .createIndex('chain_logs_block')
        .on('chain_logs')
        .columns(['chain_id', 'hook', 'block_number'])
        .execute()
      await db.schema
        .createTable('bindings')
        .addColumn('chain_id', 'integer', (c) => c.notNull())
        .addColumn('hook', 'text', (c) => c.notNull())
        .addColumn('account', 'text', (c) => c.notNull())
        .addColumn('sender', 'text', (c) => c.notNull())
        .addColumn('task_id', 'text', (c) => c.notNull())
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('created_at', int64, (c) => c.notNull())
        .addPrimaryKeyConstraint('bindings_pk', ['chain_id', 'hook', 'account', 'sender'])
        .execute()
    },
    async down(db: Kysely<any>) {
      for (const table of [
        'bindings',
        'chain_logs',
        'chain_blocks',
        'chain_cursors',
        'outbox',
        'journal',
        'entries',
        'holds',
        'budgets',
      ])
        await db.schema.dropTable(table).execute()
    },
  }
}

/**
 * Unconfirmed on-chain rows by position. Every applied batch marks the rows that reached
 * the confirmation depth; through these partial indexes it touches only rows still
 * unconfirmed (a few blocks' worth) instead of walking every on-chain entry of the hook.
 */
function unconfirmed(): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createIndex('entries_unconfirmed')
        .on('entries')
        .columns(['chain_id', 'hook', 'block_number'])
        .where(sql<boolean>`chain_id is not null and confirmed = 0`)
        .execute()
      await db.schema
        .createIndex('chain_logs_unconfirmed')
        .on('chain_logs')
        .columns(['chain_id', 'hook', 'block_number'])
        .where(sql<boolean>`confirmed = 0`)
        .execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropIndex('chain_logs_unconfirmed').execute()
      await db.schema.dropIndex('entries_unconfirmed').execute()
    },
  }
}

/**
 * A budget's sums may pass 2^256-1 (soft limits and on-chain facts add up without bound),
 * while numeric(78,0) holds at most 78 digits: PostgreSQL's running sums become plain
 * numeric, exact at any size, as SQLite's decimal text already is. Dropping the precision
 * of a numeric column rewrites nothing.
 */
function unboundedSums(dialect: StoreDialect): Migration {
  const columns: [string, string[]][] = [
    ['budgets', ['spent', 'reserved']],
    ['journal', ['spent_after', 'reserved_after']],
  ]
  const retype = async (db: Kysely<any>, type: string) => {
    if (dialect !== 'postgres') return
    for (const [table, names] of columns)
      for (const name of names) await db.schema.alterTable(table).alterColumn(name, (c) => c.setDataType(sql.raw(type))).execute()
  }
  return {
    up: (db) => retype(db, 'numeric'),
    down: (db) => retype(db, 'numeric(78,0)'),
  }
}

/**
 * A journal row's amount may be a sum too: a run of on-chain spends applied in one batch is
 * journaled as one `reconcile` row, and nine spends of 2^256-1 (unlimited approvals, say)
 * already pass numeric(78,0), which would refuse the whole batch, again on every retry.
 * PostgreSQL's journal amounts become plain numeric, as its running sums did.
 */
function unboundedJournalAmounts(dialect: StoreDialect): Migration {
  const retype = async (db: Kysely<any>, type: string) => {
    if (dialect === 'postgres') await db.schema.alterTable('journal').alterColumn('amount', (c) => c.setDataType(sql.raw(type))).execute()
  }
  return {
    up: (db) => retype(db, 'numeric'),
    down: (db) => retype(db, 'numeric(78,0)'),
  }
}

/**
 * Chain ids are any safe integer (some chains' ids pass 2^31-1: Palm's is 11297108109), and
 * PostgreSQL's `integer` stops at 2^31-1: its chain id columns become bigint. SQLite's
 * integers are 64-bit already.
 */
function wideChainIds(dialect: StoreDialect): Migration {
  const tables = ['entries', 'chain_cursors', 'chain_blocks', 'chain_logs', 'bindings']
  const retype = async (db: Kysely<any>, type: string) => {
    if (dialect !== 'postgres') return
    for (const table of tables) await db.schema.alterTable(table).alterColumn('chain_id', (c) => c.setDataType(sql.raw(type))).execute()
  }
  return {
    up: (db) => retype(db, 'bigint'),
    down: (db) => retype(db, 'integer'),
  }
}

/**
 * On-chain entries by the hold they paid for. A log whose `ref` names a hold that was
 * settled off the chain (or had ended) is matched to that hold once: the tracker and `pay`
 * look for an earlier match through this index. Only on-chain entries with a hold are in it.
 */
function chainEntriesByHold(): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createIndex('entries_chain_hold')
        .on('entries')
        .column('hold_id')
        .where(sql<boolean>`source = 'onchain' and hold_id is not null`)
        .execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropIndex('entries_chain_hold').execute()
    },
  }
}
