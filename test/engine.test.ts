import { existsSync } from 'node:fs'
import Database from 'better-sqlite3'
import pg from 'pg'
import { describe, expect, test, vi } from 'vitest'
import {
  BudgetClosedError,
  BudgetExceededError,
  BudgetExistsError,
  BudgetNotFoundError,
  GuardDestroyedError,
  HoldNotFoundError,
  HoldNotOpenError,
  IdempotencyConflictError,
  InvalidAmountError,
  InvalidArgumentError,
  PaymentUnsettledError,
  RiskDeniedError,
  createGuard,
  type RiskContext,
  type AlertEvent,
  type Hold,
} from '../src/index.ts'
import * as rules from '../src/engine/rules.ts'
import { manualClock, useGuards } from './helpers/guard.ts'
import { storeTargets } from './helpers/stores.ts'

const USDC = { asset: 'USDC', decimals: 6 } as const
const max = 2n ** 256n - 1n

describe.each(storeTargets)('engine on $name', (target) => {
  const guards = useGuards(target)

  test('default', async () => {
    const guard = await guards.guard()
    const budget = await guard.allocate('t1', { total: 10_000_000n, ...USDC })
    expect(budget).toMatchObject({
      taskId: 't1',
      asset: 'USDC',
      decimals: 6,
      total: 10_000_000n,
      spent: 0n,
      reserved: 0n,
      remaining: 10_000_000n,
      overspent: 0n,
      status: 'active',
      progress: 0,
      thresholds: [0.5, 0.8, 0.95],
      hardLimit: true,
      entryCount: 0,
      openHolds: 0,
    })
    const hold = await guard.reserve('t1', 4_000_000n)
    expect(hold).toMatchObject({ taskId: 't1', amount: 4_000_000n, status: 'open' })
    expect(hold.ref).toMatch(/^0x[0-9a-f]{64}$/)
    expect(await guard.get('t1')).toMatchObject({ reserved: 4_000_000n, remaining: 6_000_000n, openHolds: 1 })
    const entry = await guard.capture(hold.id, 3_000_000n, { peer: 'api.example', tool: 'search' })
    expect(entry).toMatchObject({ taskId: 't1', holdId: hold.id, amount: 3_000_000n, peer: 'api.example', source: 'offchain' })
    expect(await guard.get('t1')).toMatchObject({ spent: 3_000_000n, reserved: 0n, remaining: 7_000_000n, entryCount: 1 })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  describe('allocate', () => {
    test('behavior: same parameters return the existing budget, different ones throw', async () => {
      const guard = await guards.guard()
      const first = await guard.allocate('t1', { total: 5n, ...USDC, metadata: { a: 1, b: [2] } })
      const again = await guard.allocate('t1', { total: 5n, ...USDC, metadata: { b: [2], a: 1 } })
      expect(again).toEqual(first)
      const error = await guard.allocate('t1', { total: 6n, ...USDC }).catch((e) => e)
      expect(error).toBeInstanceOf(BudgetExistsError)
      expect(error).toMatchObject({ name: 'BudgetExistsError', code: 'BUDGET_EXISTS', taskId: 't1' })
      expect(error.differences.join()).toContain('total: was 5, now 6')
      expect((await guard.journal()).length).toBe(1)
    })

    test('behavior: a total of 0 is exhausted and refuses any spend', async () => {
      const guard = await guards.guard()
      expect((await guard.allocate('zero', { total: 0n, ...USDC })).status).toBe('exhausted')
      expect(await guard.check('zero', 1n)).toEqual({ allowed: false, reason: 'exhausted', remaining: 0n })
      await expect(guard.reserve('zero', 1n)).rejects.toBeInstanceOf(BudgetExceededError)
    })

    test('behavior: bad parameters are refused and change nothing', async () => {
      const guard = await guards.guard()
      for (const total of [-1n, max + 1n, 5, '5', null, 1.5])
        await expect(guard.allocate('t', { total: total as bigint, ...USDC })).rejects.toBeInstanceOf(InvalidAmountError)
      await expect(guard.allocate('', { total: 1n, ...USDC })).rejects.toBeInstanceOf(InvalidArgumentError)
      await expect(guard.allocate('t', { total: 1n, asset: '', decimals: 6 })).rejects.toBeInstanceOf(InvalidArgumentError)
      await expect(guard.allocate('t', { total: 1n, asset: 'USDC', decimals: 6.5 })).rejects.toBeInstanceOf(
        InvalidArgumentError,
      )
      await expect(guard.allocate('t', { total: 1n, ...USDC, thresholds: [1.5] })).rejects.toBeInstanceOf(
        InvalidArgumentError,
      )
      await expect(guard.allocate('t', { total: 1n, ...USDC, hardLimit: 'yes' as never })).rejects.toBeInstanceOf(
        InvalidArgumentError,
      )
      expect(await guard.list()).toEqual([])
      expect(await guard.journal()).toEqual([])
    })
  })

  describe('guard', () => {
    test('behavior: bad guard parameters are refused before a store is opened', async () => {
      const url = await guards.url()
      const bad: Record<string, unknown>[] = [
        { batchMax: 0 },
        { batchMax: -1 },
        { batchMax: Number.NaN },
        { expirySweepMs: Number.POSITIVE_INFINITY },
        { expirySweepMs: 0 },
        { lostCommitWaitMs: 0 },
        { lostCommitWaitMs: 1.5 },
        { clock: 5 },
        { clock: { now: 'x' } },
        { alerts: { concurrency: 0 } },
        { alerts: { leaseMs: -5 } },
        { alerts: 'fast' },
        { onHandlerError: 'log' },
      ]
      for (const parameters of bad)
        await expect(createGuard({ db: url, ...parameters }), JSON.stringify(parameters)).rejects.toBeInstanceOf(InvalidArgumentError)
      if (url.startsWith('sqlite:')) expect(existsSync(url.slice('sqlite:'.length))).toBe(false)
    })

    test('behavior: a destroyed guard refuses every call and leaves no connection open', async () => {
      const url = await guards.url()
      const guard = await createGuard({ db: url })
      await guard.allocate('t1', { total: 10n, ...USDC })
      await guard.get('t1')
      await guard.destroy()
      await guard.destroy()
      const calls = [
        () => guard.get('t1'),
        () => guard.check('t1', 1n),
        () => guard.list(),
        () => guard.record('t1', { amount: 1n }),
        // The settlements spendguard's adapters write are refused alike, not sent to a closed store.
        () => guard.internal.settleCapture('hold_1', 1n),
        () => guard.internal.settleRelease('hold_1'),
        () => guard.internal.recordFact('t1', { amount: 1n }),
      ]
      for (const call of calls) await expect(call()).rejects.toBeInstanceOf(GuardDestroyedError)
      expect(() => guard.on('alert', () => {})).toThrow(GuardDestroyedError)
      // SQLite removes the WAL file when the last connection to the database closes.
      if (url.startsWith('sqlite:')) expect(existsSync(`${url.slice('sqlite:'.length)}-wal`)).toBe(false)
    })

    test('behavior: destroy() lets what was submitted finish: alerts it raised reach handlers that read the guard, due holds expire', async () => {
      const url = await guards.url()
      const clock = manualClock()
      const handlerErrors: unknown[] = []
      const guard = await createGuard({ db: url, clock, expirySweepMs: 3_600_000, onHandlerError: (e) => void handlerErrors.push(e) })
      await guard.allocate('t1', { total: 100n, ...USDC })
      await guard.allocate('t2', { total: 100n, ...USDC })
      await guard.reserve('t2', 10n, { ttlMs: 1000 })
      const seen: bigint[] = []
      guard.on('alert', async () => void seen.push((await guard.get('t1')).spent))
      const recorded = guard.record('t1', { amount: 60n })
      const early = guard.expireHolds()
      clock.advance(1000)
      const late = guard.expireHolds()
      await guard.destroy()
      expect((await recorded).amount).toBe(60n)
      expect(await early).toBe(0)
      expect(await late).toBe(1)
      expect(seen).toEqual([60n])
      expect(handlerErrors).toEqual([])
      const again = await createGuard({ db: url, clock })
      try {
        expect((await again.holds('t2'))[0]?.status).toBe('expired')
      } finally {
        await again.destroy()
      }
    })

    test('behavior: destroy() waits for payments whose function is running and records what they paid, refusing new writes meanwhile', async () => {
      const url = await guards.url()
      const guard = await createGuard({ db: url })
      await guard.allocate('t1', { total: 100n, ...USDC })
      // Two payments are paying when the process shuts down: one settles, one fails.
      const started: Hold[] = []
      const gates: { settle(value: { settled: bigint }): void; fail(error: Error): void }[] = []
      const paying = () =>
        guard.pay('t1', 30n, ({ hold }) => {
          started.push(hold)
          return new Promise<{ settled: bigint }>((resolve, reject) => void gates.push({ settle: resolve, fail: reject }))
        })
      const settles = paying()
      const fails = paying()
      while (started.length < 2) await new Promise((resolve) => setTimeout(resolve, 5))
      let destroyed = false
      const destroying = guard.destroy().then(() => {
        destroyed = true
      })
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(destroyed).toBe(false)
      // Meanwhile nothing new is written, a payment that has not begun included; reads answer.
      await expect(guard.record('t1', { amount: 1n })).rejects.toBeInstanceOf(GuardDestroyedError)
      await expect(guard.reserve('t1', 1n)).rejects.toBeInstanceOf(GuardDestroyedError)
      const unstarted = vi.fn(async () => ({ settled: 1n }))
      await expect(guard.pay('t1', 1n, unstarted)).rejects.toBeInstanceOf(GuardDestroyedError)
      expect(unstarted).not.toHaveBeenCalled()
      expect(await guard.get('t1')).toMatchObject({ spent: 0n, reserved: 60n, openHolds: 2 })
      const refused = new Error('provider said no')
      ;(gates[0] as (typeof gates)[0]).settle({ settled: 25n })
      ;(gates[1] as (typeof gates)[0]).fail(refused)
      expect(await settles).toMatchObject({ amount: 25n, holdId: (started[0] as Hold).id })
      await expect(fails).rejects.toBe(refused)
      await destroying
      expect(destroyed).toBe(true)
      const again = await createGuard({ db: url })
      try {
        expect(await again.get('t1')).toMatchObject({ spent: 25n, reserved: 0n, openHolds: 0, entryCount: 1 })
        expect((await again.holds('t1')).map((h) => h.status).sort()).toEqual(['captured', 'released'])
        expect(await again.verify()).toEqual({ ok: true, problems: [] })
      } finally {
        await again.destroy()
      }
    })

    test('behavior: metadata is stored as JSON writes it, so a retry with other dates is a conflict', async () => {
      const guard = await guards.guard()
      const metadata = { deadline: new Date('2026-01-02T03:04:05Z'), source: new URL('https://example.com/job/7') }
      const b = await guard.allocate('t1', { total: 10n, ...USDC, metadata })
      expect(b.metadata).toEqual({ deadline: '2026-01-02T03:04:05.000Z', source: 'https://example.com/job/7' })
      const other = { ...metadata, deadline: new Date('2027-01-01T00:00:00Z') }
      await expect(guard.allocate('t1', { total: 10n, ...USDC, metadata: other })).rejects.toBeInstanceOf(BudgetExistsError)
      await expect(guard.allocate('t1', { total: 10n, ...USDC, metadata: { n: 1n } as never })).rejects.toBeInstanceOf(InvalidArgumentError)
      for (const notAnObject of [new Date(0), new String('abc'), { toJSON: () => [1] }])
        await expect(guard.allocate('t2', { total: 10n, ...USDC, metadata: notAnObject as never })).rejects.toBeInstanceOf(InvalidArgumentError)
    })
  })

  describe('text', () => {
    test('behavior: ids and texts that a store could not keep as given are refused and change nothing', async () => {
      const guard = await guards.guard()
      // PostgreSQL would store both lone surrogates as one replacement character: one budget.
      for (const id of ['agent-\uD800', 'agent-\uDC01x', 'agent\u0000'])
        await expect(guard.allocate(id, { total: 10n, ...USDC })).rejects.toBeInstanceOf(InvalidArgumentError)
      await guard.allocate('agent-😀', { total: 10n, ...USDC })
      for (const bad of ['peer\u0000', 'peer\uD83D'])
        await expect(guard.record('agent-😀', { amount: 1n, peer: bad })).rejects.toBeInstanceOf(InvalidArgumentError)
      await expect(guard.record('agent-😀', { amount: 1n, id: 'inv\uDFFF' })).rejects.toBeInstanceOf(InvalidArgumentError)
      await expect(guard.reserve('agent-😀', 1n, { key: 'k\u0000' })).rejects.toBeInstanceOf(InvalidArgumentError)
      // On-chain entries are keyed chain_<chainId>_<blockHash>_<logIndex>: an off-chain entry under
      // such an id would pass for the on-chain spend, which the tracker would then skip.
      const chainId = `chain_31337_0x${'ab'.repeat(32)}_0`
      await expect(guard.record('agent-😀', { amount: 1n, id: chainId })).rejects.toBeInstanceOf(InvalidArgumentError)
      const hold = await guard.reserve('agent-😀', 1n)
      await expect(guard.capture(hold.id, 1n, { id: chainId })).rejects.toBeInstanceOf(InvalidArgumentError)
      await guard.release(hold.id)
      expect((await guard.list()).map((b) => b.taskId)).toEqual(['agent-😀'])
      expect(await guard.get('agent-😀')).toMatchObject({ spent: 0n, reserved: 0n, entryCount: 0 })
      // Well-formed text of any script round-trips.
      const entry = await guard.record('agent-😀', { amount: 1n, peer: 'api.例え.jp', tool: 'résumé 🔍' })
      expect(entry).toMatchObject({ peer: 'api.例え.jp', tool: 'résumé 🔍' })
      expect(await guard.journal({ taskId: 'agent-😀' })).toHaveLength(4)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })
  })

  describe('text', () => {
    test('behavior: ids and texts made of SQL quotes, backslashes and placeholders are kept exactly as given', async () => {
      const guard = await guards.guard()
      // PostgreSQL's writer sends a transaction's last writes with their values written into
      // the statement text: none of these may end a literal, escape one, or read as a parameter.
      const taskId = `it's a \\'task'\\; drop table budgets; -- $1 $$ E'\\x00'`
      const text = `$2 ' \\ " ; commit; --`
      await guard.allocate(taskId, { total: 100n, ...USDC, metadata: { note: text } })
      const hold = await guard.reserve(taskId, 10n, { key: text })
      await guard.capture(hold.id, 7n, { id: `inv ${text}`, peer: text, tool: text, reason: text })
      await guard.record(taskId, { amount: 5n, id: `rec ${text}`, peer: text })
      expect(await guard.get(taskId)).toMatchObject({ taskId, spent: 12n, reserved: 0n, entryCount: 2, metadata: { note: text } })
      expect((await guard.entries(taskId)).map((e) => [e.id, e.peer])).toEqual([
        [`inv ${text}`, text],
        [`rec ${text}`, text],
      ])
      const journal = await guard.journal({ taskId })
      expect(journal.map((j) => [j.taskId, j.kind])).toEqual([
        [taskId, 'allocate'],
        [taskId, 'reserve'],
        [taskId, 'capture'],
        [taskId, 'record'],
      ])
      expect(journal.map((j) => j.entryId)).toEqual([undefined, undefined, `inv ${text}`, `rec ${text}`])
      expect(await guard.list()).toHaveLength(1)
      // Numbers written in come back as the same doubles, exponents included.
      for (const progress of [1e-7, 0.1 + 0.2, 1 / 3]) {
        await guard.setProgress(taskId, progress)
        expect((await guard.get(taskId)).progress).toBe(progress)
      }
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })
  })

  describe('amounts', () => {
    test('behavior: a soft budget sums past 2^256-1 exactly, and paging past the last seq is refused as bad input', async () => {
      const guard = await guards.guard()
      await guard.allocate('soft', { total: 1n, ...USDC, hardLimit: false })
      for (let i = 0; i < 12; i++) await guard.record('soft', { amount: max })
      const hold = await guard.reserve('soft', max)
      await guard.reserve('soft', max)
      expect(await guard.get('soft')).toMatchObject({ spent: 12n * max, reserved: 2n * max, overspent: 14n * max - 1n })
      await guard.capture(hold.id, max)
      expect(await guard.get('soft')).toMatchObject({ spent: 13n * max, reserved: max })
      const last = (await guard.journal({ taskId: 'soft' })).at(-1)
      expect(last?.after).toEqual({ spent: 13n * max, reserved: max })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
      expect(await guard.journal({ afterSeq: 2n ** 63n - 1n })).toEqual([])
      await expect(guard.journal({ afterSeq: 2n ** 63n })).rejects.toBeInstanceOf(InvalidArgumentError)
    })

    test('behavior: a run of on-chain spends is journaled as its exact sum, past 78 digits', async () => {
      const guard = await guards.guard()
      await guard.allocate('s', { total: 10n, ...USDC })
      // Twelve spends of 2^256-1 (say, unlimited approvals metered by the hook) in one batch.
      const spends = Array.from({ length: 12 }, (_, logIndex) => ({
        taskId: 's',
        hook: '0xhook',
        amount: max,
        ref: `0x${'00'.repeat(32)}` as const,
        to: '0xabc',
        chain: { chainId: 31337, blockNumber: 5n, blockHash: `0x${'ab'.repeat(32)}` as const, txHash: `0x${'cd'.repeat(32)}` as const, logIndex, confirmed: false },
      }))
      expect(await guard.internal.submit((ctx) => rules.applyChainSpends(ctx, 's', spends), 's')).toHaveLength(12)
      expect(await guard.get('s')).toMatchObject({ spent: 12n * max, entryCount: 12 })
      const reconcile = (await guard.journal({ taskId: 's' })).filter((j) => j.kind === 'reconcile')
      expect(reconcile.map((j) => j.amount)).toEqual([12n * max])
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: values above 2^64 and at 2^256-1 round-trip exactly', async () => {
      const guard = await guards.guard()
      const big = 2n ** 64n + 12_345n
      await guard.allocate('huge', { total: max, asset: 'ETH', decimals: 18 })
      const hold = await guard.reserve('huge', big)
      await guard.capture(hold.id, big + 1n)
      await guard.record('huge', { amount: max - (big + 1n) - 7n })
      const budget = await guard.get('huge')
      expect(budget).toMatchObject({ total: max, spent: max - 7n, reserved: 0n, remaining: 7n })
      const entries = await guard.entries('huge')
      expect(entries.map((e) => e.amount)).toEqual([big + 1n, max - (big + 1n) - 7n])
      const journal = await guard.journal({ taskId: 'huge' })
      expect(journal.at(-1)?.after.spent).toBe(max - 7n)
      await guard.allocate('top', { total: max, asset: 'ETH', decimals: 18 })
      const all = await guard.reserve('top', max)
      expect((await guard.holds('top'))[0]?.amount).toBe(max)
      await guard.capture(all.id, max)
      expect(await guard.get('top')).toMatchObject({ spent: max, remaining: 0n, status: 'exhausted' })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: invalid operation amounts are refused and change nothing', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const hold = await guard.reserve('t1', 10n)
      const before = await guard.journal()
      for (const amount of [0n, -1n, max + 1n, 1, 1.5, '1', null, undefined]) {
        const bad = amount as bigint
        for (const call of [
          () => guard.reserve('t1', bad),
          () => guard.record('t1', { amount: bad }),
          () => guard.check('t1', bad),
          () => guard.capture(hold.id, bad),
        ]) {
          const error = await call().catch((e) => e)
          expect(error).toBeInstanceOf(InvalidAmountError)
          expect(error).toMatchObject({ name: 'InvalidAmountError', code: 'INVALID_AMOUNT' })
        }
      }
      expect(await guard.journal()).toEqual(before)
      expect(await guard.get('t1')).toMatchObject({ spent: 0n, reserved: 10n })
    })
  })

  describe('check', () => {
    test('behavior: allowed, exceeded, exhausted, closed', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      expect(await guard.check('t1', 100n)).toEqual({ allowed: true, remaining: 100n })
      expect(await guard.check('t1', 101n)).toEqual({ allowed: false, reason: 'exceeded', remaining: 100n })
      await guard.record('t1', { amount: 100n })
      expect(await guard.check('t1', 1n)).toEqual({ allowed: false, reason: 'exhausted', remaining: 0n })
      await guard.close('t1')
      expect(await guard.check('t1', 1n)).toEqual({ allowed: false, reason: 'closed', remaining: 0n })
      await expect(guard.check('nope', 1n)).rejects.toBeInstanceOf(BudgetNotFoundError)
    })
  })

  describe('reserve and capture', () => {
    test('behavior: denial carries the numbers', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      await guard.reserve('t1', 60n)
      const error = await guard.reserve('t1', 50n).catch((e) => e)
      expect(error).toBeInstanceOf(BudgetExceededError)
      expect(error).toMatchObject({ name: 'BudgetExceededError', code: 'BUDGET_EXCEEDED', taskId: 't1', requested: 50n, remaining: 40n })
      expect(error.message).toContain('requested 50, 40 remaining')
    })

    test('behavior: capturing less releases the rest, more debits remaining', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const a = await guard.reserve('t1', 30n)
      await guard.capture(a.id, 20n)
      expect(await guard.get('t1')).toMatchObject({ spent: 20n, reserved: 0n, remaining: 80n })
      const b = await guard.reserve('t1', 30n)
      await guard.capture(b.id, 50n)
      expect(await guard.get('t1')).toMatchObject({ spent: 70n, reserved: 0n, remaining: 30n })
      const c = await guard.reserve('t1', 10n)
      const error = await guard.capture(c.id, 41n).catch((e) => e)
      expect(error).toBeInstanceOf(BudgetExceededError)
      expect(error).toMatchObject({ requested: 41n, remaining: 30n })
      expect((await guard.holds('t1')).find((h) => h.id === c.id)?.status).toBe('open')
      const entry = await guard.capture(c.id, 30n)
      expect(entry.amount).toBe(30n)
      expect(await guard.get('t1')).toMatchObject({ spent: 100n, reserved: 0n, remaining: 0n, status: 'exhausted' })
    })

    test('behavior: a hold settles once; retries return the first result', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const hold = await guard.reserve('t1', 30n)
      const first = await guard.capture(hold.id, 25n, { peer: 'p' })
      expect(await guard.capture(hold.id, 25n, { peer: 'p' })).toEqual(first)
      // The same hold captured again with other parameters: a conflicting retry, not a new capture.
      const differentAmount = await guard.capture(hold.id, 26n, { peer: 'p' }).catch((e) => e)
      expect(differentAmount).toBeInstanceOf(IdempotencyConflictError)
      expect(differentAmount).toMatchObject({ key: hold.id, code: 'IDEMPOTENCY_CONFLICT', differences: ['amount: was "25", now "26"'] })
      await expect(guard.release(hold.id)).rejects.toBeInstanceOf(HoldNotOpenError)
      const other = await guard.reserve('t1', 10n)
      const released = await guard.release(other.id)
      expect(released.status).toBe('released')
      expect(await guard.release(other.id)).toEqual(released)
      await expect(guard.capture(other.id, 10n)).rejects.toBeInstanceOf(HoldNotOpenError)
      expect(await guard.get('t1')).toMatchObject({ spent: 25n, reserved: 0n, entryCount: 1 })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: reserve keys are idempotent; a reused key with other parameters conflicts', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const hold = await guard.reserve('t1', 30n, { key: 'k1', ttlMs: 60_000 })
      expect(await guard.reserve('t1', 30n, { key: 'k1', ttlMs: 60_000 })).toEqual(hold)
      const conflict = await guard.reserve('t1', 31n, { key: 'k1', ttlMs: 60_000 }).catch((e) => e)
      expect(conflict).toBeInstanceOf(IdempotencyConflictError)
      expect(conflict).toMatchObject({ key: 'k1', code: 'IDEMPOTENCY_CONFLICT' })
      expect(conflict.differences.join()).toContain('amount')
      expect(await guard.get('t1')).toMatchObject({ reserved: 30n, openHolds: 1 })
    })

    test('behavior: retries after a restart return the original results', async () => {
      const url = await guards.url()
      const { createGuard } = await import('../src/index.ts')
      const first = await createGuard({ db: url })
      await first.allocate('t1', { total: 100n, ...USDC })
      const hold = await first.reserve('t1', 30n, { key: 'k1' })
      const entry = await first.record('t1', { id: 'e1', amount: 5n })
      const captured = await first.capture(hold.id, 20n)
      const report = await first.close('t1')
      await first.destroy()

      const second = await createGuard({ db: url })
      expect(await second.allocate('t1', { total: 100n, ...USDC })).toMatchObject({ taskId: 't1', status: 'closed' })
      expect((await second.reserve('t1', 30n, { key: 'k1' })).id).toBe(hold.id)
      expect(await second.record('t1', { id: 'e1', amount: 5n })).toEqual(entry)
      expect(await second.capture(hold.id, 20n)).toEqual(captured)
      expect(await second.close('t1')).toEqual(report)
      await expect(second.record('t1', { id: 'e1', amount: 6n })).rejects.toBeInstanceOf(IdempotencyConflictError)
      expect(await second.get('t1')).toMatchObject({ spent: 25n, entryCount: 2 })
      expect((await second.journal({ taskId: 't1' })).length).toBe(5)
      await second.destroy()
    })

    test('behavior: a caller-chosen ref is kept, and one ref belongs to one hold', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const ref = `0x${'ab'.repeat(32)}` as const
      expect((await guard.reserve('t1', 1n, { ref })).ref).toBe(ref)
      await expect(guard.reserve('t1', 1n, { ref })).rejects.toBeInstanceOf(IdempotencyConflictError)
      await expect(guard.reserve('t1', 1n, { ref: '0x12' as `0x${string}` })).rejects.toBeInstanceOf(InvalidArgumentError)
    })

    test('behavior: unknown ids', async () => {
      const guard = await guards.guard()
      const error = await guard.reserve('nope', 1n).catch((e) => e)
      expect(error).toBeInstanceOf(BudgetNotFoundError)
      expect(error).toMatchObject({ taskId: 'nope', code: 'BUDGET_NOT_FOUND' })
      const missing = await guard.capture('hold_x', 1n).catch((e) => e)
      expect(missing).toBeInstanceOf(HoldNotFoundError)
      expect(missing).toMatchObject({ holdId: 'hold_x', code: 'HOLD_NOT_FOUND' })
      await expect(guard.release('hold_x')).rejects.toBeInstanceOf(HoldNotFoundError)
      await expect(guard.get('nope')).rejects.toBeInstanceOf(BudgetNotFoundError)
    })
  })

  describe('record', () => {
    test('behavior: ids are idempotent, conflicts are explicit, hard limit refuses', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const entry = await guard.record('t1', { id: 'e1', amount: 40n, peer: 'x', tool: 'y', reason: 'z' })
      expect(await guard.record('t1', { id: 'e1', amount: 40n, peer: 'x', tool: 'y', reason: 'z' })).toEqual(entry)
      await expect(guard.record('t1', { id: 'e1', amount: 41n, peer: 'x', tool: 'y', reason: 'z' })).rejects.toBeInstanceOf(
        IdempotencyConflictError,
      )
      const error = await guard.record('t1', { amount: 61n }).catch((e) => e)
      expect(error).toMatchObject({ name: 'BudgetExceededError', requested: 61n, remaining: 60n })
      expect(await guard.get('t1')).toMatchObject({ spent: 40n, entryCount: 1 })
    })

    test('behavior: parameters are read once: a getter cannot show validation one amount and the ledger another', async () => {
      const guard = await guards.guard()
      // Each getter answers a valid value first, then a hostile one.
      const shifting = <T>(first: T, then: T) => {
        let reads = 0
        return () => (reads++ === 0 ? first : then)
      }
      const total = shifting(100n, -5n)
      const budget = await guard.allocate('t1', { get total() { return total() }, asset: 'USDC', decimals: 6 })
      expect(budget.total).toBe(100n)
      const amount = shifting(1n, -60n)
      const entry = await guard.record('t1', { get amount() { return amount() } })
      expect(entry.amount).toBe(1n)
      const reason = shifting<string>('ok', '\u0000')
      const hold = await guard.reserve('t1', 10n)
      expect((await guard.capture(hold.id, 5n, { get reason() { return reason() } })).reason).toBe('ok')
      const limits = new Proxy([0.5], { get: (target, key) => (key === '0' && limits.read++ > 0 ? -1 : Reflect.get(target, key)) }) as number[] & { read: number }
      limits.read = 0
      expect((await guard.allocate('t2', { total: 10n, asset: 'USDC', decimals: 6, thresholds: limits })).thresholds).toEqual([0.5])
      // A list whose length grows once it has been checked.
      let lengthReads = 0
      const growing = new Proxy([0.5], { get: (target, key) => (key === 'length' ? (lengthReads++ === 0 ? 1 : 500) : Reflect.get(target, key)) })
      await expect(guard.allocate('t3', { total: 10n, asset: 'USDC', decimals: 6, thresholds: growing })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'thresholds' })
      expect(await guard.get('t1')).toMatchObject({ total: 100n, spent: 6n, reserved: 0n })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test("behavior: ids of the engine's own making are refused from callers, so none can be taken before the engine writes it", async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const made = await guard.record('t1', { amount: 1n })
      expect(made.id).toMatch(/^entry_/)
      for (const id of [made.id, 'entry_x', 'chain_1_0xab_0', 'x402_hold_1'])
        await expect(guard.record('t1', { id, amount: 1n })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'id' })
      const hold = await guard.reserve('t1', 10n)
      await expect(guard.capture(hold.id, 1n, { id: 'entry_y' })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'entry.id' })
      expect(await guard.get('t1')).toMatchObject({ spent: 1n, reserved: 10n, entryCount: 1 })
    })

    test('behavior: a misspelt option is refused, not dropped (a `ttl` would leave a hold that never expires)', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      await expect(guard.reserve('t1', 10n, { ttl: 1_000 } as never)).rejects.toMatchObject({
        name: 'InvalidArgumentError',
        argument: 'reserve options.ttl',
        value: 1_000,
      })
      await expect(guard.record('t1', { amount: 1n, memo: 'x' } as never)).rejects.toMatchObject({ argument: 'record parameters.memo' })
      await expect(guard.allocate('t2', { total: 1n, ...USDC, hardlimit: false } as never)).rejects.toMatchObject({
        argument: 'allocate parameters.hardlimit',
      })
      const hold = await guard.reserve('t1', 10n, { ttlMs: 1_000 })
      await expect(guard.capture(hold.id, 5n, { note: 'x' } as never)).rejects.toMatchObject({ argument: 'entry.note' })
      await expect(guard.journal({ task: 't1' } as never)).rejects.toMatchObject({ argument: 'journal options.task' })
      await expect(createGuard({ db: await guards.url(), hardlimit: false } as never)).rejects.toMatchObject({
        argument: 'createGuard parameters.hardlimit',
      })
      expect(await guard.get('t1')).toMatchObject({ spent: 0n, reserved: 10n, openHolds: 1, entryCount: 0 })
      expect(await guard.list()).toHaveLength(1)
    })

    test('behavior: a soft limit lets spending pass the total and shows the overrun', async () => {
      const guard = await guards.guard({ hardLimit: false })
      await guard.allocate('soft', { total: 100n, ...USDC })
      expect(await guard.check('soft', 150n)).toMatchObject({ allowed: true })
      await guard.record('soft', { amount: 90n })
      const hold = await guard.reserve('soft', 30n)
      expect(await guard.get('soft')).toMatchObject({ spent: 90n, reserved: 30n, remaining: 0n, overspent: 20n, hardLimit: false })
      await guard.capture(hold.id, 40n)
      const b = await guard.get('soft')
      expect(b).toMatchObject({ spent: 130n, reserved: 0n, remaining: 0n, overspent: 30n, status: 'exhausted' })
      expect(b.spent + b.reserved + b.remaining - b.overspent).toBe(b.total)
    })
  })

  describe('close', () => {
    test('behavior: releases open holds, reports, refuses further spending, retries return the report', async () => {
      const clock = manualClock()
      const guard = await guards.guard({ clock })
      await guard.allocate('t1', { total: 100n, ...USDC })
      await guard.record('t1', { amount: 10n })
      await guard.reserve('t1', 20n)
      await guard.reserve('t1', 5n)
      clock.advance(1234)
      const report = await guard.close('t1')
      expect(report).toEqual({
        taskId: 't1',
        asset: 'USDC',
        total: 100n,
        spent: 10n,
        entryCount: 1,
        releasedHolds: 2,
        durationMs: 1234,
        status: 'closed',
      })
      clock.advance(1000)
      expect(await guard.close('t1')).toEqual(report)
      expect(await guard.get('t1')).toMatchObject({ status: 'closed', reserved: 0n, openHolds: 0, closedAt: report.durationMs + 1_800_000_000_000 })
      const closed = await guard.reserve('t1', 1n).catch((e) => e)
      expect(closed).toBeInstanceOf(BudgetClosedError)
      expect(closed).toMatchObject({ taskId: 't1', code: 'BUDGET_CLOSED' })
      await expect(guard.record('t1', { amount: 1n })).rejects.toBeInstanceOf(BudgetClosedError)
      await expect(guard.setProgress('t1', 0.5)).rejects.toBeInstanceOf(BudgetClosedError)
      expect((await guard.holds('t1')).map((h) => h.status)).toEqual(['released', 'released'])
      expect(await guard.list({ status: 'closed' })).toHaveLength(1)
      expect(await guard.list({ status: 'active' })).toHaveLength(0)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })
  })

  describe('expiry', () => {
    test('behavior: an expired hold is released and cannot be captured', async () => {
      const clock = manualClock()
      const guard = await guards.guard({ clock })
      await guard.allocate('t1', { total: 100n, ...USDC })
      const hold = await guard.reserve('t1', 60n, { ttlMs: 1000 })
      expect(hold.expiresAt).toBe(clock() + 1000)
      clock.advance(999)
      expect(await guard.get('t1')).toMatchObject({ reserved: 60n })
      clock.advance(1)
      expect(await guard.check('t1', 100n)).toEqual({ allowed: true, remaining: 100n })
      const error = await guard.capture(hold.id, 60n).catch((e) => e)
      expect(error).toBeInstanceOf(HoldNotOpenError)
      expect(error.status).toBe('expired')
      expect((await guard.journal({ taskId: 't1' })).map((j) => j.kind)).toEqual(['allocate', 'reserve', 'expire'])
    })

    test('behavior: holds expire with nobody touching the budget', async () => {
      const guard = await guards.guard({ expirySweepMs: 20 })
      await guard.allocate('t1', { total: 100n, ...USDC })
      await guard.reserve('t1', 60n, { ttlMs: 50 })
      const deadline = Date.now() + 5_000
      let kinds: string[] = []
      while (Date.now() < deadline) {
        // The journal is a plain read: it never expires anything by itself.
        kinds = (await guard.journal({ taskId: 't1' })).map((j) => j.kind)
        if (kinds.includes('expire')) break
        await new Promise((r) => setTimeout(r, 20))
      }
      expect(kinds).toEqual(['allocate', 'reserve', 'expire'])
    })

    test('behavior: expireHolds() called while a sweep runs still expires what is due at the call', async () => {
      const clock = manualClock()
      const guard = await guards.guard({ clock, expirySweepMs: 3_600_000 })
      await guard.allocate('t1', { total: 100n, ...USDC })
      await guard.reserve('t1', 100n, { ttlMs: 1000 })
      // A sweep starts before the hold is due; the hold falls due while it runs.
      const early = guard.expireHolds()
      clock.advance(1000)
      const late = guard.expireHolds()
      expect(await early).toBe(0)
      expect(await late).toBe(1)
      expect((await guard.holds('t1'))[0]?.status).toBe('expired')
      expect(await guard.list({ status: 'exhausted' })).toEqual([])
    })

    test('behavior: exhausted is derived, not a latch', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const hold = await guard.reserve('t1', 100n)
      expect((await guard.get('t1')).status).toBe('exhausted')
      expect(await guard.list({ status: 'exhausted' })).toHaveLength(1)
      await guard.release(hold.id)
      expect((await guard.get('t1')).status).toBe('active')
      expect(await guard.list({ status: 'active' })).toHaveLength(1)
    })
  })

  describe('progress, burn rate, forecast', () => {
    test('default', async () => {
      const clock = manualClock()
      const guard = await guards.guard({ clock })
      await guard.allocate('t1', { total: 1_000n, ...USDC })
      expect(await guard.forecast('t1')).toEqual({ projected: null, exceedsTotal: false })
      clock.advance(120_000)
      await guard.record('t1', { amount: 300n })
      expect(await guard.burnRate('t1')).toBe(150n)
      expect((await guard.setProgress('t1', 0.25)).progress).toBe(0.25)
      expect(await guard.forecast('t1')).toEqual({ projected: 1_200n, exceedsTotal: true })
      await guard.setProgress('t1', 0.5)
      expect(await guard.forecast('t1')).toEqual({ projected: 600n, exceedsTotal: false })
      for (const bad of [-0.1, 1.01, Number.NaN, '0.5'])
        await expect(guard.setProgress('t1', bad as number)).rejects.toBeInstanceOf(InvalidArgumentError)
    })
  })

  describe('risk assessor', () => {
    test('behavior: consulted by check, reserve and record; can deny with a reason', async () => {
      const seen: RiskContext[] = []
      const guard = await guards.guard({
        riskAssessor: (context) => {
          seen.push(context)
          return context.amount > 50n || context.peer === 'evil' ? { allow: false, reason: 'too risky' } : { allow: true }
        },
      })
      await guard.allocate('t1', { total: 1_000n, ...USDC })
      expect(await guard.check('t1', 10n)).toEqual({ allowed: true, remaining: 1_000n })
      expect(await guard.check('t1', 60n)).toEqual({ allowed: false, reason: 'risk', detail: 'too risky', remaining: 1_000n })
      const denied = await guard.reserve('t1', 60n).catch((e) => e)
      expect(denied).toBeInstanceOf(RiskDeniedError)
      expect(denied).toMatchObject({ code: 'RISK_DENIED', taskId: 't1', requested: 60n, reason: 'too risky' })
      await expect(guard.record('t1', { amount: 5n, peer: 'evil' })).rejects.toBeInstanceOf(RiskDeniedError)
      await guard.reserve('t1', 5n)
      await guard.record('t1', { amount: 5n, peer: 'good' })
      expect(seen.map((c) => c.operation)).toEqual(['check', 'check', 'reserve', 'record', 'reserve', 'record'])
      expect(seen[3]).toMatchObject({ taskId: 't1', amount: 5n, peer: 'evil' })
      expect(seen[3]?.budget.total).toBe(1_000n)
      expect(await guard.get('t1')).toMatchObject({ spent: 5n, reserved: 5n })
    })
  })

  describe('pay', () => {
    test('behavior: reserves the maximum, captures what was settled, releases and rethrows on failure', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      let seen: Hold | undefined
      const entry = await guard.pay('t1', 30n, async ({ hold }) => {
        seen = hold
        expect((await guard.get('t1')).reserved).toBe(30n)
        return { settled: 22n, peer: 'api.example', tool: 'search' }
      })
      expect(seen).toMatchObject({ taskId: 't1', amount: 30n, status: 'open' })
      expect(entry).toMatchObject({ amount: 22n, holdId: seen?.id, peer: 'api.example', tool: 'search' })
      expect(await guard.get('t1')).toMatchObject({ spent: 22n, reserved: 0n })

      const failure = new Error('payment failed')
      await expect(guard.pay('t1', 50n, async () => Promise.reject(failure))).rejects.toBe(failure)
      expect(await guard.get('t1')).toMatchObject({ spent: 22n, reserved: 0n })
      expect((await guard.holds('t1')).map((h) => h.status)).toEqual(['captured', 'released'])

      const denied = await guard.pay('t1', 79n, async () => ({ settled: 1n })).catch((e) => e)
      expect(denied).toMatchObject({ name: 'BudgetExceededError', requested: 79n, remaining: 78n })
    })

    test('behavior: a retried payment with the same key pays once', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      let calls = 0
      const pay = () =>
        guard.pay('t1', 10n, async () => {
          calls++
          return { settled: 8n }
        }, { key: 'order-7' })
      const first = await pay()
      const again = await pay()
      expect(again).toEqual(first)
      expect(calls).toBe(1)
      expect(await guard.get('t1')).toMatchObject({ spent: 8n, entryCount: 1 })
    })
  })

  describe('pay with a key', () => {
    test('behavior: calls with one key at once run the payment once and share its entry', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 10n, ...USDC })
      let calls = 0
      const fn = async () => {
        calls++
        await new Promise((r) => setTimeout(r, 20))
        return { settled: 10n }
      }
      const results = await Promise.all([1, 2, 3].map(() => guard.pay('t1', 10n, fn, { key: 'order-1' })))
      expect(calls).toBe(1)
      expect(new Set(results.map((e) => e.id)).size).toBe(1)
      expect(await guard.get('t1')).toMatchObject({ spent: 10n, reserved: 0n, entryCount: 1 })
      // A payment that fails: every call with its key gets its error, and it ran once.
      await guard.allocate('t2', { total: 10n, ...USDC })
      const refused = new Error('payment provider said no')
      let tries = 0
      const failing = async (): Promise<{ settled: bigint }> => {
        tries++
        await new Promise((r) => setTimeout(r, 20))
        throw refused
      }
      const outcomes = await Promise.allSettled([1, 2, 3].map(() => guard.pay('t2', 10n, failing, { key: 'order-2' })))
      expect(tries).toBe(1)
      expect(outcomes.map((o) => (o.status === 'rejected' ? o.reason : o.value))).toEqual([refused, refused, refused])
      expect(await guard.get('t2')).toMatchObject({ spent: 0n, reserved: 0n })
      // A later call with the key pays nothing and says why: the key named the payment that failed.
      const retried = vi.fn(async () => ({ settled: 10n }))
      const again = await guard.pay('t2', 10n, retried, { key: 'order-2' }).catch((e) => e)
      expect(again).toBeInstanceOf(HoldNotOpenError)
      expect(again).toMatchObject({ status: 'released' })
      expect(again.message).toContain('the payment with key "order-2" ended without a payment recorded; a new payment needs a new key')
      expect(retried).not.toHaveBeenCalled()
      expect(await guard.pay('t2', 10n, retried, { key: 'order-2b' })).toMatchObject({ amount: 10n })
      expect(await guard.get('t2')).toMatchObject({ spent: 10n, reserved: 0n })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: a key whose hold another process has open pays nothing and says so', async () => {
      const url = await guards.url()
      const first = await createGuard({ db: url })
      const second = await createGuard({ db: url })
      try {
        await first.allocate('t1', { total: 10n, ...USDC })
        let paid = 0
        let release!: () => void
        const gate = new Promise<void>((r) => (release = r))
        let started!: () => void
        const running = new Promise<void>((r) => (started = r))
        const original = first.pay('t1', 10n, async () => {
          paid++
          started()
          await gate
          return { settled: 10n }
        }, { key: 'order-1' })
        await running
        const error = await second.pay('t1', 10n, async () => {
          paid++
          return { settled: 10n }
        }, { key: 'order-1' }).catch((e) => e)
        expect(error).toBeInstanceOf(PaymentUnsettledError)
        expect(error).toMatchObject({ code: 'PAYMENT_UNSETTLED', taskId: 't1', key: 'order-1' })
        const [hold] = await second.holds('t1')
        expect(error.holdId).toBe(hold?.id)
        expect(hold?.status).toBe('open')
        release()
        const entry = await original
        expect(paid).toBe(1)
        // Once settled, a retry anywhere answers with the original entry.
        expect(await second.pay('t1', 10n, async () => ({ settled: 10n }), { key: 'order-1' })).toEqual(entry)
        expect(await second.get('t1')).toMatchObject({ spent: 10n, reserved: 0n, entryCount: 1 })
        expect(await second.verify()).toEqual({ ok: true, problems: [] })
      } finally {
        await first.destroy()
        await second.destroy()
      }
    })

    test('behavior: a payment function that reports no valid settled amount leaves its hold reserved and names it', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const reports: unknown[] = [{ settled: -5n }, { settled: 5 }, undefined, { settled: 2n ** 256n }]
      for (const [i, report] of reports.entries()) {
        const error = await guard.pay('t1', 10n, async () => report as { settled: bigint }).catch((e) => e)
        expect(error).toBeInstanceOf(PaymentUnsettledError)
        const holds = await guard.holds('t1')
        expect(holds).toHaveLength(i + 1)
        expect(error.holdId).toBe(holds[i]?.id)
        expect(holds[i]?.status).toBe('open')
      }
      // The money may have left: it stays reserved until the caller settles the holds.
      expect(await guard.get('t1')).toMatchObject({ spent: 0n, reserved: 40n })
      for (const h of await guard.holds('t1')) await guard.release(h.id)
      expect(await guard.get('t1')).toMatchObject({ spent: 0n, reserved: 0n })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: a payment that settles after its hold was released by close is recorded once, as a fact', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      let paid = 0
      const pay = () =>
        guard.pay('t1', 40n, async () => {
          paid++
          if (paid === 1) expect(await guard.close('t1')).toMatchObject({ releasedHolds: 1, spent: 0n })
          return { settled: 30n, peer: 'api.example' }
        }, { key: 'order-9' })
      const entry = await pay()
      expect(entry).toMatchObject({ taskId: 't1', amount: 30n, holdId: undefined, peer: 'api.example', source: 'offchain' })
      expect(await guard.get('t1')).toMatchObject({ status: 'closed', spent: 30n, reserved: 0n, entryCount: 1 })
      expect(await guard.entries('t1')).toEqual([entry])
      // A retry with the key answers with that entry and pays nothing.
      expect(await pay()).toEqual(entry)
      expect(paid).toBe(1)
      expect(await guard.get('t1')).toMatchObject({ spent: 30n, entryCount: 1 })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: a payment that settles after its own hold was released, while another hold expired and its room was spent, is recorded as a fact, even past a hard limit', async () => {
      let now = 1_000_000
      const guard = await guards.guard({ clock: () => now })
      await guard.allocate('t1', { total: 50n, ...USDC })
      const hold = await guard.reserve('t1', 10n, { ttlMs: 1_000 })
      const entry = await guard.pay('t1', 40n, async () => {
        // Meanwhile the other hold expires and its room is taken by a record.
        now += 2_000
        await guard.record('t1', { amount: 10n })
        // And this payment's own hold ends, released by its owner.
        const [, own] = await guard.holds('t1')
        await guard.release(own?.id as string)
        return { settled: 45n }
      })
      expect(entry).toMatchObject({ amount: 45n, holdId: undefined })
      expect((await guard.hold(hold.id)).status).toBe('expired')
      expect(await guard.get('t1')).toMatchObject({ spent: 55n, reserved: 0n, overspent: 5n, status: 'exhausted' })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: a payment the chain captured first (the tracker matched its ref) answers with the chain entry, and what fn settled is not dropped', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 1_000n, ...USDC })
      let n = 0
      // The agent pays on chain with the hold's ref; the tracker applies the log before `fn` returns.
      const payOnChain = (amount: bigint, settled: bigint, onchain: boolean) =>
        guard.pay(
          't1',
          40n,
          async ({ hold }) => {
            const chain = { chainId: 31337, blockNumber: BigInt(++n), blockHash: `0x${n.toString(16).padStart(64, '0')}`, txHash: `0x${'bb'.repeat(32)}`, logIndex: 3, confirmed: false } as const
            await guard.internal.submit((ctx) =>
              rules.applyChainSpend(ctx, { taskId: 't1', hook: `0x${'cc'.repeat(20)}`, amount, ref: hold.ref, to: `0x${'dd'.repeat(20)}`, chain }),
            )
            return { settled }
          },
          { onchain },
        )
      // Declared paid on chain: one payment, counted once as the larger.
      const entry = await payOnChain(35n, 35n, true)
      expect(entry).toMatchObject({ amount: 35n, source: 'onchain', chain: { logIndex: 3 } })
      expect(await guard.get('t1')).toMatchObject({ spent: 35n, reserved: 0n, entryCount: 1 })
      await payOnChain(10n, 50n, true)
      expect(await guard.get('t1')).toMatchObject({ spent: 35n + 50n, entryCount: 3 })
      // Not declared: the log may be another payment (a 1-unit transfer carrying the ref while
      // `fn` paid off the chain); what `fn` settled is recorded whole.
      await payOnChain(1n, 40n, false)
      expect(await guard.get('t1')).toMatchObject({ spent: 85n + 1n + 40n, reserved: 0n, entryCount: 5 })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: a payment that settled more than its maximum is captured whole, past the hard limit', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const overspent: unknown[] = []
      guard.on('overspent', (event) => {
        overspent.push(event)
      })
      const entry = await guard.pay('t1', 60n, async () => ({ settled: 120n }))
      expect(entry).toMatchObject({ amount: 120n, holdId: expect.any(String) })
      expect((await guard.hold(entry.holdId as string)).status).toBe('captured')
      expect(await guard.get('t1')).toMatchObject({ spent: 120n, reserved: 0n, overspent: 20n, remaining: 0n })
      await guard.flushAlerts()
      expect(overspent).toEqual([expect.objectContaining({ taskId: 't1', spent: 120n, total: 100n, overspent: 20n })])
      // Not a refusal: a later payment is refused before it runs, as usual.
      let ran = false
      const denied = await guard.pay('t1', 1n, async () => {
        ran = true
        return { settled: 1n }
      }).catch((e) => e)
      expect(denied).toBeInstanceOf(BudgetExceededError)
      expect(ran).toBe(false)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: a settled payment whose entry details cannot be stored keeps its hold and says it was paid', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const reports = [{ settled: 5n, at: Date.now() + 0.5 }, { settled: 5n, peer: 'a\u0000b' }, { settled: 5n, tool: 7 }]
      for (const [i, report] of reports.entries()) {
        const error = await guard.pay('t1', 10n, async () => report as { settled: bigint }).catch((e) => e)
        expect(error).toBeInstanceOf(PaymentUnsettledError)
        expect(error.reason).toContain('settled 5')
        expect(error.message).toContain('stays open')
        expect(error.cause).toBeInstanceOf(InvalidArgumentError)
        const holds = await guard.holds('t1')
        expect(error.holdId).toBe(holds[i]?.id)
        expect(holds[i]?.status).toBe('open')
      }
      expect(await guard.get('t1')).toMatchObject({ spent: 0n, reserved: 30n })
      // The caller settles them: capture what was paid.
      for (const h of await guard.holds('t1')) await guard.capture(h.id, 5n)
      expect(await guard.get('t1')).toMatchObject({ spent: 15n, reserved: 0n })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: an unsettled payment whose hold ended meanwhile says nothing is reserved for it', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 100n, ...USDC })
      const error = await guard
        .pay('t1', 10n, async ({ hold }) => {
          await guard.release(hold.id)
          return { settled: 5n, peer: 'a\u0000b' }
        })
        .catch((e) => e)
      expect(error).toBeInstanceOf(PaymentUnsettledError)
      expect(error.message).toContain(`hold "${error.holdId}" had ended, nothing is reserved for it`)
      expect(error.message).not.toContain('stays open')
      expect(error.metaMessages).toEqual(['Record what was paid.'])
      expect(await guard.get('t1')).toMatchObject({ spent: 0n, reserved: 0n })
    })

    test('behavior: a retry answers with the original result whatever the risk assessor says now', async () => {
      let allowBig = true
      const guard = await guards.guard({
        riskAssessor: ({ amount }) => (amount > 5n && !allowBig ? { allow: false, reason: 'too big now' } : { allow: true }),
      })
      await guard.allocate('t1', { total: 100n, ...USDC })
      const entry = await guard.record('t1', { id: 'inv-1', amount: 6n })
      const hold = await guard.reserve('t1', 7n, { key: 'k1' })
      const paid = await guard.pay('t1', 8n, async () => ({ settled: 8n }), { key: 'p1' })
      allowBig = false
      expect(await guard.record('t1', { id: 'inv-1', amount: 6n })).toEqual(entry)
      expect(await guard.reserve('t1', 7n, { key: 'k1' })).toEqual(hold)
      expect(await guard.pay('t1', 8n, async () => ({ settled: 8n }), { key: 'p1' })).toEqual(paid)
      // New operations still go through the assessor.
      await expect(guard.record('t1', { id: 'inv-2', amount: 6n })).rejects.toBeInstanceOf(RiskDeniedError)
      await expect(guard.reserve('t1', 7n, { key: 'k2' })).rejects.toBeInstanceOf(RiskDeniedError)
      expect(await guard.get('t1')).toMatchObject({ spent: 14n, reserved: 7n })
    })
  })

  describe('journal and verify', () => {
    test('behavior: every mutation is journaled with strictly increasing seq', async () => {
      const guard = await guards.guard()
      await guard.allocate('a', { total: 100n, ...USDC })
      await guard.allocate('b', { total: 100n, ...USDC })
      const h = await guard.reserve('a', 10n)
      await guard.capture(h.id, 7n)
      await guard.record('b', { amount: 3n })
      const all = await guard.journal()
      expect(all.map((j) => j.kind)).toEqual(['allocate', 'allocate', 'reserve', 'capture', 'record'])
      for (let i = 1; i < all.length; i++) expect((all[i] as { seq: bigint }).seq).toBeGreaterThan((all[i - 1] as { seq: bigint }).seq)
      expect(all[3]).toMatchObject({ taskId: 'a', amount: 7n, holdId: h.id, source: 'offchain', after: { spent: 7n, reserved: 0n } })
      expect(await guard.journal({ taskId: 'b' })).toHaveLength(2)
      expect(await guard.journal({ afterSeq: all[2]?.seq, limit: 1 })).toEqual([all[3]])
    })

    test('behavior: verify reports a ledger that does not match its journal', async () => {
      const url = await guards.url()
      const { createGuard } = await import('../src/index.ts')
      const guard = await createGuard({ db: url })
      await guard.allocate('t1', { total: 100n, ...USDC })
      await guard.record('t1', { amount: 10n })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
      // Tamper with the stored budget behind the engine's back.
      const tamper = "update budgets set spent = '11' where task_id = 't1'"
      if (target.name === 'sqlite') {
        const raw = new Database(url.slice('sqlite:'.length))
        raw.prepare(tamper).run()
        raw.close()
      } else {
        const raw = new pg.Client({ connectionString: url })
        await raw.connect()
        await raw.query(tamper)
        await raw.end()
      }
      const result = await guard.verify()
      expect(result.ok).toBe(false)
      expect(result.problems).toContain('t1: spent 11, journal replay gives 10')
      expect(result.problems).toContain('t1: spent 11, live entries add up to 10')
      await guard.destroy()
    })

    test('behavior: verify reports holds and entries that differ from the journal even where the sums agree', async () => {
      const url = await guards.url()
      const guard = await createGuard({ db: url })
      try {
        await guard.allocate('t1', { total: 100n, ...USDC })
        const captured = await guard.reserve('t1', 50n)
        const paid = await guard.capture(captured.id, 40n)
        await guard.record('t1', { id: 'inv-a', amount: 10n })
        await guard.record('t1', { id: 'inv-b', amount: 3n })
        const released = await guard.release((await guard.reserve('t1', 5n)).id)
        expect(await guard.verify()).toEqual({ ok: true, problems: [] })
        const tampered = async (statements: string[]) => {
          if (target.name === 'sqlite') {
            const raw = new Database(url.slice('sqlite:'.length))
            raw.transaction(() => {
              for (const statement of statements) raw.prepare(statement).run()
            })()
            raw.close()
          } else {
            const raw = new pg.Client({ connectionString: url })
            await raw.connect()
            for (const statement of statements) await raw.query(statement)
            await raw.end()
          }
          return guard.verify()
        }
        // Swap the amounts of a capture's entry and a record's: every sum still agrees.
        let result = await tampered([
          `update entries set amount = '10' where id = '${paid.id}'`,
          "update entries set amount = '40' where id = 'inv-a'",
        ])
        expect(result.ok).toBe(false)
        // (Entries are read in id order: the engine's `entry_…` before `inv-a`.)
        expect(result.problems).toEqual([
          `entry ${paid.id} (t1): amount 10, the journal says 40`,
          'entry inv-a (t1): amount 40, the journal says 10',
        ])
        // A captured hold marked released (a retry of its capture would then be refused), a
        // released one marked expired, and a capture's amount changed.
        result = await tampered([
          `update entries set amount = '40' where id = '${paid.id}'`,
          "update entries set amount = '10' where id = 'inv-a'",
          `update holds set status = 'released', captured_amount = '41' where id = '${captured.id}'`,
          `update holds set status = 'expired' where id = '${released.id}'`,
        ])
        expect(result.problems).toEqual(
          expect.arrayContaining([
            `hold ${captured.id} (t1): released, the journal leaves it captured`,
            `hold ${captured.id} (t1): captured 41, the journal captured 40`,
            `hold ${released.id} (t1): expired, the journal leaves it released`,
          ]),
        )
        expect(result.problems).toHaveLength(3)
        // A hold the journal never reserved.
        result = await tampered([
          `update holds set status = 'captured', captured_amount = '40' where id = '${captured.id}'`,
          `update holds set status = 'released' where id = '${released.id}'`,
          `update holds set id = 'hold_forged' where id = '${released.id}'`,
        ])
        expect(result.problems).toEqual(['hold hold_forged (t1): not reserved in the journal'])
        // A record passed off as a second capture of a hold, and an entry naming a hold that
        // was never reserved: each still counts in the sums, which agree.
        result = await tampered([
          `update holds set id = '${released.id}' where id = 'hold_forged'`,
          `update entries set hold_id = '${captured.id}' where id = 'inv-a'`,
          "update entries set hold_id = 'hold_never' where id = 'inv-b'",
        ])
        expect(result.problems).toEqual(['entry inv-a (t1): no capture of it in the journal', 'entry inv-b (t1): names hold hold_never, which the journal never reserved'])
        // An on-chain payment of a hold that had ended, passed off as paying a hold still open,
        // and a second log made to pay that same hold.
        const open = await guard.reserve('t1', 1n)
        const ended = await guard.release((await guard.reserve('t1', 1n)).id)
        const log = (n: number, ref: string, amount: bigint) => {
          const chain = { chainId: 31337, blockNumber: BigInt(n), blockHash: `0x${n.toString(16).padStart(64, '0')}`, txHash: `0x${'bb'.repeat(32)}`, logIndex: 0, confirmed: false } as const
          return guard.internal.submit((ctx) => rules.applyChainSpend(ctx, { taskId: 't1', hook: `0x${'cc'.repeat(20)}`, amount, ref, to: `0x${'dd'.repeat(20)}`, chain }), 't1')
        }
        const paysEnded = (await log(1, ended.ref, 2n)) as { id: string; holdId: string | null }
        const plain = (await log(2, `0x${'00'.repeat(32)}`, 3n)) as { id: string }
        expect(paysEnded.holdId).toBe(ended.id)
        result = await tampered(["update entries set hold_id = null where id in ('inv-a', 'inv-b')"])
        expect(result).toEqual({ ok: true, problems: [] })
        result = await tampered([
          `update entries set hold_id = '${open.id}' where id = '${paysEnded.id}'`,
          `update entries set hold_id = '${open.id}' where id = '${plain.id}'`,
        ])
        const [firstId, secondId] = [paysEnded.id, plain.id].sort()
        expect(result.problems).toEqual([
          `entry ${firstId} (t1): pays hold ${open.id}, which the journal leaves open`,
          `entry ${secondId} (t1): pays hold ${open.id}, which the journal leaves open`,
          `entry ${secondId} (t1): pays hold ${open.id}, as entry ${firstId} does`,
        ])
      } finally {
        await guard.destroy()
      }
    })
  })

  describe('group commit', () => {
    test('behavior: concurrent callers share transactions and each gets its own answer', async () => {
      const guard = await guards.guard()
      await guard.allocate('t1', { total: 1_000n, ...USDC })
      const outcomes = await Promise.allSettled(Array.from({ length: 300 }, () => guard.reserve('t1', 7n)))
      const ok = outcomes.filter((o) => o.status === 'fulfilled')
      const denied = outcomes.filter((o) => o.status === 'rejected')
      expect(ok).toHaveLength(142)
      expect(denied).toHaveLength(158)
      for (const d of denied) expect((d as PromiseRejectedResult).reason).toMatchObject({ name: 'BudgetExceededError', remaining: 6n })
      expect(await guard.get('t1')).toMatchObject({ reserved: 994n, remaining: 6n, openHolds: 142 })
      const stats = guard.internal.writerStats()
      expect(stats.batches).toBeLessThan(stats.operations / 10)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })
  })

  describe('alerts', () => {
    test('behavior: each threshold fires once per upward crossing and re-arms below it', async () => {
      const guard = await guards.guard()
      const alerts: AlertEvent[] = []
      const exhausted: unknown[] = []
      const overspent: unknown[] = []
      guard.on('alert', (a) => void alerts.push(a))
      guard.on('exhausted', (e) => void exhausted.push(e))
      guard.on('overspent', (e) => void overspent.push(e))
      await guard.allocate('t1', { total: 100n, ...USDC })
      await guard.record('t1', { amount: 49n })
      await guard.flushAlerts()
      expect(alerts).toEqual([])
      await guard.record('t1', { amount: 1n })
      await guard.record('t1', { amount: 10n })
      await guard.flushAlerts()
      expect(alerts.map((a) => a.threshold)).toEqual([0.5])
      expect(alerts[0]).toMatchObject({ taskId: 't1', spent: 50n, total: 100n })
      expect(alerts[0]?.id).toMatch(/^ev_/)
      // An on-chain spend, then its reversal by a reorg: spent falls back below 0.8 and 0.5.
      const chain = { chainId: 31337, blockNumber: 5n, blockHash: `0x${'11'.repeat(32)}`, txHash: `0x${'22'.repeat(32)}`, logIndex: 0, confirmed: false } as const
      const entry = await guard.internal.submit((ctx) =>
        rules.applyChainSpend(ctx, { taskId: 't1', hook: '0xhook', amount: 45n, ref: `0x${'00'.repeat(32)}`, to: '0xabc', chain }),
      )
      await guard.flushAlerts()
      expect(alerts.map((a) => a.threshold)).toEqual([0.5, 0.8, 0.95])
      expect(exhausted).toHaveLength(1)
      expect(overspent).toHaveLength(1)
      expect(overspent[0]).toMatchObject({ spent: 105n, total: 100n, overspent: 5n })
      await guard.internal.submit((ctx) => rules.revertChainSpend(ctx, (entry as { id: string }).id))
      expect(await guard.get('t1')).toMatchObject({ spent: 60n, status: 'active' })
      await guard.record('t1', { amount: 25n })
      await guard.flushAlerts()
      expect(alerts.map((a) => a.threshold)).toEqual([0.5, 0.8, 0.95, 0.8])
      expect(new Set(alerts.map((a) => a.id)).size).toBe(4)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })

    test('behavior: a throwing or slow handler never fails or delays a payment', async () => {
      const failures: unknown[] = []
      const guard = await guards.guard({ alerts: { attemptsMax: 2 }, onHandlerError: (e) => void failures.push(e) })
      let calls = 0
      guard.on('alert', () => {
        calls++
        throw new Error('handler broke')
      })
      guard.on('alert', () => new Promise((r) => setTimeout(r, 2_000)))
      await guard.allocate('t1', { total: 100n, ...USDC })
      const started = Date.now()
      await guard.record('t1', { amount: 60n })
      expect(Date.now() - started).toBeLessThan(1_000)
      await guard.flushAlerts()
      expect(calls).toBe(2)
      expect(failures).toHaveLength(1)
    })
  })
})
