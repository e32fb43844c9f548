import Database from 'better-sqlite3'
import { createRawSqlite, openRawSqlite } from './lib/raw-sqlite.ts'
import { removeSqlite, sqlitePath } from './lib/files.ts'

/**
 * What spendguard's schema costs the raw baseline of section A: raw better-sqlite3 doing a
 * pair's statements, 100 pairs per transaction over 1,000 budgets, on copies of the schema
 * with one change each (an index dropped, another page size, a bigger cache, no fsync). Three 1-second rounds per variant, printed as pairs/s. Not part of
 * `npm run bench`: `npx tsx bench/schema-cost.ts [variant …]`.
 */
type Variant = { pageSize?: number; drop?: string[]; cacheKib?: number; synchronous?: 'OFF' }
const perTask = ['holds_task', 'holds_open', 'entries_task', 'journal_task']
const variants: Record<string, Variant> = {
  schema: {},
  'page 1 KiB': { pageSize: 1024 },
  'page 2 KiB': { pageSize: 2048 },
  'cache 64 MiB': { cacheKib: 65_536 },
  ...Object.fromEntries(perTask.map((index) => [`without ${index}`, { drop: [index] }])),
  'without the four per-task indexes': { drop: perTask },
  'synchronous=OFF': { synchronous: 'OFF' },
  'synchronous=OFF, without the per-task indexes': { synchronous: 'OFF', drop: perTask },
}

const wanted = process.argv.slice(2)
for (const [name, v] of Object.entries(variants)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue
  const path = sqlitePath(`schema-cost-${Object.keys(variants).indexOf(name)}`)
  removeSqlite(path)
  if (v.pageSize !== undefined) {
    // The page size of a new file is set before its first table.
    const db = new Database(path)
    db.pragma(`page_size = ${v.pageSize}`)
    db.exec('create table first (x); drop table first')
    db.close()
  }
  await createRawSqlite(path, 10n ** 15n)
  if (v.drop) {
    const db = new Database(path)
    for (const index of v.drop) db.exec(`drop index ${index}`)
    db.close()
  }
  const raw = openRawSqlite({ path, reserveAmount: 10n, captureAmount: 7n, synchronous: v.synchronous, cacheKib: v.cacheKib })
  const rounds: number[] = []
  try {
    for (let i = 0; i < 3; i++) {
      const run = raw.run({ pairsPerTx: 100, budgets: 1_000, warmMs: 300, durationMs: 1_000 })
      if (!run.ok) throw new Error(`${name}: ${run.problem}`)
      rounds.push(Math.round((run.pairs / run.elapsedMs) * 1000))
    }
  } finally {
    raw.close()
    removeSqlite(path)
  }
  console.log(`${name.padEnd(48)} ${rounds.map((r) => `${r.toLocaleString('en-US')}/s`.padStart(10)).join(' ')}`)
}
