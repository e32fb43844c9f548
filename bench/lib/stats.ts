/** Small statistics helpers: percentiles over latency samples in milliseconds. */

export type LatencySummary = { count: number; p50Ms: number; p99Ms: number; maxMs: number; meanMs: number }

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank] as number
}

export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort()
  let sum = 0
  for (const x of sorted) sum += x
  const list = Array.from(sorted)
  return {
    count: list.length,
    p50Ms: percentile(list, 50),
    p99Ms: percentile(list, 99),
    maxMs: list.length ? (list[list.length - 1] as number) : Number.NaN,
    meanMs: list.length ? sum / list.length : Number.NaN,
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Milliseconds since the epoch with sub-millisecond precision, comparable across processes. */
export const wallNow = () => performance.timeOrigin + performance.now()

/** Waits until the wall clock reaches `at` (ms since the epoch). */
export async function waitUntil(at: number): Promise<void> {
  const left = at - wallNow()
  if (left > 0) await sleep(left)
}
