import Database from 'better-sqlite3'
import { createGuard } from '../../src/index.ts'
import { holdSig, holdRef, rowId, settleSig } from './ids.ts'
import { wallNow } from './stats.ts'

/**
 * The raw SQLite baseline: better-sqlite3 alone, prepared statements, WAL,
 * synchronous=FULL, on spendguard's own schema (same tables, same indexes, rows of the
 * same size), doing the least a reserve → capture needs:
 *
 *   reserve: conditional budget update (… where total - spent - reserved >= amount),
 *            hold insert, journal insert
 *   capture: hold update (… where status = 'open'), budget update, entry insert,
 *            journal insert
 *
 * either as two transactions per pair, or `pairsPerTx` pairs per transaction, over as many
 * budgets as the guard run it stands beside has callers (each caller owns a budget there).
 */
export type RawSqliteRun = {
  pairs: number
  elapsedMs: number
  /** Commit-to-commit time of each transaction in the window, ms. */
  txLatenciesMs: number[]
  /** Every pair done, window or not. */
  pairsTotal: number
  spent: bigint
  ok: boolean
  problem?: string | undefined
}

const budgetsMax = 1_000
const budgetId = (i: number) => `raw-${i}`

/** Creates the baseline database: spendguard's migrations, then 1,000 budgets. */
export async function createRawSqlite(path: string, total: bigint): Promise<void> {
  const guard = await createGuard({ db: `sqlite:${path}` })
  await Promise.all(Array.from({ length: budgetsMax }, (_, i) => guard.allocate(budgetId(i), { total, asset: 'USDC', decimals: 6 })))
  await guard.destroy()
}

export type RawRunOptions = {
  /** 0: two transactions per pair (reserve, then capture); n ≥ 1: n whole pairs per transaction. */
  pairsPerTx: number
  /** Pair i goes to budget i mod `budgets` (as many as the guard's callers, each on its own). */
  budgets: number
  warmMs: number
  durationMs: number
}

export type RawSqlite = { run(options: RawRunOptions): RawSqliteRun; close(): void }

/**
 * Opens the baseline on `path` and keeps the connection, as an application would (closing
 * the last connection deletes the WAL, and a WAL growing again from nothing makes every
 * commit's fsync also write the file's new size).
 */
