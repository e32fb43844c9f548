import Database from 'better-sqlite3'
import { pathToFileURL } from 'node:url'
import { join } from 'node:path'
import { createGuard, type Guard } from '../../src/index.ts'
import { repoRoot, sized } from '../lib/config.ts'
import { removeSqlite, sqlitePath } from '../lib/files.ts'
import { checkLedger } from '../lib/ledger-check.ts'
import { type Row, compare, correctness, ms, rate } from '../lib/report.ts'
import { summarize } from '../lib/stats.ts'

/**
 * E. The peer: `SpendTracker` of @coinbase/cdp-sdk's x402 guardrails, an in-memory
 * array ledger. Its cap check is `total({ asset })` (a sum over every entry) followed by
 * `record(…)`, as the guardrails' before-payment hook does. Beside it, spendguard's durable
 * `check()` + `record()` on a budget holding as many entries; and spendguard's `check()`
 * beside a raw better-sqlite3 primary-key read of the budget row.
 */
type SpendTrackerLike = {
  record(input: { atomicAmount: bigint; asset: string; network: string; payTo: string }): Promise<unknown>
  total(query: { asset: string; since?: number }): Promise<bigint>
}
type SpendTrackerClass = new (options?: { maxLedgerEntries?: number }) => SpendTrackerLike

/**
 * The package's x402 entry point also loads optional peers (@x402/extensions) that are not
 * installed here, so the class is loaded from its own module file.
 */
async function loadSpendTracker(): Promise<SpendTrackerClass> {
  const file = join(repoRoot, 'node_modules', '@coinbase', 'cdp-sdk', '_esm', 'x402', 'guardrails', 'spend-tracker.js')
  const module = (await import(pathToFileURL(file).href)) as { SpendTracker: SpendTrackerClass }
  return module.SpendTracker
}

const asset = '0x833589fcd6edb6e08f4c7c32d4f71b54bda02913'
const network = 'eip155:8453'
const payTo = '0x000000000000000000000000000000000000beef'
const amount = 1_000n
const cap = 10n ** 30n

