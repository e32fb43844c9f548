/**
 * A guard process for the multi-process tests. It reads its job from argv[2] (JSON) and
 * writes one JSON line per acknowledged operation to stdout, only after the operation's
 * promise resolved (so a line means: durable).
 *
 * Jobs:
 * - hammer: `callers` concurrent loops of random reserve / capture / release / record
 *   on one budget, `opsPerCaller` each.
 * - settle: every caller races capture and release on each of `holds`.
 * - records: `callers` concurrent loops recording entries with ids `${prefix}-${n}` until killed.
 */
import { writeSync } from 'node:fs'
import { createGuard, createTracker } from '../../src/index.ts'

type Job =
  | { kind: 'hammer'; db: string; taskId: string; callers: number; opsPerCaller: number; seed: number }
  | { kind: 'settle'; db: string; holds: string[]; callers: number; amount: string }
  | { kind: 'records'; db: string; taskId: string; callers: number; prefix: string }
  | { kind: 'alerts'; db: string; taskId: string; amount: string }
  | { kind: 'open'; db: string; taskId: string }
  | { kind: 'sync'; db: string; rpcUrl: string; chainId: number; hook: `0x${string}`; account: `0x${string}`; token: `0x${string}`; fromBlock: string }

const job = JSON.parse(process.argv[2] as string) as Job
// Refusals a job's callers can meet by design: only the settle race finds holds already
// settled (released, or captured by a racer with another amount: a conflicting retry).
const expected = new Set(
  job.kind === 'settle' ? ['BudgetExceededError', 'HoldNotOpenError', 'IdempotencyConflictError'] : ['BudgetExceededError'],
)

// Synchronous writes: a line that was written survives the process being killed. The pipe
// is non-blocking, so a full pipe (a slow reader) answers EAGAIN: wait a moment and go on.
const pause = new Int32Array(new SharedArrayBuffer(4))
const say = (line: Record<string, unknown>) => {
  const bytes = Buffer.from(`${JSON.stringify(line, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`)
  for (let offset = 0; offset < bytes.length; ) {
    try {
      offset += writeSync(1, bytes, offset)
    } catch (error) {
      if ((error as { code?: string }).code !== 'EAGAIN') throw error
      Atomics.wait(pause, 0, 0, 1)
    }
  }
}

let seed = 'seed' in job ? job.seed : 1
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

const guard = await createGuard({ db: job.db, expirySweepMs: 3_600_000, alerts: { leaseMs: 300 } })
const failure = (op: string, error: unknown) => {
  const name = (error as Error).name
  if (expected.has(name)) say({ op: 'denied', of: op, name })
  else say({ op: 'error', of: op, name, message: String((error as Error).message) })
}

if (job.kind === 'hammer') {
  await Promise.all(
    Array.from({ length: job.callers }, async () => {
      const mine: { id: string; amount: bigint }[] = []
      for (let i = 0; i < job.opsPerCaller; i++) {
        const r = random()
        const amount = BigInt(1 + Math.floor(random() * 20))
        try {
          if (r < 0.4 || mine.length === 0) {
            const hold = await guard.reserve(job.taskId, amount)
            mine.push({ id: hold.id, amount })
            say({ op: 'reserve', hold: hold.id, amount })
          } else if (r < 0.65) {
            const hold = mine.shift() as { id: string; amount: bigint }
            // Sometimes more than the hold (debits remaining), mostly less or equal.
            const captured = random() < 0.2 ? hold.amount + 3n : BigInt(1 + Math.floor(random() * Number(hold.amount)))
            const entry = await guard.capture(hold.id, captured)
            say({ op: 'capture', hold: hold.id, amount: entry.amount })
          } else if (r < 0.8) {
            const hold = mine.shift() as { id: string; amount: bigint }
            await guard.release(hold.id)
            say({ op: 'release', hold: hold.id })
          } else {
            const entry = await guard.record(job.taskId, { amount })
            say({ op: 'record', id: entry.id, amount: entry.amount })
          }
        } catch (error) {
          failure('op', error)
        }
      }
    }),
  )
} else if (job.kind === 'settle') {
  const amount = BigInt(job.amount)
  await Promise.all(
    Array.from({ length: job.callers }, async (_, caller) => {
      for (let i = 0; i < job.holds.length; i++) {
        const hold = job.holds[(i + caller * 7) % job.holds.length] as string
        const capture = (i + caller) % 2 === 0
        try {
          if (capture) {
            const entry = await guard.capture(hold, amount)
            say({ op: 'capture', hold, entry: entry.id, amount: entry.amount })
          } else {
            await guard.release(hold)
            say({ op: 'release', hold })
          }
        } catch (error) {
          failure(capture ? 'capture' : 'release', error)
        }
      }
    }),
  )
} else if (job.kind === 'records') {
  let n = 0
  say({ op: 'ready' })
  await Promise.all(
    Array.from({ length: job.callers }, async () => {
      for (;;) {
        const id = `${job.prefix}-${n++}`
        try {
          await guard.record(job.taskId, { id, amount: 1n })
          say({ op: 'record', id })
        } catch (error) {
          failure('record', error)
          return
        }
      }
    }),
  )
} else if (job.kind === 'sync') {
  // Backfill in small pages, one committed transaction each, saying so after each commit.
  const tracker = createTracker({
    guard,
    rpcUrl: job.rpcUrl,
    chainId: job.chainId,
    hook: job.hook,
    fromBlock: BigInt(job.fromBlock),
    reorgDepthMax: 4,
    pageBlocks: { initialBlocks: 2, maxBlocks: 2 },
    onProgress: (p) => say({ op: 'page', cursor: p.cursor, logs: p.logs }),
  })
  await tracker.bind({ account: job.account, taskId: 'agent', token: job.token })
  await tracker.syncOnce()
} else if (job.kind === 'open') {
  // Opened at the same moment as others on a fresh database: migrations race.
  const budget = await guard.allocate(job.taskId, { total: 100n, asset: 'USDC', decimals: 6 })
  await guard.record(job.taskId, { amount: 1n })
  say({ op: 'opened', total: budget.total })
} else if (job.kind === 'alerts') {
  // Commit a change that raises alerts, say so, then hang until killed: nobody delivers.
  guard.on('alert', () => new Promise(() => {}))
  await guard.record(job.taskId, { amount: BigInt(job.amount) })
  say({ op: 'committed' })
  await new Promise(() => {})
}

await guard.destroy()
say({ op: 'done' })
