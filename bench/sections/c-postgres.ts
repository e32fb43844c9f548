import { join } from 'node:path'
import pg from 'pg'
import { createGuard } from '../../src/index.ts'
import { benchDir, pgUrlGiven, scale, timed } from '../lib/config.ts'
import { checkLedger } from '../lib/ledger-check.ts'
import { type BudgetPick, type PairsResult, mergePairs, toWire } from '../lib/pairs.ts'
import { type Row, compare, correctness, failure, ms, rate } from '../lib/report.ts'
import { sleep, summarize, wallNow } from '../lib/stats.ts'
import { type Worker, startWorkers } from '../lib/workers.ts'
import { captureAmount, reserveAmount } from './a-sqlite.ts'

/**
 * C. PostgreSQL: 4 processes × 1, 8 and 64 callers, on one hot budget and spread over
 * 1,000 budgets. spendguard (one guard per process) beside raw `pg` doing the same
 * statements, one pair as two transactions, one connection per caller (4 × N). Each
 * configuration alternates rounds of both, on fresh schemas of one database.
 */
const processes = 4
const levels = [1, 8, 64] as const
const spreadBudgets = 1_000
const budgetTotal = 10n ** 18n

type Dist = 'hot' | 'spread'

export async function sectionC(): Promise<Row[]> {
  const rows: Row[] = []
  let cluster: { url: string; stop(): Promise<void> } | undefined
  let url = pgUrlGiven
  if (!url) {
    // @ts-expect-error: a plain .mjs script without types
    const { startCluster } = (await import('../../scripts/pg-cluster.mjs')) as {
      startCluster(dir: string): Promise<{ url: string; stop(): Promise<void> }>
    }
    try {
      cluster = await startCluster(join(benchDir, 'pg'))
    } catch (error) {
      return [failure('C', 'PostgreSQL: could not start a throwaway cluster (set BENCH_PG_URL)', error)]
    }
    url = cluster.url
  }
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  let workers: Worker[] = []
  try {
    workers = await startWorkers(processes)
    const rounds = 2
    const warmMs = timed(400, 200)
    const durationMs = timed(1_500, 400)
    let all = true
    const checks: unknown[] = []
    for (const dist of ['hot', 'spread'] as const) {
      for (const callers of levels) {
        const guardSchema = await freshSchema(admin, url, `g_${dist}_${callers}`)
        const rawSchema = await freshSchema(admin, url, `r_${dist}_${callers}`)
        const taskIds = await allocate(guardSchema.url, dist)
        await allocate(rawSchema.url, dist)
        const budgets: BudgetPick = dist === 'hot' ? { kind: 'one', taskId: 'hot' } : { kind: 'random', prefix: 's', count: spreadBudgets }

        const guardRuns: PairsResult[][] = []
        const rawRuns: PairsResult[][] = []
        const deadlocks = { guard: 0, raw: 0 }
        const window = () => {
          const startAt = wallNow() + 150
          return { kind: 'window' as const, startAt, countFrom: startAt + warmMs, countTo: startAt + warmMs + durationMs }
        }
        const runGuard = async () => {
          const before = await deadlockCount(admin)
          await Promise.all(workers.map((w) => w.call({ cmd: 'guard-open', db: guardSchema.url })))
          const mode = window()
          guardRuns.push(
            await Promise.all(
              workers.map((w) =>
                w.call<PairsResult>({ cmd: 'guard-pairs', job: toWire({ callers, budgets, reserveAmount, captureAmount, mode }) }),
              ),
            ),
          )
          await Promise.all(workers.map((w) => w.call({ cmd: 'guard-close' })))
          deadlocks.guard += (await deadlockCount(admin)) - before
        }
        const runRaw = async () => {
          const before = await deadlockCount(admin)
          await Promise.all(workers.map((w) => w.call({ cmd: 'pg-open', url: rawSchema.url, connections: callers })))
          const mode = window()
          rawRuns.push(
            await Promise.all(
              workers.map((w) => w.call<PairsResult>({ cmd: 'pg-pairs', job: toWire({ callers, budgets, reserveAmount, captureAmount, mode }) })),
            ),
          )
          await Promise.all(workers.map((w) => w.call({ cmd: 'pg-close' })))
          deadlocks.raw += (await deadlockCount(admin)) - before
        }
        for (let round = 0; round < rounds; round++) {
          if (round % 2 === 0) {
            await runGuard()
            await runRaw()
          } else {
            await runRaw()
            await runGuard()
          }
        }
        const g = mergePairs(guardRuns.map((r) => mergePairs(r, 'window')), 'window', durationMs * rounds)
        const r = mergePairs(rawRuns.map((x) => mergePairs(x, 'window')), 'window', durationMs * rounds)
        const gFigure = figure(guardRuns)
        const rFigure = figure(rawRuns)
        const guardRate = gFigure.rate
        const rawRate = rFigure.rate
        const gOp = summarize(g.opLatenciesMs)
        const rOp = summarize(r.opLatenciesMs)
        const whole =
          (deadlocks.guard > 0 ? ` [${deadlocks.guard} deadlocks]` : '') +
          (gFigure.whole || rFigure.whole ? ' [whole run: no pair ended in the window]' : '')
        rows.push(
          compare({
            section: 'C',
            measure: `PostgreSQL, ${processes} proc × ${callers} caller${callers > 1 ? 's' : ''}, ${dist === 'hot' ? '1 hot budget' : `${spreadBudgets} budgets`}: pairs/s (op p50/p99 ${ms(gOp.p50Ms)}/${ms(gOp.p99Ms)})${whole}`,
            value: guardRate,
            show: (n) => rate(n),
            baseline: rawRate,
            baselineLabel: `raw pg ${processes}×${callers} conns, 2 tx/pair (op p99 ${ms(rOp.p99Ms)})`,
            target: dist === 'hot' && callers === 64 ? { kind: 'ratio-min', value: 2 } : { kind: 'none' },
            detail: {
              guard: { pairs: g.pairs, windowMs: g.elapsedMs, op: gOp, pair: summarize(g.pairLatenciesMs), errors: g.errors, firstError: g.firstError },
              raw: { pairs: r.pairs, windowMs: r.elapsedMs, op: rOp, pair: summarize(r.pairLatenciesMs), errors: r.errors, firstError: r.firstError },
              deadlocks,
              figureGuard: gFigure,
              figureRaw: rFigure,
              roundsGuard: guardRuns.map((x) => mergePairs(x, 'window').pairs),
              roundsRaw: rawRuns.map((x) => mergePairs(x, 'window').pairs),
            },
          }),
        )

        // Correctness of this configuration: the guard schema against what the callers did.
        const reserves = guardRuns.flat().reduce((s, x) => s + x.reservesOk, 0)
        const captures = guardRuns.flat().reduce((s, x) => s + x.capturesOk, 0)
        const errors = guardRuns.flat().reduce((s, x) => s + x.errors, 0)
        const guard = await createGuard({ db: guardSchema.url, expirySweepMs: 3_600_000 })
        try {
          const check = await checkLedger(guard, {
            taskIds,
            spent: BigInt(captures) * captureAmount,
            reserved: BigInt(reserves - captures) * reserveAmount,
            entries: captures,
            openHolds: reserves - captures,
            journalRows: taskIds.size + reserves + captures,
          })
          const problems = [...check.problems]
          if (errors > 0) problems.push(`${errors} operations failed: ${guardRuns.flat().find((x) => x.firstError)?.firstError}`)
          const rawCaptures = rawRuns.flat().reduce((s, x) => s + x.capturesOk, 0)
          const rawSpent = await sumSpent(admin, rawSchema.schema)
          if (rawSpent !== BigInt(rawCaptures) * captureAmount) problems.push(`raw baseline spent ${rawSpent}, expected ${BigInt(rawCaptures) * captureAmount}`)
          if (problems.length) all = false
          checks.push({ dist, callers, pairs: captures, problems, observed: check.observed })
        } finally {
          await guard.destroy()
        }
        await admin.query(`drop schema ${guardSchema.schema} cascade`)
        await admin.query(`drop schema ${rawSchema.schema} cascade`)
      }
    }
    const problemLines = (checks as { problems: string[]; dist: string; callers: number }[]).flatMap((c) =>
      c.problems.map((p) => `${c.dist}×${c.callers}: ${p}`),
    )
    const pairs = (checks as { pairs: number }[]).reduce((s, c) => s + c.pairs, 0)
    rows.push(
      correctness(
        'C',
        all,
        all ? `ok: ${pairs} pairs in ${checks.length} configurations, each schema verified` : problemLines.slice(0, 3).join('; '),
        { checks, scale },
      ),
    )
  } finally {
    await Promise.all(workers.map((w) => w.close()))
    await admin.end()
    await cluster?.stop()
  }
  return rows
}