export async function sectionE(): Promise<Row[]> {
  const SpendTracker = await loadSpendTracker()
  const sizes = [1_000, 10_000].map((n) => sized(n, 100))
  const payments = sized(400, 40)
  const checks = sized(5_000, 500)
  const rows: Row[] = []
  const problems: string[] = []
  const path = sqlitePath('e-peer')
  const guard = await createGuard({ db: `sqlite:${path}`, expirySweepMs: 3_600_000 })
  let expectedEntries = 0
  try {
    // Untimed warm-up of both code paths.
    const warmPeer = new SpendTracker({ maxLedgerEntries: 1_000 })
    await guard.allocate('e-warm', { total: cap, asset: 'USDC', decimals: 6 })
    for (let i = 0; i < 200; i++) {
      await warmPeer.total({ asset })
      await warmPeer.record({ atomicAmount: amount, asset, network, payTo })
      await guard.check('e-warm', amount)
      await guard.record('e-warm', { amount })
    }
    expectedEntries += 200
    // Both ledgers of each size are filled first; then rounds alternate the sizes, since
    // the disk's fsync time swings and spendguard's figures are durable commits.
    const ledgers = []
    for (const size of sizes) {
      // The peer's default ceiling is 10,000 entries; raised here to fit.
      const peer = new SpendTracker({ maxLedgerEntries: size + payments + 1 })
      for (let i = 0; i < size; i++) await peer.record({ atomicAmount: amount, asset, network, payTo })
      const taskId = `e-${size}`
      await guard.allocate(taskId, { total: cap, asset: 'USDC', decimals: 6 })
      await prefill(guard, taskId, size)
      expectedEntries += size + payments
      ledgers.push({ size, peer, taskId, peerLatencies: [] as number[], sgLatencies: [] as number[], peerMs: 0, sgMs: 0 })
    }
    const rounds = 4
    const perRound = Math.ceil(payments / rounds)
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ledgers : [...ledgers].reverse()
      for (const l of order) {
        const n = Math.min(perRound, payments - round * perRound)
        const p0 = performance.now()
        for (let i = 0; i < n; i++) {
          const t = performance.now()
          const total = await l.peer.total({ asset })
          if (total + amount > cap) throw new Error('peer cap reached')
          await l.peer.record({ atomicAmount: amount, asset, network, payTo })
          l.peerLatencies.push(performance.now() - t)
        }
        l.peerMs += performance.now() - p0
        const s0 = performance.now()
        for (let i = 0; i < n; i++) {
          const t = performance.now()
          const verdict = await guard.check(l.taskId, amount)
          if (!verdict.allowed) throw new Error(`spendguard denied: ${verdict.reason}`)
          await guard.record(l.taskId, { amount })
          l.sgLatencies.push(performance.now() - t)
        }
        l.sgMs += performance.now() - s0
      }
    }
    for (const l of ledgers) {
      if ((await l.peer.total({ asset })) !== BigInt(l.size + payments) * amount) problems.push(`peer total wrong at ${l.size}`)
      const sg = summarize(l.sgLatencies)
      const pe = summarize(l.peerLatencies)
      rows.push(
        compare({
          section: 'E',
          measure: `cap check + record, ${l.size.toLocaleString('en-US')} entries before: payments/s (p50 ${ms(sg.p50Ms)} vs ${ms(pe.p50Ms)})`,
          value: (payments / l.sgMs) * 1000,
          show: (n) => `${rate(n)} durable`,
          baseline: (payments / l.peerMs) * 1000,
          baselineShow: (n) => rate(n),
          baselineLabel: 'cdp-sdk SpendTracker, in memory',
          detail: { size: l.size, payments, spendguard: sg, peer: pe },
        }),
      )
    }

    // check() beside a raw primary-key read of the same row, on the same file.
    const taskId = `e-${sizes[sizes.length - 1]}`
    const raw = new Database(path, { readonly: true })
    const select = raw.prepare('select * from budgets where task_id = ?')
    const rawLatencies: number[] = []
    const checkLatencies: number[] = []
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < checks; i++) {
        const t = performance.now()
        if (!select.get(taskId)) throw new Error('raw read found no budget')
        rawLatencies.push(performance.now() - t)
      }
      for (let i = 0; i < checks; i++) {
        const t = performance.now()
        await guard.check(taskId, amount)
        checkLatencies.push(performance.now() - t)
      }
    }
    raw.close()
    const c = summarize(checkLatencies)
    const r = summarize(rawLatencies)
    rows.push(
      compare({
        section: 'E',
        measure: `check() latency p50 (p99 ${ms(c.p99Ms)} vs ${ms(r.p99Ms)})`,
        value: c.p50Ms,
        show: ms,
        baseline: r.p50Ms,
        baselineLabel: 'raw better-sqlite3 PK select',
        detail: { check: c, raw: r, checks: checks * 2 },
      }),
    )

    const check = await checkLedger(guard, { spent: BigInt(expectedEntries) * amount, reserved: 0n, entries: expectedEntries, openHolds: 0 })
    problems.push(...check.problems)
    rows.push(
      correctness(
        'E',
        problems.length === 0,
        problems.length === 0 ? `ok: ${expectedEntries} entries, spent ${check.observed.spent}` : problems.slice(0, 3).join('; '),
        { problems, observed: check.observed },
      ),
    )
  } finally {
    await guard.destroy()
    removeSqlite(path)
  }
  return rows
}

/** Fills a budget with `count` entries through the guard (concurrent callers, group commit). */
async function prefill(guard: Guard, taskId: string, count: number): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: 100 }, async () => {
      while (next < count) {
        next++
        await guard.record(taskId, { amount })
      }
    }),
  )
}
