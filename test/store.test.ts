import Database from 'better-sqlite3'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { describe, expect, test } from 'vitest'
import { CommitUnknownError, type CreateGuardParameters, type Guard, InvalidArgumentError, bindAccount, createGuard, listBindings } from '../src/index.ts'
import * as rules from '../src/engine/rules.ts'
import { CursorMovedError } from '../src/onchain/errors.ts'
import * as reconcile from '../src/onchain/reconcile.ts'
import { statements } from '../src/engine/store/statements.ts'
import { type PgProxy, startPgProxy } from './helpers/pg-proxy.ts'
import { type StoreTarget, sqliteTarget, storeTargets } from './helpers/stores.ts'

/** Runs `fn` with a guard on a fresh database reached through a fault-injecting proxy, then removes all three. */
async function withProxiedGuard(
  target: StoreTarget,
  parameters: Omit<CreateGuardParameters, 'db'>,
  fn: (guard: Guard, proxy: PgProxy) => Promise<void>,
): Promise<void> {
  const { url, cleanup } = await target.fresh()
  const proxy = await startPgProxy(url)
  const guard = await createGuard({ ...parameters, db: proxy.url })
  try {
    await fn(guard, proxy)
  } finally {
    await guard.destroy()
    await proxy.stop()
    await cleanup()
  }
}

/** Runs `fn` with two guards (two processes' worth) on one fresh database, then removes it. */
async function withTwoGuards(target: StoreTarget, fn: (first: Guard, second: Guard) => Promise<void>): Promise<void> {
  const { url, cleanup } = await target.fresh()
  const first = await createGuard({ db: url })
  const second = await createGuard({ db: url })
  try {
    await fn(first, second)
  } finally {
    await first.destroy()
    await second.destroy()
    await cleanup()
  }
}

/** Index names of a freshly migrated database, whichever the store. */
async function indexNames(url: string): Promise<string[]> {
  if (url.startsWith('sqlite:')) {
    const db = new Database(url.slice('sqlite:'.length), { readonly: true })
    try {
      return (db.prepare("select name from sqlite_master where type = 'index'").all() as { name: string }[]).map((r) => r.name)
    } finally {
      db.close()
    }
  }
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ indexname: string }>('select indexname from pg_indexes where schemaname = current_schema()')
    return rows.map((r) => r.indexname)
  } finally {
    await client.end()
  }
}

describe.each(storeTargets)('store schema ($name)', (target) => {
  test('behavior: opening a database runs every migration, the unconfirmed-row indexes among them', async () => {
    const { url, cleanup } = await target.fresh()
    try {
      const guard = await createGuard({ db: url })
      await guard.destroy()
      const names = await indexNames(url)
      expect(names).toEqual(expect.arrayContaining(['entries_chain', 'entries_unconfirmed', 'chain_logs_unconfirmed']))
    } finally {
      await cleanup()
    }
  })

  test('behavior: chain ids past 2^31-1 (Palm: 11297108109) are kept exactly, in bindings and on-chain entries', async () => {
    const { url, cleanup } = await target.fresh()
    const guard = await createGuard({ db: url })
    try {
      const chainId = 11_297_108_109
      const hook = `0x${'11'.repeat(20)}` as const
      await guard.allocate('agent', { total: 100n, asset: 'USDC', decimals: 6 })
      await bindAccount(guard, { chainId, hook }, { account: `0x${'22'.repeat(20)}`, taskId: 'agent', token: `0x${'33'.repeat(20)}` })
      expect((await listBindings(guard, { chainId, hook })).map((b) => b.chainId)).toEqual([chainId])
      const chain = { chainId, blockNumber: 7n, blockHash: `0x${'44'.repeat(32)}`, txHash: `0x${'55'.repeat(32)}`, logIndex: 0, confirmed: false } as const
      await guard.internal.submit((ctx) =>
        rules.applyChainSpend(ctx, { taskId: 'agent', hook, amount: 9n, ref: `0x${'00'.repeat(32)}`, to: `0x${'66'.repeat(20)}`, chain }),
      )
      const [entry] = await guard.entries('agent')
      expect(entry?.chain).toMatchObject({ chainId, blockNumber: 7n })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await guard.destroy()
      await cleanup()
    }
  })
})