export function openRawSqlite({
  path,
  reserveAmount,
  captureAmount,
  synchronous = 'FULL',
  cacheKib,
}: {
  path: string
  reserveAmount: bigint
  captureAmount: bigint
  /** FULL, as the engine; OFF only to tell the CPU's share from the disk's. */
  synchronous?: 'FULL' | 'OFF'
  /** SQLite's page cache; its default (2 MiB) when not given. */
  cacheKib?: number | undefined
}): RawSqlite {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${synchronous}`)
  if (cacheKib !== undefined) db.pragma(`cache_size = ${-cacheKib}`)
  const reserveBudget = db.prepare(
    'update budgets set reserved = reserved + ?, open_holds = open_holds + 1, updated_at = ? ' +
      'where task_id = ? and total - spent - reserved >= ? returning spent, reserved',
  )
  const insertHold = db.prepare(
    'insert into holds (id, task_id, ref, key, amount, status, expires_at, created_at, settled_at, captured_amount, entry_id, settle_sig, sig) ' +
      "values (?, ?, ?, null, ?, 'open', null, ?, null, null, null, null, ?)",
  )
  const insertJournal = db.prepare(
    'insert into journal (task_id, kind, amount, hold_id, entry_id, source, chain, spent_after, reserved_after, at) ' +
      "values (?, ?, ?, ?, ?, 'offchain', null, ?, ?, ?)",
  )
  const settleHold = db.prepare(
    "update holds set status = 'captured', settled_at = ?, captured_amount = ?, entry_id = ?, settle_sig = ? where id = ? and status = 'open'",
  )
  const captureBudget = db.prepare(
    'update budgets set spent = spent + ?, reserved = reserved - ?, open_holds = open_holds - 1, entry_count = entry_count + 1, updated_at = ? ' +
      'where task_id = ? returning spent, reserved',
  )
  const insertEntry = db.prepare(
    'insert into entries (id, task_id, hold_id, amount, peer, tool, reason, at, source, chain_id, block_number, block_hash, tx_hash, log_index, confirmed, reverted, sig) ' +
      "values (?, ?, ?, ?, null, null, null, ?, 'offchain', null, null, null, null, null, 0, 0, ?)",
  )
  const begin = db.prepare('begin immediate')
  const commit = db.prepare('commit')
  const reserve = reserveAmount.toString()
  const capture = captureAmount.toString()

  const doReserve = (taskId: string): string => {
    const now = Date.now()
    const after = reserveBudget.get(reserve, now, taskId, reserveAmount) as { spent: string; reserved: string } | undefined
    if (!after) throw new Error('raw baseline: budget denied a reserve')
    const holdId = rowId('hold')
    insertHold.run(holdId, taskId, holdRef(), reserve, now, holdSig(reserveAmount))
    insertJournal.run(taskId, 'reserve', reserve, holdId, null, String(after.spent), String(after.reserved), now)
    return holdId
  }
  const doCapture = (taskId: string, holdId: string): void => {
    const now = Date.now()
    const entryId = rowId('entry')
    if (settleHold.run(now, capture, entryId, settleSig(captureAmount), holdId).changes !== 1)
      throw new Error('raw baseline: hold not open')
    const after = captureBudget.get(capture, reserve, now, taskId) as { spent: string; reserved: string }
    insertEntry.run(entryId, taskId, holdId, capture, now, settleSig(captureAmount))
    insertJournal.run(taskId, 'capture', capture, holdId, entryId, String(after.spent), String(after.reserved), now)
  }

  const readBudgets = db.prepare("select spent, reserved from budgets where task_id like 'raw-%'")
  const totals = () => {
    let spent = 0n
    let reserved = 0n
    for (const row of readBudgets.all() as { spent: string; reserved: string }[]) {
      spent += BigInt(row.spent)
      reserved += BigInt(row.reserved)
    }
    return { spent, reserved }
  }

  function run({ pairsPerTx, budgets, warmMs, durationMs }: RawRunOptions): RawSqliteRun {
    if (budgets < 1 || budgets > budgetsMax) throw new Error(`raw baseline: budgets in 1…${budgetsMax}`)
    const ids = Array.from({ length: budgets }, (_, i) => budgetId(i))
    let next = 0
    const pick = () => ids[next++ % budgets] as string
    const spentBefore = totals().spent
    const t0 = wallNow()
    const countFrom = t0 + warmMs
    const countTo = countFrom + durationMs
    let pairs = 0
    let pairsTotal = 0
    const txLatenciesMs: number[] = []
    let last = wallNow()
    const committed = (pairsDone: number) => {
      const now = wallNow()
      if (now >= countFrom && now <= countTo) {
        txLatenciesMs.push(now - last)
        pairs += pairsDone
      }
      last = now
    }
    while (wallNow() < countTo) {
      if (pairsPerTx === 0) {
        const taskId = pick()
        begin.run()
        const holdId = doReserve(taskId)
        commit.run()
        committed(0)
        begin.run()
        doCapture(taskId, holdId)
        commit.run()
        pairsTotal++
        committed(1)
      } else {
        begin.run()
        for (let i = 0; i < pairsPerTx; i++) {
        const taskId = pick()
        doCapture(taskId, doReserve(taskId))
      }
        commit.run()
        pairsTotal += pairsPerTx
        committed(pairsPerTx)
      }
    }
    const after = totals()
    const spent = after.spent - spentBefore
    const expected = BigInt(pairsTotal) * captureAmount
    const ok = spent === expected && after.reserved === 0n
    return {
      pairs,
      elapsedMs: durationMs,
      txLatenciesMs,
      pairsTotal,
      spent,
      ok,
      problem: ok ? undefined : `raw baseline spent ${spent}, expected ${expected}; reserved ${after.reserved}`,
    }
  }

  return { run, close: () => db.close() }
}

/**
 * A reference, not a baseline of the same work: raw better-sqlite3 on bare tables (budgets,
 * holds, entries, journal; integer amounts, no secondary index, short ids), 100 reserve →
 * capture pairs per transaction, WAL, synchronous=FULL. It shows what the indexes and row
 * shapes of a real ledger cost on this disk.
 */
export function openBareSqlite(path: string, budgets: number): { run(warmMs: number, durationMs: number): { pairs: number; elapsedMs: number; ok: boolean }; close(): void } {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.exec(`create table if not exists budgets (task_id text primary key, total integer not null, spent integer not null, reserved integer not null);
    create table if not exists holds (id text primary key, task_id text not null, amount integer not null, status text not null);
    create table if not exists entries (id text primary key, task_id text not null, hold_id text, amount integer not null);
    create table if not exists journal (seq integer primary key autoincrement, task_id text not null, kind text not null, amount integer, hold_id text, spent_after integer not null, reserved_after integer not null, at integer not null);`)
  const addBudget = db.prepare('insert or ignore into budgets values (?, 1000000000000000, 0, 0)')
  for (let i = 0; i < budgets; i++) addBudget.run(`b${i}`)
  const reserveBudget = db.prepare('update budgets set reserved = reserved + ? where task_id = ? and total - spent - reserved >= ? returning spent, reserved')
  const insertHold = db.prepare("insert into holds values (?, ?, ?, 'open')")
  const insertJournal = db.prepare('insert into journal (task_id, kind, amount, hold_id, spent_after, reserved_after, at) values (?, ?, ?, ?, ?, ?, ?)')
  const settleHold = db.prepare("update holds set status = 'captured' where id = ? and status = 'open'")
  const captureBudget = db.prepare('update budgets set spent = spent + ?, reserved = reserved - ? where task_id = ? returning spent, reserved')
  const insertEntry = db.prepare('insert into entries values (?, ?, ?, ?)')
  const begin = db.prepare('begin immediate')
  const commit = db.prepare('commit')
  let n = (db.prepare('select count(*) as n from holds').get() as { n: number }).n
  return {
    run(warmMs, durationMs) {
      const t0 = wallNow()
      const countFrom = t0 + warmMs
      const countTo = countFrom + durationMs
      let pairs = 0
      let ok = true
      while (wallNow() < countTo) {
        begin.run()
        for (let i = 0; i < 100; i++, n++) {
          const taskId = `b${n % budgets}`
          const now = Date.now()
          const a = reserveBudget.get(10, taskId, 10) as { spent: number; reserved: number } | undefined
          if (!a) ok = false
          insertHold.run(`h${n}`, taskId, 10)
          insertJournal.run(taskId, 'reserve', 10, `h${n}`, a?.spent ?? 0, a?.reserved ?? 0, now)
          if (settleHold.run(`h${n}`).changes !== 1) ok = false
          const b = captureBudget.get(7, 10, taskId) as { spent: number; reserved: number }
          insertEntry.run(`e${n}`, taskId, `h${n}`, 7)
          insertJournal.run(taskId, 'capture', 7, `h${n}`, b.spent, b.reserved, now)
        }
        commit.run()
        const now = wallNow()
        if (now >= countFrom && now <= countTo) pairs += 100
      }
      return { pairs, elapsedMs: durationMs, ok }
    },
    close: () => db.close(),
  }
}
