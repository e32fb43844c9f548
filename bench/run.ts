/**
 * `npm run bench [-- A C …]`: spendguard's benchmark. Runs the named sections (all when
 * none are named), prints one table — every figure beside its baseline measured in this
 * run on the same disk, the ratio, the target and the verdict — and writes
 * bench/results.json. See BENCHMARKS.md for what each figure means.
 *
 * Environment: BENCH_SCALE (sizes and durations, default 1), BENCH_DIR (databases,
 * default .tmp/bench), BENCH_PG_URL (use this PostgreSQL instead of a throwaway cluster),
 * BENCH_KEEP=1 (keep database files).
 */
import { writeFileSync } from 'node:fs'
import { cpus, freemem, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { benchDir, repoRoot, scale } from './lib/config.ts'
import type { PairsResult } from './lib/pairs.ts'
import { type Row, failure, renderTable } from './lib/report.ts'
import { sectionA } from './sections/a-sqlite.ts'
import { sectionB } from './sections/b-multiprocess.ts'
import { sectionC } from './sections/c-postgres.ts'
import { type ChainSections, createChainSections } from './sections/d-f-chain.ts'
import { sectionE } from './sections/e-peer.ts'
import { sectionG } from './sections/g-growth.ts'

const all = ['A', 'B', 'C', 'D', 'E', 'G', 'F'] as const
type Section = (typeof all)[number]

const asked = process.argv.slice(2).map((s) => s.toUpperCase())
for (const s of asked) if (!(all as readonly string[]).includes(s)) throw new Error(`unknown section ${s}; sections: ${[...all].sort().join(' ')}`)
// F runs last: its 100,000 logs take the longest to create.
const selected = all.filter((s) => asked.length === 0 || asked.includes(s))

const began = Date.now()
const rows: Row[] = []
const timings: Record<string, { seconds: number; loadBefore: number[]; loadAfter: number[] }> = {}
let at1000: PairsResult | undefined
let chain: ChainSections | undefined

const log = (line: string) => process.stderr.write(`${line}\n`)
log(`spendguard bench: sections ${selected.join(' ')}, BENCH_SCALE=${scale}, databases in ${benchDir}`)

try {
  for (const section of selected) {
    const t0 = Date.now()
    const loadBefore = loadavg()
    log(`▶ ${section} …`)
    try {
      switch (section as Section) {
        case 'A': {
          const a = await sectionA()
          rows.push(...a.rows)
          at1000 = a.at1000
          break
        }
        case 'B':
          rows.push(...(await sectionB(at1000)))
          break
        case 'C':
          rows.push(...(await sectionC()))
          break
        case 'D':
          chain ??= await createChainSections()
          rows.push(...(await chain.ingest()))
          break
        case 'E':
          rows.push(...(await sectionE()))
          break
        case 'G':
          rows.push(...(await sectionG()))
          break
        case 'F':
          chain ??= await createChainSections()
          rows.push(...(await chain.memory()))
          break
      }
    } catch (error) {
      rows.push(failure(section, `section ${section} did not finish`, error))
      log(String((error as Error)?.stack ?? error))
    }
    timings[section] = { seconds: (Date.now() - t0) / 1000, loadBefore, loadAfter: loadavg() }
    log(`  ${section} took ${((Date.now() - t0) / 1000).toFixed(1)} s (load average ${loadavg().map((x) => x.toFixed(2)).join(' ')})`)
  }
} finally {
  await chain?.stop()
}

const order = (s: string) => 'ABCDEFG'.indexOf(s)
rows.sort((a, b) => order(a.section) - order(b.section))
const table = renderTable(rows)
const seconds = (Date.now() - began) / 1000
const failed = rows.filter((r) => r.verdict === 'FAIL').length
process.stdout.write(`${table}\n`)
process.stdout.write(
  `${rows.filter((r) => r.verdict === 'PASS').length} PASS, ${failed} FAIL, ${rows.filter((r) => r.verdict === 'INFO').length} INFO · ${seconds.toFixed(0)} s · load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')} on ${cpus().length} cores · bench/results.json\n`,
)

const machine = {
  nproc: cpus().length,
  cpu: cpus()[0]?.model,
  memoryBytes: totalmem(),
  freeMemoryBytes: freemem(),
  node: process.version,
  disk: tryRun('df', ['-h', benchDir]),
  loadAverageAtEnd: loadavg(),
}
writeFileSync(
  join(repoRoot, 'bench', 'results.json'),
  `${JSON.stringify(
    { startedAt: new Date(began).toISOString(), seconds, scale, sections: selected, machine, timings, table, rows },
    (_, v) => (typeof v === 'bigint' ? v.toString() : v),
    2,
  )}\n`,
)
// Targets missed on a noisy machine are findings, not errors: the exit code is 1 only when
// a correctness check failed or a section could not finish.
process.exitCode = rows.some((r) => r.verdict === 'FAIL' && r.kind !== 'figure') ? 1 : 0

function tryRun(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim()
  } catch {
    return undefined
  }
}