/** `fn` again while it fails with "schema … does not exist" (3F000), a few times at most. */
async function retried<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (error) {
      if ((error as { code?: string }).code !== '3F000' || attempt >= 20) throw error
    }
  }
}

describe.each(storeTargets.filter((t) => t.name === 'postgres'))('store tenants ($name)', (target) => {
  test('behavior: opening a guard is not disturbed by other schemas of the database being dropped meanwhile', async () => {
    // Other tenants (other schemas) come and go while this one opens its guard again and
    // again: opening looks at its own schema only, so their drops cannot fail it.
    const { url, cleanup } = await target.fresh()
    let churning = true
    let dropped = 0
    const churn = (async () => {
      while (churning) {
        const other = await target.fresh()
        await (await createGuard({ db: other.url })).destroy()
        await other.cleanup()
        dropped++
      }
    })()
    const failures: string[] = []
    try {
      for (let i = 0; i < 40 || dropped < 10; i++) {
        try {
          await (await createGuard({ db: url })).destroy()
        } catch (error) {
          failures.push((error as Error).message)
        }
      }
    } finally {
      churning = false
      await churn
      await cleanup()
    }
    expect(dropped).toBeGreaterThanOrEqual(10)
    expect(failures).toEqual([])
  })

  test('behavior: a search_path naming no existing schema is refused with InvalidArgumentError, creating nothing', async () => {
    const { url, cleanup } = await target.fresh()
    await cleanup()
    const missing = new URL(url).searchParams.get('options')?.split('=')[1] as string
    const admin = new pg.Client({ connectionString: process.env.SPENDGUARD_TEST_PG_URL })
    await admin.connect()
    // Where a store would land without a schema of its own: the database's default schema.
    const tables = async () =>
      (await admin.query<{ n: string }>("select count(*) as n from pg_tables where schemaname = 'public'")).rows[0]?.n
    try {
      const before = await tables()
      const refused = await createGuard({ db: url }).then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(refused).toBeInstanceOf(InvalidArgumentError)
      expect((refused as InvalidArgumentError).argument).toBe('search_path')
      expect((refused as Error).message).toContain(missing)
      expect(await tables()).toBe(before)
    } finally {
      await admin.end()
    }
  })

  test('behavior: connections the server drops between operations are replaced; nothing acknowledged is lost', async () => {
    const { url, cleanup } = await target.fresh()
    // A name for this guard's connections alone: other test files share the server.
    const app = `sg_${Math.random().toString(36).slice(2, 10)}`
    const named = new URL(url)
    named.searchParams.set('application_name', app)
    const guard = await createGuard({ db: named.toString() })
    const admin = new pg.Client({ connectionString: process.env.SPENDGUARD_TEST_PG_URL })
    await admin.connect()
    try {
      await guard.allocate('t', { total: 1_000n, asset: 'USDC', decimals: 6 })
      const first = await guard.reserve('t', 100n)
      expect(await guard.check('t', 1n)).toMatchObject({ allowed: true, remaining: 900n })
      const killed = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [app])
      // The writer and at least one reader were connected, and are gone.
      expect(killed.rowCount).toBeGreaterThanOrEqual(2)
      const second = await guard.reserve('t', 200n)
      expect(await guard.capture(first.id, 50n)).toMatchObject({ amount: 50n, holdId: first.id })
      expect(await guard.check('t', 1n)).toMatchObject({ allowed: true, remaining: 750n })
      expect(await guard.get('t')).toMatchObject({ spent: 50n, reserved: 200n, openHolds: 1 })
      expect((await guard.holds('t')).map((h) => [h.id, h.status])).toEqual([
        [first.id, 'captured'],
        [second.id, 'open'],
      ])
      expect((await guard.journal({ taskId: 't' })).map((j) => j.kind)).toEqual(['allocate', 'reserve', 'reserve', 'capture'])
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await admin.end()
      await guard.destroy()
      await cleanup()
    }
  })

  test('behavior: two trackers whose first batches run at once on a ledger without a cursor: one moves it, the other finds it moved', async () => {
    await withTwoGuards(target, async (first, second) => {
      const key = { chainId: 31337, hook: `0x${'11'.repeat(20)}` }
      const batch = (number: bigint) => ({
        ...key,
        logs: [],
        blocks: [],
        from: null,
        to: { number, hash: `0x${number.toString(16).padStart(64, '0')}` },
        confirmedUpTo: -1n,
        pruneBelow: 0n,
      })
      // The second reads "no cursor" first, then waits while the first commits its batch.
      let firstDone!: () => void
      const committed = new Promise<void>((resolve) => (firstDone = resolve))
      let secondRead!: () => void
      const read = new Promise<void>((resolve) => (secondRead = resolve))
      const late = second.internal.submit(async (ctx) => {
        const chain = {
          ...ctx.tx.chain,
          cursor: async (chainId: number, hook: string) => {
            const cursor = await ctx.tx.chain.cursor(chainId, hook)
            secondRead()
            await committed
            return cursor
          },
        }
        return reconcile.applyBatch({ ...ctx, tx: { ...ctx.tx, chain } }, batch(900n))
      })
      await read
      await first.internal.submit((ctx) => reconcile.applyBatch(ctx, batch(100n)))
      firstDone()
      await expect(late).rejects.toBeInstanceOf(CursorMovedError)
      // The first batch's cursor stands: the blocks after it are still to be read.
      expect(await first.internal.store.chain.cursor(key.chainId, key.hook)).toMatchObject({ blockNumber: 100n })
    })
  })

  test('behavior: a binding committed while a batch applies does not reach that batch: its logs see the bindings it was checked for', async () => {
    await withTwoGuards(target, async (tracking, binding) => {
      const hook = `0x${'11'.repeat(20)}` as const
      const account = `0x${'22'.repeat(20)}` as const
      const token = `0x${'33'.repeat(20)}` as const
      await tracking.allocate('agent', { total: 1_000n, asset: 'USDC', decimals: 6 })
      const log = {
        blockNumber: 9n,
        blockHash: `0x${'ab'.repeat(32)}`,
        txHash: `0x${'cd'.repeat(32)}`,
        logIndex: 0,
        account,
        token,
        sender: `0x${'44'.repeat(20)}`,
        to: `0x${'55'.repeat(20)}`,
        amount: 5n,
        windowSpent: 5n,
        cumulativeSpent: 5n,
        ref: `0x${'00'.repeat(32)}`,
      } as const
      // The batch was checked for no bound pair; the account is bound, and committed, just after
      // the batch's transaction read the bindings.
      const result = await tracking.internal.submit(async (ctx) => {
        const chain = {
          ...ctx.tx.chain,
          bindings: async (chainId: number, hookAddress: string) => {
            const rows = await ctx.tx.chain.bindings(chainId, hookAddress)
            await bindAccount(binding, { chainId, hook }, { account, taskId: 'agent', token })
            return rows
          },
        }
        return reconcile.applyBatch(
          { ...ctx, tx: { ...ctx.tx, chain } },
          { chainId: 31337, hook, logs: [log as never], blocks: [], from: null, to: { number: 9n, hash: log.blockHash }, confirmedUpTo: -1n, pruneBelow: 0n, checkedPairs: new Set() },
        )
      })
      // Kept as unbound, as the batch saw it: never a spend whose page no counter checked.
      expect(result).toMatchObject({ applied: 0, unbound: 1 })
      expect(await tracking.get('agent')).toMatchObject({ spent: 0n })
    })
  })

  test('behavior: a connection the server drops while a read holds it fails that read, never the process', async () => {
    const { url, cleanup } = await target.fresh()
    const app = `sg_${Math.random().toString(36).slice(2, 10)}`
    const named = new URL(url)
    named.searchParams.set('application_name', app)
    const guard = await createGuard({ db: named.toString() })
    const admin = new pg.Client({ connectionString: process.env.SPENDGUARD_TEST_PG_URL })
    await admin.connect()
    try {
      await guard.allocate('t', { total: 1_000n, asset: 'USDC', decimals: 6 })
      await guard.record('t', { amount: 10n })
      // A read snapshot (as verify() takes) keeps its pooled client between its queries; the
      // server ends every connection of this guard meanwhile. The 'error' the client then
      // emits, with the pool's own listener gone while it is lent out, must not escape.
      const read = guard.internal.store.snapshot(async (db) => {
        await db.selectFrom('budgets').selectAll().execute()
        await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [app])
        await new Promise((resolve) => setTimeout(resolve, 300))
        return db.selectFrom('journal').selectAll().execute()
      })
      await expect(read).rejects.toThrow()
      // The guard goes on with fresh connections.
      expect(await guard.record('t', { amount: 5n })).toMatchObject({ amount: 5n })
      expect(await guard.get('t')).toMatchObject({ spent: 15n })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await admin.end()
      await guard.destroy()
      await cleanup()
    }
  })

  test('behavior: a commit lost with the connection, before or after the server committed, counts once, and every caller gets its result', async () => {
    await withProxiedGuard(target, {}, async (guard, proxy) => {
      await guard.allocate('t', { total: 1_000n, asset: 'USDC', decimals: 6 })
      for (let round = 0; round < 3; round++) {
        // The answer lost after the server committed (the connection cut, or a FATAL error and a
        // server restarting), or the COMMIT lost before it got there.
        if (round === 0) proxy.loseNextCommit('cut')
        else if (round === 1) proxy.dropNextCommit()
        else proxy.loseNextCommit('fatal', { refuse: 2 })
        // Callers of one turn share a transaction or two; the first to commit loses its answer.
        const results = await Promise.all([
          guard.record('t', { amount: 100n }),
          guard.record('t', { amount: 50n, id: `inv-${round}` }),
          guard.reserve('t', 10n),
        ])
        expect(proxy.lost).toBe(round + 1)
        expect(results.map((r) => r.amount)).toEqual([100n, 50n, 10n])
      }
      // One operation alone in its transaction: a failure could not hide in a batch run again one by one.
      proxy.dropNextCommit()
      expect(await guard.record('t', { amount: 7n })).toMatchObject({ amount: 7n })
      proxy.loseNextCommit('fatal', { refuse: 1 })
      expect(await guard.record('t', { amount: 3n })).toMatchObject({ amount: 3n })
      // The server's side of the connection stays open, idle in the transaction and holding the
      // budget's lock: its backend is ended, the transaction rolls back, and it runs again.
      proxy.dropNextCommit({ keepServerSide: true })
      expect(await guard.record('t', { amount: 4n })).toMatchObject({ amount: 4n })
      expect(await guard.record('t', { amount: 6n })).toMatchObject({ amount: 6n })
      expect(proxy.lost).toBe(6)
      // The same, cut before COMMIT: after the statement that locked the budget (sent with BEGIN).
      proxy.cutClientAfter(1)
      expect(await guard.record('t', { amount: 5n })).toMatchObject({ amount: 5n })
      expect(proxy.lost).toBe(7)
      // The same, cut before the answer to BEGIN and its statement came back: the client never
      // learned the transaction's id, yet its backend, holding the budget's lock, is ended.
      proxy.cutClientAfterBegin()
      expect(await guard.record('t', { amount: 2n })).toMatchObject({ amount: 2n })
      expect(proxy.lost).toBe(8)
      expect(proxy.refused).toBe(3)
      expect(await guard.get('t')).toMatchObject({ spent: 477n, reserved: 30n, entryCount: 12, openHolds: 3 })
      expect(await guard.entries('t')).toHaveLength(12)
      // Each operation journaled once (batches may split a round differently).
      const kinds = (await guard.journal({ taskId: 't' })).map((j) => j.kind)
      expect(kinds.sort()).toEqual(['allocate', ...Array(12).fill('record'), ...Array(3).fill('reserve')])
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })
  })

  test('behavior: when the server cannot be asked in time whether a lost commit landed, its callers get CommitUnknownError; retried with their id and key, they answer from what landed', async () => {
    const lostCommitWaitMs = 1_000
    await withProxiedGuard(target, { lostCommitWaitMs }, async (guard, proxy) => {
      await guard.allocate('t', { total: 1_000n, asset: 'USDC', decimals: 6 })
      // The server commits, its answer is lost with the connection, and it refuses every
      // connection after: nobody can ask it whether the transaction committed.
      proxy.loseNextCommit('cut', { refuse: Number.POSITIVE_INFINITY })
      const began = Date.now()
      const outcomes = await Promise.allSettled([
        guard.record('t', { id: 'inv-1', amount: 100n }),
        guard.reserve('t', 10n, { key: 'k-1' }),
      ])
      const waitedMs = Date.now() - began
      expect(proxy.lost).toBe(1)
      expect(proxy.refused).toBeGreaterThan(0)
      for (const outcome of outcomes) {
        expect(outcome.status).toBe('rejected')
        const reason = (outcome as PromiseRejectedResult).reason
        expect(reason).toBeInstanceOf(CommitUnknownError)
        expect(reason).toMatchObject({ name: 'CommitUnknownError', code: 'COMMIT_UNKNOWN' })
      }
      // The deadline given applied, not the default 30 s.
      expect(waitedMs).toBeGreaterThanOrEqual(lostCommitWaitMs)
      expect(waitedMs).toBeLessThan(10_000)

      proxy.acceptAgain()
      // The commit had landed: the retries answer from it, and nothing counts twice.
      expect(await guard.record('t', { id: 'inv-1', amount: 100n })).toMatchObject({ id: 'inv-1', amount: 100n })
      const hold = await guard.reserve('t', 10n, { key: 'k-1' })
      expect(await guard.holds('t')).toEqual([hold])
      expect(await guard.get('t')).toMatchObject({ spent: 100n, reserved: 10n, entryCount: 1, openHolds: 1 })
      // Each journaled once (the two calls reach the writer in either order).
      expect((await guard.journal({ taskId: 't' })).map((j) => j.kind).sort()).toEqual(['allocate', 'record', 'reserve'])
      // The writer goes on over a new connection.
      expect(await guard.capture(hold.id, 10n)).toMatchObject({ amount: 10n })
      expect(await guard.get('t')).toMatchObject({ spent: 110n, reserved: 0n, openHolds: 0 })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    })
  })

  test('behavior: the store introspects its own schema exactly as kysely does, and no other schema', async () => {
    const mine = await target.fresh()
    const other = await target.fresh()
    const guard = await createGuard({ db: mine.url })
    await (await createGuard({ db: other.url })).destroy()
    const reference = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: mine.url, max: 1 }) }) })
    try {
      const schema = new URL(mine.url).searchParams.get('options')?.split('=')[1]
      const ours = await guard.internal.store.db.introspection.getTables({ withInternalKyselyTables: true })
      // kysely's own introspector reads every schema, and fails while another test file drops
      // one (the very failure the store avoids): asked again until it gets through.
      const theirs = (await retried(() => reference.introspection.getTables({ withInternalKyselyTables: true }))).filter(
        (t) => t.schema === schema,
      )
      expect(ours.map((t) => t.name)).toContain('kysely_migration')
      expect(ours.map((t) => t.name)).toContain('journal')
      expect(new Set(ours.map((t) => t.schema))).toEqual(new Set([schema]))
      expect(ours).toEqual(theirs)
    } finally {
      await reference.destroy()
      await guard.destroy()
      await mine.cleanup()
      await other.cleanup()
    }
  })
})

