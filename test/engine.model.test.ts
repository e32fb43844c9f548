import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import type { Guard, Hold } from '../src/index.ts'
import { manualClock, useGuards } from './helpers/guard.ts'
import { storeTargets } from './helpers/stores.ts'

/**
 * Model-based test: random sequences of operations (idempotent retries and expiries
 * included) run against the engine and against a plain in-memory model of SPEC §2.
 * After every step the budget equals the model's, the invariant holds, and at the end
 * the journal replays to the stored state.
 */
type ModelHold = { id: string; amount: bigint; status: 'open' | 'captured' | 'released' | 'expired'; expiresAt: number | null; key: string | null; ttlMs: number | null; captured?: bigint }
type Model = { total: bigint; spent: bigint; reserved: bigint; closed: boolean; hardLimit: boolean; holds: ModelHold[]; records: Map<string, bigint> }

type Op =
  | { kind: 'reserve'; amount: bigint; key: string | null; ttlMs: number | null }
  | { kind: 'capture'; hold: number; amount: bigint }
  | { kind: 'release'; hold: number }
  | { kind: 'record'; amount: bigint; id: string | null }
  | { kind: 'advance'; ms: number }
  | { kind: 'close' }

const amount = fc.oneof(fc.bigInt({ min: 1n, max: 40n }), fc.bigInt({ min: 1n, max: 2n ** 70n }))
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('reserve' as const), amount, key: fc.option(fc.constantFrom('k1', 'k2', 'k3'), { nil: null }), ttlMs: fc.option(fc.constantFrom(100, 1_000), { nil: null }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('capture' as const), hold: fc.nat(20), amount }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('release' as const), hold: fc.nat(20) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('record' as const), amount, id: fc.option(fc.constantFrom('r1', 'r2'), { nil: null }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(50, 100, 600) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('close' as const) }) },
)

const remainingOf = (m: Model) => {
  const free = m.total - m.spent - m.reserved
  return free > 0n ? free : 0n
}

function expire(m: Model, now: number) {
  if (m.closed) return
  for (const h of m.holds)
    if (h.status === 'open' && h.expiresAt !== null && h.expiresAt <= now) {
      h.status = 'expired'
      m.reserved -= h.amount
    }
}

/** What the model says an operation does: the error name it throws, or 'ok'. */
function step(m: Model, o: Op, now: number, engineHolds: Hold[]): string {
  switch (o.kind) {
    case 'reserve': {
      const prior = o.key === null ? undefined : m.holds.find((h) => h.key === o.key)
      if (prior) return prior.amount === o.amount && prior.ttlMs === o.ttlMs ? 'ok' : 'IdempotencyConflictError'
      expire(m, now)
      if (m.closed) return 'BudgetClosedError'
      if (m.hardLimit && o.amount > remainingOf(m)) return 'BudgetExceededError'
      m.reserved += o.amount
      m.holds.push({ id: '', amount: o.amount, status: 'open', expiresAt: o.ttlMs === null ? null : now + o.ttlMs, key: o.key, ttlMs: o.ttlMs })
      return 'ok'
    }
    case 'capture': {
      const h = m.holds[o.hold % Math.max(1, m.holds.length)]
      if (!h || !engineHolds.length) return 'HoldNotFoundError'
      expire(m, now)
      if (h.status === 'captured') return h.captured === o.amount ? 'ok' : 'IdempotencyConflictError'
      if (h.status !== 'open') return 'HoldNotOpenError'
      const extra = o.amount - h.amount
      if (m.hardLimit && extra > 0n && extra > remainingOf(m)) return 'BudgetExceededError'
      h.status = 'captured'
      h.captured = o.amount
      m.reserved -= h.amount
      m.spent += o.amount
      return 'ok'
    }
    case 'release': {
      const h = m.holds[o.hold % Math.max(1, m.holds.length)]
      if (!h || !engineHolds.length) return 'HoldNotFoundError'
      expire(m, now)
      if (h.status === 'released') return 'ok'
      if (h.status !== 'open') return 'HoldNotOpenError'
      h.status = 'released'
      m.reserved -= h.amount
      return 'ok'
    }
    case 'record': {
      const prior = o.id === null ? undefined : m.records.get(o.id)
      if (prior !== undefined) return prior === o.amount ? 'ok' : 'IdempotencyConflictError'
      expire(m, now)
      if (m.closed) return 'BudgetClosedError'
      if (m.hardLimit && o.amount > remainingOf(m)) return 'BudgetExceededError'
      m.spent += o.amount
      if (o.id !== null) m.records.set(o.id, o.amount)
      return 'ok'
    }
    case 'close': {
      expire(m, now)
      if (!m.closed)
        for (const h of m.holds)
          if (h.status === 'open') {
            h.status = 'released'
            m.reserved -= h.amount
          }
      m.closed = true
      return 'ok'
    }
    case 'advance':
      return 'ok'
  }
}