/**
 * Pairs per second over the rounds' windows; a round in which no pair ended inside the
 * window (every pair slower than warm-up plus window) counts all its pairs over its whole
 * run instead, and says so.
 */
function figure(rounds: PairsResult[][]): { rate: number; whole: boolean; pairs: number; ms: number } {
  let pairs = 0
  let spanMs = 0
  let whole = false
  for (const round of rounds) {
    const m = mergePairs(round, 'window')
    if (m.pairs > 0) {
      pairs += m.pairs
      spanMs += m.elapsedMs
    } else {
      whole = true
      pairs += m.capturesOk
      spanMs += m.endedAt - m.startedAt
    }
  }
  return { rate: (pairs / spanMs) * 1000, whole, pairs, ms: spanMs }
}

async function freshSchema(admin: pg.Client, base: string, name: string) {
  const schema = `bench_${name}`
  await admin.query(`drop schema if exists ${schema} cascade`)
  await admin.query(`create schema ${schema}`)
  const u = new URL(base)
  u.searchParams.set('options', `-c search_path=${schema}`)
  return { schema, url: u.toString() }
}

/** Runs the migrations on the schema (through a guard) and allocates the budgets. */
async function allocate(url: string, dist: Dist): Promise<Set<string>> {
  const guard = await createGuard({ db: url, expirySweepMs: 3_600_000 })
  const ids = dist === 'hot' ? ['hot'] : Array.from({ length: spreadBudgets }, (_, i) => `s${i}`)
  try {
    await Promise.all(ids.map((taskId) => guard.allocate(taskId, { total: budgetTotal, asset: 'USDC', decimals: 6 })))
  } finally {
    await guard.destroy()
  }
  return new Set(ids)
}

/**
 * Deadlocks PostgreSQL detected in this database so far. Backends report their statistics
 * when they exit (or at most once a second), so this is read after the connections closed
 * and a short pause.
 */
async function deadlockCount(admin: pg.Client): Promise<number> {
  await sleep(300)
  const { rows } = await admin.query('select deadlocks::int as n from pg_stat_database where datname = current_database()')
  return (rows[0] as { n: number } | undefined)?.n ?? 0
}

async function sumSpent(admin: pg.Client, schema: string): Promise<bigint> {
  const { rows } = await admin.query(`select coalesce(sum(spent), 0)::text as spent from ${schema}.budgets`)
  return BigInt((rows[0] as { spent: string }).spent)
}
