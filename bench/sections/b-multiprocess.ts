import { createGuard } from '../../src/index.ts'
import { sized } from '../lib/config.ts'
import { removeSqlite, sqlitePath } from '../lib/files.ts'
import { checkLedger } from '../lib/ledger-check.ts'
import { type PairsResult, guardPair, mergePairs, runPairs, toWire } from '../lib/pairs.ts'
import { type Row, compare, correctness, ms, rate } from '../lib/report.ts'
import { summarize, wallNow } from '../lib/stats.ts'
import { startWorkers } from '../lib/workers.ts'
import { captureAmount, reserveAmount } from './a-sqlite.ts'

/**
 * B. SQLite, 4 processes on one file, 250 callers each (own budget per caller), a fixed
 * number of pairs per caller, started together. The aggregate rate is printed beside
 * section A's one process with 1000 callers (measured here when A did not run).
 */
const processes = 4
const callersPerProcess = 250
const budgetTotal = 10n ** 15n

export async function sectionB(at1000: PairsResult | undefined): Promise<Row[]> {
  const pairsPerCaller = sized(40, 4)
  const path = sqlitePath('b-shared')
  const url = `sqlite:${path}`
  const rows: Row[] = []
  const workers = await startWorkers(processes)
  const guard = await createGuard({ db: url, expirySweepMs: 3_600_000 })
  try {
    let oneProcess = at1000
    if (!oneProcess) {
      // Section A did not run: one process with 1000 callers, here, on its own budgets.
      for (let i = 0; i < 1000; i++) await guard.allocate(`one-${i}`, { total: budgetTotal, asset: 'USDC', decimals: 6 })
      const startAt = wallNow() + 20
      oneProcess = await runPairs(
        { callers: 1000, budgets: { kind: 'own', prefix: 'one-' }, mode: { kind: 'window', startAt, countFrom: startAt + 500, countTo: startAt + 3_000 } },
        guardPair(guard, reserveAmount, captureAmount),
      )
    }
    const baselineTaskIds = new Set<string>()
    await Promise.all(
      Array.from({ length: processes * callersPerProcess }, async (_, i) => {
        const taskId = `p${Math.floor(i / callersPerProcess)}-${i % callersPerProcess}`
        baselineTaskIds.add(taskId)
        await guard.allocate(taskId, { total: budgetTotal, asset: 'USDC', decimals: 6 })
      }),
    )
    // The parent's guard stays open (idle) so its budgets can be checked after.
    await Promise.all(workers.map((w) => w.call({ cmd: 'guard-open', db: url })))
    const startAt = wallNow() + 300
    const results = await Promise.all(
      workers.map((w, p) =>
        w.call<PairsResult>({
          cmd: 'guard-pairs',
          job: toWire({
            callers: callersPerProcess,
            budgets: { kind: 'own', prefix: `p${p}-` },
            reserveAmount,
            captureAmount,
            mode: { kind: 'fixed', startAt, pairsPerCaller },
          }),
        }),
      ),
    )
    await Promise.all(workers.map((w) => w.call({ cmd: 'guard-close' })))
    const all = mergePairs(results, 'fixed')
    const aggregate = (all.pairs / all.elapsedMs) * 1000
    const single = (oneProcess.pairs / oneProcess.elapsedMs) * 1000
    const op = summarize(all.opLatenciesMs)
    rows.push(
      compare({
        section: 'B',
        measure: `SQLite FULL, ${processes} processes × ${callersPerProcess} callers, one file: pairs/s`,
        value: aggregate,
        show: (n) => rate(n),
        baseline: single,
        baselineLabel: '1 process × 1000 (A)',
        detail: {
          pairs: all.pairs,
          elapsedMs: all.elapsedMs,
          perProcess: results.map((r) => ({ pairs: r.pairs, elapsedMs: Math.round(r.endedAt - r.startedAt), ...summarize(r.opLatenciesMs) })),
          op,
          pair: summarize(all.pairLatenciesMs),
          oneProcessFromA: at1000 !== undefined,
        },
      }),
    )
    rows.push(
      compare({
        section: 'B',
        measure: `  ${processes} × ${callersPerProcess}: op latency p50 / p99`,
        value: op.p99Ms,
        show: (n) => `${ms(op.p50Ms)} / ${ms(n)}`,
        baseline: summarize(oneProcess.opLatenciesMs).p99Ms,
        baselineShow: (n) => `${ms(summarize(oneProcess.opLatenciesMs).p50Ms)} / ${ms(n)}`,
        baselineLabel: '1 process × 1000',
      }),
    )
    const reserves = all.reservesOk
    const captures = all.capturesOk
    const check = await checkLedger(guard, {
      taskIds: baselineTaskIds,
      spent: BigInt(captures) * captureAmount,
      reserved: BigInt(reserves - captures) * reserveAmount,
      entries: captures,
      openHolds: reserves - captures,
    })
    const problems = [...check.problems]
    if (all.errors > 0) problems.push(`${all.errors} operations failed: ${all.firstError}`)
    const expectedPairs = processes * callersPerProcess * pairsPerCaller
    if (captures !== expectedPairs) problems.push(`${captures} pairs done, ${expectedPairs} asked`)
    rows.push(
      correctness(
        'B',
        check.ok && problems.length === 0,
        problems.length === 0 ? `ok: ${captures} pairs from ${processes} processes, spent ${check.observed.spent}` : problems.join('; '),
        { ...check, problems },
      ),
    )
  } finally {
    await Promise.all(workers.map((w) => w.close()))
    await guard.destroy()
    removeSqlite(path)
  }
  return rows
}
