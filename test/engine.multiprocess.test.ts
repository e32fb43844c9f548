import { describe, expect, test } from 'vitest'
import { type AlertEvent, createGuard } from '../src/index.ts'
import { useGuards } from './helpers/guard.ts'
import { type Line, startWorker } from './helpers/processes.ts'
import { storeTargets } from './helpers/stores.ts'

const USDC = { asset: 'USDC', decimals: 6 } as const

describe.each(storeTargets)('processes on $name', (target) => {
  const guards = useGuards(target)
  const processes = target.name === 'postgres' ? 8 : 4
  const callers = target.name === 'postgres' ? 50 : 25

  test(`behavior: ${processes} processes × ${callers} callers on one budget never overspend`, async () => {
    const url = await guards.url()
    const guard = await createGuard({ db: url })
    const total = 4_000n
    await guard.allocate('hot', { total, ...USDC })
    const workers = Array.from({ length: processes }, (_, i) =>
      startWorker({ kind: 'hammer', db: url, taskId: 'hot', callers, opsPerCaller: 16, seed: 1 + i * 7919 }),
    )
    const exits = await Promise.all(workers.map((w) => w.exited))
    for (const [i, w] of workers.entries()) expect(exits[i], w.stderr()).toEqual({ code: 0, signal: null })
    const lines = workers.flatMap((w) => w.lines)
    expect(lines.filter((l) => l.op === 'error')).toEqual([])
    expect(lines.filter((l) => l.op === 'done')).toHaveLength(processes)

    // The acknowledged operations add up to the final state exactly.
    const holds = new Map<string, bigint>()
    let spent = 0n
    for (const l of lines) {
      if (l.op === 'reserve') holds.set(l.hold as string, BigInt(l.amount as string))
      if (l.op === 'capture') {
        spent += BigInt(l.amount as string)
        holds.delete(l.hold as string)
      }
      if (l.op === 'release') holds.delete(l.hold as string)
      if (l.op === 'record') spent += BigInt(l.amount as string)
    }
    const reserved = [...holds.values()].reduce((a, b) => a + b, 0n)
    const budget = await guard.get('hot')
    expect({ spent: budget.spent, reserved: budget.reserved, openHolds: budget.openHolds }).toEqual({
      spent,
      reserved,
      openHolds: holds.size,
    })
    expect(budget.spent + budget.reserved <= total).toBe(true)
    expect(budget.overspent).toBe(0n)
    expect(lines.filter((l) => l.op === 'denied').length).toBeGreaterThan(0)
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    await guard.destroy()
  })

  test('behavior: racing capture and release across processes, exactly one winner per hold', async () => {
    const url = await guards.url()
    const guard = await createGuard({ db: url })
    await guard.allocate('race', { total: 1_000_000n, ...USDC })
    const holds: string[] = []
    for (let i = 0; i < 60; i++) holds.push((await guard.reserve('race', 10n)).id)
    const workers = Array.from({ length: 4 }, (_, i) =>
      startWorker({ kind: 'settle', db: url, holds, callers: 10, amount: String(5 + i) }),
    )
    const exits = await Promise.all(workers.map((w) => w.exited))
    for (const [i, w] of workers.entries()) expect(exits[i], w.stderr()).toEqual({ code: 0, signal: null })
    const lines = workers.flatMap((w) => w.lines)
    expect(lines.filter((l) => l.op === 'error')).toEqual([])

    const journal = await guard.journal({ taskId: 'race', limit: 10_000 })
    const final = new Map((await guard.holds('race')).map((h) => [h.id, h]))
    let spent = 0n
    for (const id of holds) {
      const settles = journal.filter((j) => j.holdId === id && (j.kind === 'capture' || j.kind === 'release'))
      expect(settles, id).toHaveLength(1)
      const wins: Line[] = lines.filter((l) => l.hold === id && (l.op === 'capture' || l.op === 'release'))
      expect(wins.length).toBeGreaterThan(0)
      const hold = final.get(id)
      if (hold?.status === 'captured') {
        expect(new Set(wins.map((w) => `${w.op}:${w.entry}:${w.amount}`)).size, id).toBe(1)
        expect(wins[0]?.entry).toBe(hold.entryId)
        expect(BigInt(wins[0]?.amount as string)).toBe(hold.capturedAmount)
        spent += hold.capturedAmount as bigint
      } else {
        expect(hold?.status).toBe('released')
        expect(wins.every((w) => w.op === 'release')).toBe(true)
      }
    }
    expect(await guard.get('race')).toMatchObject({ spent, reserved: 0n, openHolds: 0 })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    await guard.destroy()
  })

  test('behavior: verify() while other processes write sees one consistent ledger, every time', async () => {
    const url = await guards.url()
    const guard = await createGuard({ db: url })
    await guard.allocate('busy', { total: 10n ** 12n, ...USDC })
    const workers = Array.from({ length: 2 }, (_, i) =>
      startWorker({ kind: 'hammer', db: url, taskId: 'busy', callers: 10, opsPerCaller: 150, seed: 3 + i * 104_729 }),
    )
    let done = false
    const exits = Promise.all(workers.map((w) => w.exited)).finally(() => {
      done = true
    })
    const failures: string[][] = []
    let during = 0
    while (!done) {
      // SQLite answers without waiting for I/O: give the event loop a turn to see the exits.
      await new Promise((resolve) => setImmediate(resolve))
      const result = await guard.verify()
      if (!done) during++
      if (!result.ok) failures.push(result.problems.slice(0, 3))
    }
    for (const [i, exit] of (await exits).entries()) expect(exit, workers[i]?.stderr()).toEqual({ code: 0, signal: null })
    expect(during).toBeGreaterThan(3)
    expect(failures).toEqual([])
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    await guard.destroy()
  })

  test('behavior: SIGKILL mid-load ten times loses nothing acknowledged', async () => {
    const url = await guards.url()
    const setup = await createGuard({ db: url })
    await setup.allocate('crash', { total: 10n ** 30n, ...USDC })
    await setup.destroy()
    let acknowledged = 0
    for (let round = 0; round < 10; round++) {
      const worker = startWorker({ kind: 'records', db: url, taskId: 'crash', callers: 20, prefix: `r${round}` })
      await worker.waitFor((l) => l.op === 'ready')
      const before = worker.lines.length
      await worker.waitFor(() => worker.lines.length >= before + 20 + ((round * 37) % 200))
      const exit = await worker.kill()
      expect(exit.signal).toBe('SIGKILL')
      const acked = worker.lines.filter((l) => l.op === 'record').map((l) => l.id as string)
      expect(worker.lines.filter((l) => l.op === 'error')).toEqual([])
      acknowledged += acked.length

      const guard = await createGuard({ db: url })
      const ids = new Set((await guard.entries('crash')).map((e) => e.id))
      const lost = acked.filter((id) => !ids.has(id))
      expect(lost, `round ${round}`).toEqual([])
      const budget = await guard.get('crash')
      expect(budget.spent).toBe(BigInt(ids.size))
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
      await guard.destroy()
    }
    expect(acknowledged).toBeGreaterThan(200)
  })

  test('behavior: processes opening a fresh database at once all migrate it safely', async () => {
    const url = await guards.url()
    const workers = Array.from({ length: 4 }, () => startWorker({ kind: 'open', db: url, taskId: 'shared' }))
    const exits = await Promise.all(workers.map((w) => w.exited))
    for (const [i, w] of workers.entries()) expect(exits[i], w.stderr()).toEqual({ code: 0, signal: null })
    expect(workers.every((w) => w.lines.some((l) => l.op === 'opened'))).toBe(true)
    const guard = await createGuard({ db: url })
    expect(await guard.get('shared')).toMatchObject({ total: 100n, spent: 4n, entryCount: 4 })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    await guard.destroy()
  })

  test('behavior: an alert committed but undelivered when the process dies is delivered after restart', async () => {
    const url = await guards.url()
    const setup = await createGuard({ db: url })
    await setup.allocate('alerting', { total: 100n, ...USDC })
    await setup.destroy()
    const worker = startWorker({ kind: 'alerts', db: url, taskId: 'alerting', amount: '85' })
    await worker.waitFor((l) => l.op === 'committed')
    await worker.kill()

    const guard = await createGuard({ db: url, alerts: { leaseMs: 300, sweepIntervalMs: 50 } })
    const received: AlertEvent[] = []
    guard.on('alert', (a) => void received.push(a))
    const deadline = Date.now() + 10_000
    while (received.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25))
    await guard.flushAlerts()
    expect(received.map((a) => a.threshold).sort()).toEqual([0.5, 0.8])
    expect(received[0]).toMatchObject({ taskId: 'alerting', spent: 85n, total: 100n })
    await guard.destroy()

    // Delivered and marked: a later process does not get it again.
    const later = await createGuard({ db: url, alerts: { leaseMs: 300, sweepIntervalMs: 50 } })
    const again: AlertEvent[] = []
    later.on('alert', (a) => void again.push(a))
    await new Promise((r) => setTimeout(r, 600))
    expect(again).toEqual([])
    await later.destroy()
  })

  test('behavior: a reader paging the journal by afterSeq while processes write misses no row', async () => {
    const url = await guards.url()
    const guard = await createGuard({ db: url })
    const writers = 4
    for (let i = 0; i < writers; i++) await guard.allocate(`pager-${i}`, { total: 10n ** 12n, ...USDC })
    const workers = Array.from({ length: writers }, (_, i) =>
      startWorker({ kind: 'hammer', db: url, taskId: `pager-${i}`, callers: 20, opsPerCaller: 30, seed: 11 + i * 104729 }),
    )
    let running = true
    const exited = Promise.all(workers.map((w) => w.exited)).finally(() => {
      running = false
    })
    // A consumer following the journal: each page starts after the last seq it has seen.
    const seen: bigint[] = []
    let cursor = 0n
    const follow = async () => {
      for (;;) {
        const page = await guard.journal({ afterSeq: cursor, limit: 200 })
        for (const row of page) seen.push(row.seq)
        if (page.length > 0) cursor = (page[page.length - 1] as { seq: bigint }).seq
        if (page.length < 200) return
      }
    }
    while (running) {
      await follow()
      await new Promise((r) => setTimeout(r, 1))
    }
    const exits = await exited
    for (const [i, w] of workers.entries()) expect(exits[i], w.stderr()).toEqual({ code: 0, signal: null })
    await follow()
    const all: bigint[] = []
    for (let after = 0n; ; ) {
      const page = await guard.journal({ afterSeq: after, limit: 1000 })
      if (page.length === 0) break
      for (const row of page) all.push(row.seq)
      after = (page[page.length - 1] as { seq: bigint }).seq
    }
    expect(all.length).toBeGreaterThan(writers * 20 * 30 * 0.5)
    const missed = all.filter((seq) => !seen.includes(seq))
    expect(missed).toEqual([])
    expect(seen).toEqual(all)
    await guard.destroy()
  })
})