async function run(guard: Guard, taskId: string, o: Op, holds: Hold[]): Promise<string> {
  try {
    switch (o.kind) {
      case 'reserve': {
        const hold = await guard.reserve(taskId, o.amount, { key: o.key ?? undefined, ttlMs: o.ttlMs ?? undefined })
        if (!holds.some((h) => h.id === hold.id)) holds.push(hold)
        return 'ok'
      }
      case 'capture': {
        const h = holds[o.hold % Math.max(1, holds.length)]
        await guard.capture(h ? h.id : 'hold_missing', o.amount)
        return 'ok'
      }
      case 'release': {
        const h = holds[o.hold % Math.max(1, holds.length)]
        await guard.release(h ? h.id : 'hold_missing')
        return 'ok'
      }
      case 'record':
        await guard.record(taskId, { amount: o.amount, id: o.id === null ? undefined : `${taskId}-${o.id}` })
        return 'ok'
      case 'close':
        await guard.close(taskId)
        return 'ok'
      case 'advance':
        return 'ok'
    }
  } catch (error) {
    return (error as Error).name
  }
}

describe.each(storeTargets)('model on $name', (target) => {
  const guards = useGuards(target)

  test('behavior: random operation sequences agree with the model', async () => {
    const clock = manualClock()
    const guard = await guards.guard({ clock, expirySweepMs: 3_600_000 })
    let runs = 0
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), fc.boolean(), fc.bigInt({ min: 0n, max: 2n ** 72n }), async (ops, hardLimit, total) => {
        const taskId = `task-${runs++}`
        await guard.allocate(taskId, { total, asset: 'USDC', decimals: 6, hardLimit })
        const model: Model = { total, spent: 0n, reserved: 0n, closed: false, hardLimit, holds: [], records: new Map() }
        const holds: Hold[] = []
        for (const o of ops) {
          if (o.kind === 'advance') clock.advance(o.ms)
          const expected = step(model, o, clock(), holds)
          const actual = await run(guard, taskId, o, holds)
          expect(actual, JSON.stringify(o, (_, v) => (typeof v === 'bigint' ? `${v}` : v))).toBe(expected)
          // Reads show the budget as of now: holds past their time are expired.
          expire(model, clock())
          const b = await guard.get(taskId)
          expect({ spent: b.spent, reserved: b.reserved, closed: b.status === 'closed' }).toEqual({
            spent: model.spent,
            reserved: model.reserved,
            closed: model.closed,
          })
          expect(b.spent + b.reserved + b.remaining - b.overspent).toBe(b.total)
          if (hardLimit) expect(b.spent + b.reserved <= b.total).toBe(true)
        }
      }),
      { numRuns: target.name === 'sqlite' ? 200 : 80 },
    )
    const result = await guard.verify()
    expect(result).toEqual({ ok: true, problems: [] })
  })
})
