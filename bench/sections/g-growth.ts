import { readFileSync } from 'node:fs'
import { createGuard, type Guard } from '../../src/index.ts'
import { scale, sized, timed } from '../lib/config.ts'
import { removeSqlite, sqlitePath } from '../lib/files.ts'
import { checkLedger } from '../lib/ledger-check.ts'
import { type PairsResult, guardPair, mergePairs, runPairs } from '../lib/pairs.ts'
import { type Row, compare, correctness, ms, rate } from '../lib/report.ts'
import { seedPairs } from '../lib/seed.ts'
import { summarize, wallNow } from '../lib/stats.ts'
import { captureAmount, reserveAmount } from './a-sqlite.ts'

/**
 * G. Growth: the reserve → capture rate of 100 callers on files already holding 1,000,
 * 100,000 and 1,000,000 settled pairs (holds, entries, two journal rows each). One file per
 * size, seeded with raw inserts into the real schema; the measured operations go through
 * the guard. Rounds rotate over the three files so that all see the same disk.
 */
const callers = 100
const budgetTotal = 10n ** 15n

/** This process's I/O so far (Linux /proc/self/io): bytes written to storage, bytes read by syscalls. */
function processIo(): { written: number; read: number } | undefined {
  try {
    const text = readFileSync('/proc/self/io', 'utf8')
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1])
    return { written: field('write_bytes'), read: field('rchar') }
  } catch {
    return undefined
  }
}

export async function sectionG(): Promise<Row[]> {
  const sizes = [1_000, 100_000, 1_000_000].map((n) => sized(n, 100))
  const rounds = scale >= 0.5 ? 3 : 2
  const warmMs = timed(300, 150)
  const durationMs = timed(1_000, 300)
  const taskIds = Array.from({ length: callers }, (_, i) => `g${i}`)
  const files = sizes.map((size) => ({ size, path: sqlitePath(`g-growth-${size}`), seedMs: 0, seededSpent: 0n }))
  const guards: Guard[] = []
  const runs = new Map<number, PairsResult[]>()
  const io = new Map<number, { written: number; read: number; pairs: number }>()
  const rows: Row[] = []
  const problems: string[] = []
  try {
    for (const f of files) {
      const guard = await createGuard({ db: `sqlite:${f.path}`, expirySweepMs: 3_600_000 })
      await Promise.all(taskIds.map((taskId) => guard.allocate(taskId, { total: budgetTotal, asset: 'USDC', decimals: 6 })))
      await guard.destroy()
      const seeded = seedPairs({ path: f.path, taskIds, pairs: f.size, reserveAmount, captureAmount })
      f.seedMs = seeded.ms
      f.seededSpent = seeded.spent
      guards.push(await createGuard({ db: `sqlite:${f.path}`, expirySweepMs: 3_600_000 }))
      runs.set(f.size, [])
    }
    // Untimed warm-up (counted in the totals checked below).
    const warm: PairsResult[][] = files.map(() => [])
    for (const [i] of files.entries()) {
      const startAt = wallNow() + 20
      warm[i]?.push(
        await runPairs(
          { callers, budgets: { kind: 'own', prefix: 'g' }, mode: { kind: 'window', startAt, countFrom: startAt, countTo: startAt + warmMs } },
          guardPair(guards[i] as Guard, reserveAmount, captureAmount),
        ),
      )
    }
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < files.length; k++) {
        const i = (k + round) % files.length
        const f = files[i] as (typeof files)[number]
        const startAt = wallNow() + 20
        const before = processIo()
        const result = await runPairs(
          { callers, budgets: { kind: 'own', prefix: 'g' }, mode: { kind: 'window', startAt, countFrom: startAt + warmMs, countTo: startAt + warmMs + durationMs } },
          guardPair(guards[i] as Guard, reserveAmount, captureAmount),
        )
        const after = processIo()
        runs.get(f.size)?.push(result)
        if (before && after) {
          const sum = io.get(f.size) ?? { written: 0, read: 0, pairs: 0 }
          sum.written += after.written - before.written
          sum.read += after.read - before.read
          sum.pairs += result.capturesOk
          io.set(f.size, sum)
        }
      }
    }
    const merged = new Map(files.map((f) => [f.size, mergePairs(runs.get(f.size) as PairsResult[], 'window', durationMs * rounds)]))
    const rateOf = (size: number) => {
      const r = merged.get(size) as PairsResult
      return (r.pairs / r.elapsedMs) * 1000
    }
    const smallest = files[0] as (typeof files)[number]
    const perPair = (size: number) => {
      const x = io.get(size)
      return x && x.pairs > 0 ? { writtenKb: x.written / x.pairs / 1024, readKb: x.read / x.pairs / 1024 } : undefined
    }
    const ioText = (size: number) => {
      const a = perPair(size)
      const b = perPair(smallest.size)
      return a && b ? `; KB written/read per pair ${a.writtenKb.toFixed(0)}/${a.readKb.toFixed(0)} vs ${b.writtenKb.toFixed(0)}/${b.readKb.toFixed(0)}` : ''
    }
    for (const f of files.slice(1)) {
      const op = summarize((merged.get(f.size) as PairsResult).opLatenciesMs)
      rows.push(
        compare({
          section: 'G',
          measure: `${callers} callers on a file with ${f.size.toLocaleString('en-US')} pairs already (op p99 ${ms(op.p99Ms)}${ioText(f.size)}): pairs/s`,
          value: rateOf(f.size),
          show: (n) => rate(n),
          baseline: rateOf(smallest.size),
          baselineLabel: `with ${smallest.size.toLocaleString('en-US')} pairs`,
          target: { kind: 'ratio-min', value: 0.9 },
          detail: {
            rounds: runs.get(f.size)?.map((r) => Math.round((r.pairs / r.elapsedMs) * 1000)),
            baselineRounds: runs.get(smallest.size)?.map((r) => Math.round((r.pairs / r.elapsedMs) * 1000)),
            op,
            ioPerPair: perPair(f.size),
            ioPerPairBaseline: perPair(smallest.size),
            seedSeconds: f.seedMs / 1000,
          },
        }),
      )
    }
    for (const [i, f] of files.entries()) {
      const done = [...(runs.get(f.size) as PairsResult[]), ...(warm[i] as PairsResult[])]
      const reserves = done.reduce((s, r) => s + r.reservesOk, 0)
      const captures = done.reduce((s, r) => s + r.capturesOk, 0)
      const errors = done.reduce((s, r) => s + r.errors, 0)
      if (errors > 0) problems.push(`${f.size}: ${errors} operations failed: ${done.find((r) => r.firstError)?.firstError}`)
      const check = await checkLedger(guards[i] as Guard, {
        spent: f.seededSpent + BigInt(captures) * captureAmount,
        reserved: BigInt(reserves - captures) * reserveAmount,
        entries: f.size + captures,
        openHolds: reserves - captures,
        journalRows: callers + 2 * f.size + reserves + captures,
      })
      problems.push(...check.problems.map((p) => `${f.size}: ${p}`))
      files[i] = { ...f, verifyMs: check.observed.verifyMs } as typeof f
    }
    rows.push(
      correctness(
        'G',
        problems.length === 0,
        problems.length === 0 ? `ok: ${files.length} files verified (seeding took ${files.map((f) => `${(f.seedMs / 1000).toFixed(1)} s`).join(', ')})` : problems.slice(0, 3).join('; '),
        { problems, files: files.map((f) => ({ ...f, seededSpent: f.seededSpent.toString() })) },
      ),
    )
  } finally {
    for (const g of guards) await g.destroy()
    for (const f of files) removeSqlite(f.path)
  }
  return rows
}
