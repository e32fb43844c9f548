import { sql } from 'kysely'
import type { Guard } from '../../src/index.ts'

/**
 * Correctness under load: `verify()` is clean and the ledger's totals equal what the
 * benchmark did. Every section runs it on its guard databases after measuring.
 */
export type Expected = {
  /** Budgets to sum (all when omitted). */
  taskIds?: ReadonlySet<string> | undefined
  spent: bigint
  reserved: bigint
  entries: number
  openHolds: number
  /** Rows in the journal, when known. */
  journalRows?: number | undefined
}

export type CheckResult = {
  ok: boolean
  problems: string[]
  observed: { spent: string; reserved: string; entries: number; openHolds: number; journalRows: number; verifyMs: number }
}

export async function checkLedger(guard: Guard, expected: Expected): Promise<CheckResult> {
  const t0 = performance.now()
  const verified = await guard.verify()
  const verifyMs = performance.now() - t0
  const problems = verified.problems.slice(0, 5).map((p) => `verify: ${p}`)
  if (!verified.ok && verified.problems.length > 5) problems.push(`verify: … ${verified.problems.length - 5} more`)
  let spent = 0n
  let reserved = 0n
  let entries = 0
  let openHolds = 0
  for (const b of await guard.list()) {
    if (expected.taskIds && !expected.taskIds.has(b.taskId)) continue
    spent += b.spent
    reserved += b.reserved
    entries += b.entryCount
    openHolds += b.openHolds
  }
  const { rows } = await sql<{ n: number | string }>`select count(*) as n from journal`.execute(guard.internal.store.db)
  const journalRows = Number(rows[0]?.n ?? 0)
  const compare = (what: string, seen: bigint | number, want: bigint | number) => {
    if (seen !== want) problems.push(`${what}: ledger has ${seen}, the benchmark did ${want}`)
  }
  compare('spent', spent, expected.spent)
  compare('reserved', reserved, expected.reserved)
  compare('entries', entries, expected.entries)
  compare('open holds', openHolds, expected.openHolds)
  if (expected.journalRows !== undefined) compare('journal rows', journalRows, expected.journalRows)
  return {
    ok: verified.ok && problems.length === 0,
    problems,
    observed: { spent: spent.toString(), reserved: reserved.toString(), entries, openHolds, journalRows, verifyMs },
  }
}
