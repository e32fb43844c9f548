import { mkdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Knobs of the benchmark, read once from the environment:
 *
 * - `BENCH_SCALE` (default 1): multiplies every size and duration (0.1 for a quick run).
 * - `BENCH_DIR` (default `.tmp/bench` in the repository): where databases live; every
 *   figure and its baseline use this directory, so the same disk.
 * - `BENCH_PG_URL`: an existing PostgreSQL database for section C (else a throwaway
 *   cluster is started with scripts/pg-cluster.mjs and stopped after).
 * - `BENCH_KEEP=1`: keep the database files after each section.
 */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')

const scaleText = process.env.BENCH_SCALE ?? '1'
export const scale = Number(scaleText)
if (!Number.isFinite(scale) || scale <= 0) throw new Error(`BENCH_SCALE must be a positive number, got ${scaleText}`)

export const benchDir = resolve(process.env.BENCH_DIR ?? join(repoRoot, '.tmp', 'bench'))
mkdirSync(benchDir, { recursive: true })

export const keepFiles = process.env.BENCH_KEEP === '1'
export const pgUrlGiven = process.env.BENCH_PG_URL

/** A size scaled, never below `min`. */
export function sized(n: number, min = 1): number {
  return Math.max(min, Math.round(n * scale))
}

/** A duration scaled, never below `minMs`. */
export function timed(ms: number, minMs = 200): number {
  return Math.max(minMs, Math.round(ms * scale))
}