describe.each(storeTargets)('store durability ($name)', (target) => {
  test('default: the writer connection commits durably (SQLite synchronous=FULL, PostgreSQL synchronous_commit=on)', async () => {
    const { url, cleanup } = await target.fresh()
    try {
      const guard = await createGuard({ db: url })
      try {
        await expect(guard.internal.store.durability()).resolves.toBe(target.name === 'sqlite' ? 'FULL' : 'on')
      } finally {
        await guard.destroy()
      }
    } finally {
      await cleanup()
    }
  })
})

test('default: a SQLite ledger file is in WAL mode, so readers never block the writer', async () => {
  const { url, cleanup } = await sqliteTarget.fresh()
  try {
    await (await createGuard({ db: url })).destroy()
    // WAL is a property of the file: a new connection finds it set.
    const db = new Database(url.slice('sqlite:'.length), { readonly: true })
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    } finally {
      db.close()
    }
  } finally {
    await cleanup()
  }
})

test('behavior: sqlite:…?synchronous=NORMAL lowers the writer connection to NORMAL', async () => {
  const { url, cleanup } = await sqliteTarget.fresh()
  try {
    const guard = await createGuard({ db: `${url}?synchronous=normal` })
    try {
      await expect(guard.internal.store.durability()).resolves.toBe('NORMAL')
    } finally {
      await guard.destroy()
    }
  } finally {
    await cleanup()
  }
})

