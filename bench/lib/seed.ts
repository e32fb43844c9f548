import { randomBytes } from 'node:crypto'
import Database from 'better-sqlite3'
import { budgets as budgetCodec, entries as entryCodec, holds as holdCodec, journal as journalCodec } from '../../src/engine/store/codec.ts'
import type { EntryRow, HoldRow, JournalRow } from '../../src/engine/store/types.ts'
import { holdSig, settleSig } from './ids.ts'

/**
 * Seeds a spendguard SQLite file (migrated, budgets allocated through a guard) with
 * `pairs` settled reserve → capture pairs: per pair one captured hold, one entry and two
 * journal rows, spread round-robin over `taskIds`, with budgets updated to match — a state
 * the engine could have written, which verify() accepts. Rows are built as the engine's
 * own row types and encoded with its codecs, so they fit the schema as it is.
 * Not timed: only the guard's operations on the seeded file are measured.
 */
export function seedPairs({
  path,
  taskIds,
  pairs,
  reserveAmount,
  captureAmount,
}: {
  path: string
  taskIds: string[]
  pairs: number
  reserveAmount: bigint
  captureAmount: bigint
}): { spent: bigint; ms: number } {
  const t0 = performance.now()
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  // Seeding is setup: no fsync per transaction, a large page cache.
  db.pragma('synchronous = OFF')
  db.pragma('cache_size = -1000000')
  const insert = (codec: { table: string; columns: readonly string[] }) =>
    db.prepare(`insert into ${codec.table} (${codec.columns.join(', ')}) values (${codec.columns.map(() => '?').join(', ')})`)
  const insertHold = insert(holdCodec)
  const insertEntry = insert(entryCodec)
  const insertJournal = insert(journalCodec)
  const readBudget = db.prepare('select * from budgets where task_id = ?')
  const updateBudget = db.prepare('update budgets set spent = ?, entry_count = ?, updated_at = ? where task_id = ?')

  const state = taskIds.map((taskId) => {
    const b = budgetCodec.decode(readBudget.get(taskId) as Record<string, unknown>)
    if (b.reserved !== 0n || b.openHolds !== 0) throw new Error(`seed: budget ${taskId} has open holds`)
    return { taskId, spent: b.spent, entryCount: b.entryCount }
  })
  const tag = randomBytes(6).toString('hex')
  const now = Date.now()
  const time = now.toString(16).padStart(12, '0')
  let pool = Buffer.alloc(0)
  let offset = 0
  const ref = () => {
    if (offset + 32 > pool.length) {
      pool = randomBytes(32 * 4096)
      offset = 0
    }
    const r = `0x${pool.toString('hex', offset, offset + 32)}`
    offset += 32
    return r
  }
  const hSig = holdSig(reserveAmount)
  const eSig = settleSig(captureAmount)
  const chunk = 20_000
  let spentAdded = 0n
  for (let start = 0; start < pairs; start += chunk) {
    const end = Math.min(pairs, start + chunk)
    db.transaction(() => {
      for (let i = start; i < end; i++) {
        const b = state[i % state.length] as (typeof state)[number]
        const n = i.toString(16).padStart(8, '0')
        const holdId = `hold_${time}${n}seed${tag}`
        const entryId = `entry_${time}${n}seed${tag}`
        const hold: HoldRow = {
          id: holdId,
          taskId: b.taskId,
          ref: ref(),
          key: null,
          amount: reserveAmount,
          status: 'captured',
          expiresAt: null,
          createdAt: now,
          settledAt: now,
          capturedAmount: captureAmount,
          entryId,
          settleSig: eSig,
          sig: hSig,
        }
        const entry: EntryRow = {
          id: entryId,
          taskId: b.taskId,
          holdId,
          amount: captureAmount,
          peer: null,
          tool: null,
          reason: null,
          at: now,
          source: 'offchain',
          chainId: null,
          hook: null,
          blockNumber: null,
          blockHash: null,
          txHash: null,
          logIndex: null,
          confirmed: false,
          reverted: false,
          sig: eSig,
        }
        const reserveRow: Omit<JournalRow, 'seq'> = {
          taskId: b.taskId,
          kind: 'reserve',
          amount: reserveAmount,
          holdId,
          entryId: null,
          source: 'offchain',
          chain: null,
          spentAfter: b.spent,
          reservedAfter: reserveAmount,
          at: now,
        }
        b.spent += captureAmount
        b.entryCount++
        const captureRow: Omit<JournalRow, 'seq'> = { ...reserveRow, kind: 'capture', amount: captureAmount, entryId, spentAfter: b.spent, reservedAfter: 0n }
        insertHold.run(...holdCodec.encode(hold))
        insertEntry.run(...entryCodec.encode(entry))
        insertJournal.run(...journalCodec.encode(reserveRow))
        insertJournal.run(...journalCodec.encode(captureRow))
        spentAdded += captureAmount
      }
    })()
  }
  db.transaction(() => {
    for (const b of state) updateBudget.run(b.spent.toString(), b.entryCount, now, b.taskId)
  })()
  db.pragma('wal_checkpoint(TRUNCATE)')
  db.close()
  return { spent: spentAdded, ms: performance.now() - t0 }
}
