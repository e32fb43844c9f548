/**
 * A benchmark child process. It reads one JSON command per line on stdin and answers
 * one JSON line per command on stdout (bench/lib/workers.ts is the other side). Amounts
 * travel as strings.
 *
 * - ping
 * - guard-open { db } / guard-pairs { job } / guard-close: a guard in this process, and
 *   callers looping reserve → capture through it (sections B, C)
 * - pg-open { url, connections } / pg-pairs { job } / pg-close: the raw pg baseline (C)
 * - ingest { … }: the tracker backfilling a range into a fresh SQLite ledger, reporting
 *   this process's peak RSS (section F; run once per fresh process)
 */
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { createGuard, createTracker, type Guard } from '../src/index.ts'
import { type PairsJob, guardPair, runPairs } from './lib/pairs.ts'
import { type RawPg, openRawPg } from './lib/raw-pg.ts'

type WireJob = Omit<PairsJob, 'reserveAmount' | 'captureAmount'> & { reserveAmount: string; captureAmount: string }
const fromWire = (job: WireJob): PairsJob => ({
  ...job,
  reserveAmount: BigInt(job.reserveAmount),
  captureAmount: BigInt(job.captureAmount),
})

let guard: Guard | undefined
let rawPg: RawPg | undefined

type Command = Record<string, unknown> & { cmd: string }

async function handle(c: Command): Promise<unknown> {
  switch (c.cmd) {
    case 'ping':
      return { pid: process.pid }
    case 'guard-open':
      guard = await createGuard({ db: c.db as string, expirySweepMs: 3_600_000 })
      return {}
    case 'guard-pairs': {
      if (!guard) throw new Error('no guard open')
      const job = fromWire(c.job as WireJob)
      const result = await runPairs(job, guardPair(guard, job.reserveAmount, job.captureAmount))
      return { ...result, writer: guard.internal.writerStats() }
    }
    case 'guard-close':
      await guard?.destroy()
      guard = undefined
      return {}
    case 'pg-open':
      rawPg = await openRawPg({ url: c.url as string, connections: c.connections as number })
      return {}
    case 'pg-pairs': {
      if (!rawPg) throw new Error('no pg baseline open')
      return rawPg.run(fromWire(c.job as WireJob))
    }
    case 'pg-close':
      await rawPg?.close()
      rawPg = undefined
      return {}
    case 'ingest':
      return ingest(c as unknown as IngestCommand)
    default:
      throw new Error(`unknown command ${c.cmd}`)
  }
}

type IngestCommand = {
  db: string
  rpcUrl: string
  chainId: number
  hook: `0x${string}`
  account: `0x${string}`
  token: `0x${string}`
  fromBlock: string
  sampleMs: number
}

/** Section F: one backfill in this process; RSS sampled while it runs, and the kernel's peak. */
async function ingest(c: IngestCommand) {
  const rssStart = process.memoryUsage.rss()
  let rssPeakSampled = rssStart
  let heapPeak = process.memoryUsage().heapUsed
  const sampler = setInterval(() => {
    rssPeakSampled = Math.max(rssPeakSampled, process.memoryUsage.rss())
    heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
  }, c.sampleMs)
  const t0 = performance.now()
  const g = await createGuard({ db: c.db, expirySweepMs: 3_600_000 })
  await g.allocate('agent', { total: 10n ** 30n, asset: 'tUSD', decimals: 6 })
  const tracker = createTracker({
    guard: g,
    rpcUrl: c.rpcUrl,
    chainId: c.chainId,
    hook: c.hook,
    fromBlock: BigInt(c.fromBlock),
    reorgDepthMax: 4,
    confirmations: 4,
  })
  await tracker.bind({ account: c.account, taskId: 'agent', token: c.token })
  const rssReady = process.memoryUsage.rss()
  const result = await tracker.syncOnce()
  const elapsedMs = performance.now() - t0
  clearInterval(sampler)
  rssPeakSampled = Math.max(rssPeakSampled, process.memoryUsage.rss())
  const budget = await g.get('agent')
  await g.destroy()
  // After the peak is taken: what stays live once everything is collected (needs --expose-gc).
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  const heapAfterGc = gc ? process.memoryUsage().heapUsed : undefined
  return {
    heapAfterGc,
    logs: result.logs,
    applied: result.applied,
    elapsedMs,
    spent: budget.spent.toString(),
    entryCount: budget.entryCount,
    rssStart,
    rssReady,
    rssPeakSampled,
    heapPeak,
    peakRssBytes: highWaterRss() ?? rssPeakSampled,
    // getrusage's maxRSS is not used as the figure: on Linux it carries over the parent's
    // RSS through fork and exec, so a child spawned by a large parent reports the parent's.
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  }
}

/** Linux: the RSS high-water mark of this process image (VmHWM), else undefined. */
function highWaterRss(): number | undefined {
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]
    return kb === undefined ? undefined : Number(kb) * 1024
  } catch {
    return undefined
  }
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  const command = JSON.parse(line) as Command
  let answer: unknown
  try {
    answer = { ok: true, result: await handle(command) }
  } catch (error) {
    answer = { ok: false, error: String((error as Error)?.stack ?? error) }
  }
  process.stdout.write(`${JSON.stringify(answer, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`)
}
await guard?.destroy()
await rawPg?.close()