describe('store query plans (sqlite)', () => {
  test('behavior: confirming on-chain rows searches only the unconfirmed ones, not every entry of the hook', async () => {
    const { url, cleanup } = await sqliteTarget.fresh()
    try {
      const guard = await createGuard({ db: url })
      await guard.destroy()
      const db = new Database(url.slice('sqlite:'.length), { readonly: true })
      try {
        const q = statements('sqlite')
        const plan = (text: string) =>
          (db.prepare(`explain query plan ${text}`).all(31337, '0xhook', '100') as { detail: string }[]).map((r) => r.detail).join('\n')
        expect(plan(q.confirmEntriesUpTo)).toMatch(/USING INDEX entries_unconfirmed /)
        expect(plan(q.confirmLogsUpTo)).toMatch(/USING INDEX chain_logs_unconfirmed /)
      } finally {
        db.close()
      }
    } finally {
      await cleanup()
    }
  })
})

describe('one file, two guards in one process (sqlite)', () => {
  test('behavior: writers of two guards in one process take turns and never hold up the event loop', async () => {
    const { url, cleanup } = await sqliteTarget.fresh()
    const a = await createGuard({ db: url })
    const b = await createGuard({ db: url })
    // The longest time a 10 ms timer waited: SQLite's busy wait blocks the thread it runs in.
    let stall = 0
    let last = performance.now()
    const beat = setInterval(() => {
      stall = Math.max(stall, performance.now() - last)
      last = performance.now()
    }, 10)
    try {
      await a.allocate('a', { total: 10n ** 20n, asset: 'USDC', decimals: 6 })
      await b.allocate('b', { total: 10n ** 20n, asset: 'USDC', decimals: 6 })
      const spend = async (guard: typeof a, taskId: string) => {
        for (let i = 0; i < 100; i++) await Promise.all([guard.record(taskId, { amount: 1n }), guard.record(taskId, { amount: 1n })])
      }
      // A third guard opens (and migrates) on the file meanwhile, twice.
      const reopen = async () => {
        for (let i = 0; i < 2; i++) await (await createGuard({ db: url })).destroy()
      }
      await Promise.all([spend(a, 'a'), spend(b, 'b'), reopen()])
      // A guard waiting for the other's write lock in the same thread stalled it for the whole busy timeout (5 s).
      expect(stall).toBeLessThan(1_000)
      expect((await a.get('b')).spent).toBe(200n)
      expect((await b.get('a')).spent).toBe(200n)
      expect(await a.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      clearInterval(beat)
      await a.destroy()
      await b.destroy()
      await cleanup()
    }
  })
})

describe('writer row cache (sqlite)', () => {
  test('behavior: a guard sees budgets and holds another connection changed since its last transaction', async () => {
    const { url, cleanup } = await sqliteTarget.fresh()
    const a = await createGuard({ db: url })
    const b = await createGuard({ db: url })
    try {
      await a.allocate('shared', { total: 100n, asset: 'USDC', decimals: 6 })
      const held = await a.reserve('shared', 60n)
      // b spends through its own connection: a's last view of the budget is now stale.
      await b.record('shared', { amount: 30n })
      await expect(a.reserve('shared', 20n)).rejects.toMatchObject({ name: 'BudgetExceededError', remaining: 10n })
      // b captures a's hold: a must not settle it a second time.
      await b.capture(held.id, 50n)
      await expect(a.capture(held.id, 40n)).rejects.toMatchObject({ name: 'IdempotencyConflictError' })
      await expect(a.release(held.id)).rejects.toMatchObject({ name: 'HoldNotOpenError' })
      const budget = await a.get('shared')
      expect({ spent: budget.spent, reserved: budget.reserved, remaining: budget.remaining }).toEqual({ spent: 80n, reserved: 0n, remaining: 20n })
      await expect(a.verify()).resolves.toEqual({ ok: true, problems: [] })
    } finally {
      await a.destroy()
      await b.destroy()
      await cleanup()
    }
  })
})
