import { createGuard } from '../../src/index.ts'
import { scale, timed } from '../lib/config.ts'
import { removeSqlite, sqlitePath } from '../lib/files.ts'
import { checkLedger } from '../lib/ledger-check.ts'
import { type PairsResult, guardPair, mergePairs, runPairs } from '../lib/pairs.ts'
import { type RawSqliteRun, createRawSqlite, openBareSqlite, openRawSqlite } from '../lib/raw-sqlite.ts'
import { type Row, compare, correctness, ms, rate } from '../lib/report.ts'
import { summarize, wallNow } from '../lib/stats.ts'

/**
 * A. SQLite, durable (synchronous=FULL), one process: reserve → capture pairs per second
 * and latencies at 1, 100 and 1000 callers, each caller looping on its own budget; beside
 * raw better-sqlite3 doing the same statements as 2 transactions per pair (for 1 caller)
 * and as 100 pairs per transaction (for 100 and 1000), over as many budgets, on a separate
 * file in the same directory. A level's guard and baseline alternate in short rounds.
 */
export const reserveAmount = 10n
export const captureAmount = 7n
const budgetTotal = 10n ** 15n
const levels = [1, 100, 1000] as const

export type SectionAResult = { rows: Row[]; at1000: PairsResult | undefined }

export async function sectionA(): Promise<SectionAResult> {
  // The disk's fsync time swings (a shared VM): each level alternates short rounds of the
  // baseline and of spendguard, so both see the same disk, and sums the rounds.
  const rounds = scale >= 0.5 ? 4 : 2
  const warmMs = timed(300, 150)
  const durationMs = timed(900, 300)
  const rows: Row[] = []

  const rawPath = sqlitePath('a-raw')
  await createRawSqlite(rawPath, budgetTotal)
  const raw = openRawSqlite({ path: rawPath, reserveAmount, captureAmount })
  const barePath = sqlitePath('a-bare')
  const bare = openBareSqlite(barePath, 1000)
  const bareRuns: { pairs: number; elapsedMs: number; ok: boolean }[] = []
  const path = sqlitePath('a-guard')
  const guard = await createGuard({ db: `sqlite:${path}`, expirySweepMs: 3_600_000 })
  const results = new Map<number, PairsResult>()
  const baselines = new Map<number, RawSqliteRun>()
  const perRound: Record<number, { guard: number[]; raw: number[] }> = {}
  let allocated = 0
  try {
    for (const callers of levels) {
      const prefix = `a${callers}-`
      for (let i = 0; i < callers; i++) {
        await guard.allocate(`${prefix}${i}`, { total: budgetTotal, asset: 'USDC', decimals: 6 })
        allocated++
      }
      const pairsPerTx = callers === 1 ? 0 : 100
      const guardRuns: PairsResult[] = []
      const rawRuns: RawSqliteRun[] = []
      const runGuard = async () => {
        const startAt = wallNow() + 20
        guardRuns.push(
          await runPairs(
            { callers, budgets: { kind: 'own', prefix }, mode: { kind: 'window', startAt, countFrom: startAt + warmMs, countTo: startAt + warmMs + durationMs } },
            guardPair(guard, reserveAmount, captureAmount),
          ),
        )
      }
      const runRaw = () => {
        rawRuns.push(raw.run({ pairsPerTx, budgets: callers, warmMs, durationMs }))
        if (callers === 1000) bareRuns.push(bare.run(warmMs, durationMs))
      }
      for (let round = 0; round < rounds; round++) {
        if (round % 2 === 0) {
          runRaw()
          await runGuard()
        } else {
          await runGuard()
          runRaw()
        }
      }
      results.set(callers, mergePairs(guardRuns, 'window', durationMs * rounds))
      baselines.set(callers, mergeRaw(rawRuns))
      perRound[callers] = {
        guard: guardRuns.map((r) => Math.round((r.pairs / r.elapsedMs) * 1000)),
        raw: rawRuns.map((r) => Math.round((r.pairs / r.elapsedMs) * 1000)),
      }
    }

    for (const callers of levels) {
      const r = results.get(callers) as PairsResult
      const base = baselines.get(callers) as RawSqliteRun
      const pairsPerSec = (r.pairs / r.elapsedMs) * 1000
      const basePerSec = (base.pairs / base.elapsedMs) * 1000
      const op = summarize(r.opLatenciesMs)
      const pair = summarize(r.pairLatenciesMs)
      const tx = summarize(base.txLatenciesMs)
      const one = callers === 1
      const plural = one ? '' : 's'
      rows.push(
        compare({
          section: 'A',
          measure: `SQLite FULL, 1 process, ${callers} caller${plural}: pairs/s`,
          value: pairsPerSec,
          show: (n) => rate(n),
          baseline: basePerSec,
          baselineLabel: one ? 'raw 2 tx/pair' : 'raw 100 pairs/tx',
          target: one ? { kind: 'ratio-min', value: 0.8 } : callers === 1000 ? { kind: 'ratio-min', value: 0.5 } : { kind: 'none' },
          detail: { callers, pairs: r.pairs, windowMs: r.elapsedMs, rounds: perRound[callers], op, pair, baselineTx: tx },
        }),
      )
      rows.push(
        compare({
          section: 'A',
          measure: `  ${callers} caller${plural}: op latency p50 / p99 (pair p99 ${ms(pair.p99Ms)})`,
          value: op.p99Ms,
          show: (n) => `${ms(op.p50Ms)} / ${ms(n)}`,
          baseline: tx.p99Ms,
          baselineShow: (n) => `${ms(tx.p50Ms)} / ${ms(n)}`,
          baselineLabel: one ? 'raw tx' : 'raw 100-pair tx',
          target: callers === 1000 ? { kind: 'value-max', value: 10, unit: 'ms p99' } : { kind: 'none' },
          detail: { op, pair, baselineTx: tx },
        }),
      )
      if (callers === 1000 && bareRuns.length > 0) {
        const barePerSec = (bareRuns.reduce((s, b) => s + b.pairs, 0) / bareRuns.reduce((s, b) => s + b.elapsedMs, 0)) * 1000
        rows.push(
          compare({
            section: 'A',
            measure: '  1000 callers beside raw SQL on bare tables (no secondary index, integer amounts)',
            value: pairsPerSec,
            show: (n) => rate(n),
            baseline: barePerSec,
            baselineLabel: 'raw bare tables, 100 pairs/tx',
            detail: { rounds: bareRuns.map((b) => Math.round((b.pairs / b.elapsedMs) * 1000)) },
          }),
        )
      }
    }

    const done = [...results.values()]
    const reserves = done.reduce((s, r) => s + r.reservesOk, 0)
    const captures = done.reduce((s, r) => s + r.capturesOk, 0)
    const errors = done.reduce((s, r) => s + r.errors, 0)
    const check = await checkLedger(guard, {
      spent: BigInt(captures) * captureAmount,
      reserved: BigInt(reserves - captures) * reserveAmount,
      entries: captures,
      openHolds: reserves - captures,
      journalRows: allocated + reserves + captures,
    })
    const problems = [...check.problems]
    if (errors > 0) problems.push(`${errors} operations failed: ${done.find((r) => r.firstError)?.firstError}`)
    for (const base of baselines.values()) if (!base.ok) problems.push(`raw baseline: ${base.problem}`)
    if (bareRuns.some((b) => !b.ok)) problems.push('bare-table reference: a reserve was denied or a hold was not open')
    rows.push(
      correctness(
        'A',
        check.ok && problems.length === 0,
        problems.length === 0 ? `ok: ${captures} pairs, spent ${check.observed.spent}, ${check.observed.journalRows} journal rows` : problems.join('; '),
        { ...check, problems },
      ),
    )
  } finally {
    raw.close()
    bare.close()
    await guard.destroy()
    removeSqlite(path)
    removeSqlite(rawPath)
    removeSqlite(barePath)
  }
  return { rows, at1000: results.get(1000) }
}

function mergeRaw(runs: RawSqliteRun[]): RawSqliteRun {
  const bad = runs.find((r) => !r.ok)
  return {
    pairs: runs.reduce((s, r) => s + r.pairs, 0),
    elapsedMs: runs.reduce((s, r) => s + r.elapsedMs, 0),
    txLatenciesMs: runs.flatMap((r) => r.txLatenciesMs),
    pairsTotal: runs.reduce((s, r) => s + r.pairsTotal, 0),
    spent: runs.reduce((s, r) => s + r.spent, 0n),
    ok: !bad,
    problem: bad?.problem,
  }
}
