import type { Guard } from '../../src/index.ts'
import { wallNow, waitUntil } from './stats.ts'

/**
 * Callers that each loop reserve → capture through a guard. Two ways to run:
 *
 * - a window: callers start at `startAt`, and only pairs that complete inside
 *   [countFrom, countTo] count toward the rate and the latencies (the time before is
 *   warm-up); callers stop starting pairs at countTo;
 * - fixed: each caller runs `pairsPerCaller` pairs from `startAt`.
 *
 * Every acknowledged operation is counted, in or out of the window, so the totals can be
 * checked against the database afterwards.
 */
export type PairsMode =
  | { kind: 'window'; startAt: number; countFrom: number; countTo: number }
  | { kind: 'fixed'; startAt: number; pairsPerCaller: number }

export type BudgetPick = { kind: 'own'; prefix: string } | { kind: 'one'; taskId: string } | { kind: 'random'; prefix: string; count: number }

export type PairsJob = {
  callers: number
  /** Caller i's budget: `${prefix}${i}` (own), one shared budget, or a random one per pair. */
  budgets: BudgetPick
  reserveAmount: bigint
  captureAmount: bigint
  mode: PairsMode
}

export type PairsResult = {
  /** Pairs completed in the window (all pairs in fixed mode). */
  pairs: number
  /** Window length, or first start to last end in fixed mode. */
  elapsedMs: number
  startedAt: number
  endedAt: number
  /** Latency of each operation (reserve or capture) counted, in ms. */
  opLatenciesMs: number[]
  /** Latency of each pair counted (reserve start to capture end), in ms. */
  pairLatenciesMs: number[]
  /** Every acknowledged operation, window or not. */
  reservesOk: number
  capturesOk: number
  errors: number
  firstError?: string | undefined
}

export function budgetFor(pick: BudgetPick, caller: number): () => string {
  if (pick.kind === 'own') {
    const id = `${pick.prefix}${caller}`
    return () => id
  }
  if (pick.kind === 'one') return () => pick.taskId
  return () => `${pick.prefix}${Math.floor(Math.random() * pick.count)}`
}

/** Runs the callers of `job` through `pair`, a function doing one reserve → capture. */
export async function runPairs(
  job: Pick<PairsJob, 'callers' | 'budgets' | 'mode'>,
  pair: (taskId: string, onReserved: () => void, caller: number) => Promise<void>,
): Promise<PairsResult> {
  const mode = job.mode
  const result: PairsResult = {
    pairs: 0,
    elapsedMs: 0,
    startedAt: 0,
    endedAt: 0,
    opLatenciesMs: [],
    pairLatenciesMs: [],
    reservesOk: 0,
    capturesOk: 0,
    errors: 0,
  }
  await waitUntil(mode.startAt)
  result.startedAt = wallNow()
  const caller = async (index: number) => {
    const next = budgetFor(job.budgets, index)
    for (let i = 0; ; i++) {
      if (mode.kind === 'fixed' ? i >= mode.pairsPerCaller : wallNow() >= mode.countTo) return
      const t0 = wallNow()
      let t1 = t0
      try {
        await pair(
          next(),
          () => {
            t1 = wallNow()
            result.reservesOk++
          },
          index,
        )
        result.capturesOk++
      } catch (error) {
        result.errors++
        result.firstError ??= String((error as Error)?.stack ?? error)
        continue
      }
      const t2 = wallNow()
      if (mode.kind === 'fixed' || (t2 >= mode.countFrom && t2 <= mode.countTo)) {
        result.pairs++
        result.opLatenciesMs.push(t1 - t0, t2 - t1)
        result.pairLatenciesMs.push(t2 - t0)
      }
    }
  }
  await Promise.all(Array.from({ length: job.callers }, (_, i) => caller(i)))
  result.endedAt = wallNow()
  result.elapsedMs = mode.kind === 'fixed' ? result.endedAt - result.startedAt : mode.countTo - mode.countFrom
  return result
}

/** One reserve → capture through the guard. */
export function guardPair(guard: Guard, reserveAmount: bigint, captureAmount: bigint) {
  return async (taskId: string, onReserved: () => void) => {
    const hold = await guard.reserve(taskId, reserveAmount)
    onReserved()
    await guard.capture(hold.id, captureAmount)
  }
}

/** Combines results of several processes (or runs) measured over the same window. */
export function mergePairs(results: PairsResult[], mode: PairsMode['kind'], windowMs?: number): PairsResult {
  const startedAt = Math.min(...results.map((r) => r.startedAt))
  const endedAt = Math.max(...results.map((r) => r.endedAt))
  return {
    pairs: results.reduce((s, r) => s + r.pairs, 0),
    // Fixed: first start to last end. Window: the window (processes share one), or the
    // sum of windows given for rounds run one after another.
    elapsedMs: mode === 'fixed' ? endedAt - startedAt : (windowMs ?? Math.max(...results.map((r) => r.elapsedMs))),
    startedAt,
    endedAt,
    opLatenciesMs: results.flatMap((r) => r.opLatenciesMs),
    pairLatenciesMs: results.flatMap((r) => r.pairLatenciesMs),
    reservesOk: results.reduce((s, r) => s + r.reservesOk, 0),
    capturesOk: results.reduce((s, r) => s + r.capturesOk, 0),
    errors: results.reduce((s, r) => s + r.errors, 0),
    firstError: results.find((r) => r.firstError)?.firstError,
  }
}

/** A job as it travels to a worker process (amounts as strings). */
export function toWire(job: PairsJob): Record<string, unknown> {
  return { ...job, reserveAmount: job.reserveAmount.toString(), captureAmount: job.captureAmount.toString() }
}
