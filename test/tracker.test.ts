import { type Address, type Hex, type PublicClient, TimeoutError, createPublicClient, custom, encodeFunctionData, encodePacked, erc20Abi, http, maxUint256, numberToHex, zeroAddress, zeroHash } from 'viem'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import {
  type AlertEvent,
  type CreateTrackerParameters,
  type Guard,
  NodeBehindWindowError,
  type OverspentEvent,
  ReorgTooDeepError,
  RpcInconsistentError,
  type UnreservedSpendEvent,
  createTracker,
} from '../src/index.ts'
import { minimalAccountAbi } from '../src/onchain/abi.generated.ts'
import * as reconcile from '../src/onchain/reconcile.ts'
import { type LocalStack, type Payment, deployLocalStack } from '../src/onchain/local.ts'
import { type AnvilInstance, startAnvil } from './helpers/anvil.ts'
import { startFaultyRpc } from './helpers/faulty-rpc.ts'
import { useGuards } from './helpers/guard.ts'
import { startWorker } from './helpers/processes.ts'
import { storeTargets } from './helpers/stores.ts'

const USDC = { asset: 'USDC', decimals: 6 } as const
const peer = (i: number) => `0x${(0x1000 + i).toString(16).padStart(40, '0')}` as Address
const ref = (i: number) => `0x${i.toString(16).padStart(64, '0')}` as Hex

async function rpc(url: string, method: string, params: unknown[] = []) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  })
  const body = (await response.json()) as { result?: unknown; error?: { message: string } }
  if (body.error) throw new Error(body.error.message)
  return body.result
}

/** `count` transfers in batch transactions of `perTx`; resolves with the amounts sent. */
async function spendMany(stack: LocalStack, count: number, perTx: number, amountOf = (i: number) => BigInt(1 + (i % 97))) {
  const amounts: bigint[] = []
  for (let i = 0; i < count; i += perTx) {
    const batch = []
    for (let j = i; j < Math.min(count, i + perTx); j++) {
      amounts.push(amountOf(j))
      batch.push({ to: peer(j % 50), amount: amountOf(j) })
    }
    await stack.payBatch(batch)
  }
  return amounts
}

const sum = (xs: bigint[]) => xs.reduce((a, b) => a + b, 0n)

describe.each(storeTargets)('tracker on $name', (target) => {
  const guards = useGuards(target)
  let anvil: AnvilInstance
  beforeAll(async () => {
    anvil = await startAnvil()
  })
  afterAll(async () => {
    await anvil.stop()
  })

  async function setup(options: { total?: bigint; hardLimit?: boolean; guard?: Guard } = {}) {
    const stack = await deployLocalStack({ rpcUrl: anvil.rpcUrl })
    const fromBlock = (await stack.publicClient.getBlockNumber()) + 1n
    const guard = options.guard ?? (await guards.guard({ hardLimit: options.hardLimit }))
    await guard.allocate('agent', { total: options.total ?? 10n ** 30n, ...USDC })
    /** A tracker of this stack's hook from `fromBlock` into `guard`; `options` add to or replace the defaults. */
    const follow = (options: Partial<CreateTrackerParameters> = {}) =>
      createTracker({ guard, rpcUrl: anvil.rpcUrl, chainId: anvil.chainId, hook: stack.hook, fromBlock, ...options })
    return { stack, guard, fromBlock, follow }
  }

  test('default: backfills 5,000 logs over many blocks, totals exact', async () => {
    const { stack, guard, follow } = await setup()
    const amounts = await spendMany(stack, 5_000, 50)
    const tracker = follow({
      confirmations: 5,
      reorgDepthMax: 16,
      pageBlocks: { initialBlocks: 8 },
    })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    const result = await tracker.syncOnce()
    expect(result).toMatchObject({ logs: 5_000, applied: 5_000, duplicates: 0, unbound: 0, foreign: 0 })
    const budget = await guard.get('agent')
    expect(budget.spent).toBe(sum(amounts))
    expect(budget.entryCount).toBe(5_000)
    const entries = await guard.entries('agent')
    expect(entries.every((e) => e.source === 'onchain' && e.chain?.chainId === anvil.chainId)).toBe(true)
    expect(new Set(entries.map((e) => `${e.chain?.blockHash}:${e.chain?.logIndex}`)).size).toBe(5_000)
    const status = await tracker.status()
    expect(status.cursor?.blockNumber).toBe(result.head)
    expect(status.lagBlocks).toBe(0n)
    expect(status.confirmed + status.unconfirmed).toBe(5_000)
    expect(status.unconfirmed).toBeGreaterThan(0)
    // A second pass finds nothing new.
    expect(await tracker.syncOnce()).toMatchObject({ logs: 0, applied: 0 })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: live follow sees a new spend within one poll interval', async () => {
    const { stack, guard, follow } = await setup()
    const pollIntervalMs = 400
    const tracker = follow({ pollIntervalMs })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    await tracker.syncOnce()
    tracker.start()
    try {
      await stack.pay({ to: peer(1), amount: 1234n })
      const mined = Date.now()
      while ((await guard.get('agent')).spent !== 1234n) {
        expect(Date.now() - mined).toBeLessThan(pollIntervalMs + 300)
        await new Promise((r) => setTimeout(r, 10))
      }
      expect((await tracker.status()).running).toBe(true)
    } finally {
      await tracker.stop()
    }
    expect((await tracker.status()).running).toBe(false)
  })

  test('behavior: refs capture their hold, unreserved spends alert, unbound and foreign spends are kept apart', async () => {
    const { stack, guard, follow } = await setup({ total: 10_000n })
    const other = await deployLocalStack({ rpcUrl: anvil.rpcUrl })
    const unreserved: UnreservedSpendEvent[] = []
    guard.on('unreserved_spend', (e) => void unreserved.push(e))
    const less = await guard.reserve('agent', 1_000n)
    const more = await guard.reserve('agent', 1_000n)
    const untouched = await guard.reserve('agent', 500n)
    await stack.pay({ to: peer(1), amount: 700n, ref: less.ref })
    await stack.pay({ to: peer(2), amount: 1_300n, ref: more.ref })
    await stack.pay({ to: peer(3), amount: 250n, ref: ref(999) })
    // The same account pays with another token: foreign to the task's asset.
    await stack.mint({ to: stack.account, amount: 10_000n, token: other.token })
    await stack.pay({ to: peer(4), amount: 5_000n, token: other.token })
    const tracker = follow()
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    const result = await tracker.syncOnce()
    expect(result).toMatchObject({ applied: 3, foreign: 1 })

    const holds = new Map((await guard.holds('agent')).map((h) => [h.id, h]))
    expect(holds.get(less.id)).toMatchObject({ status: 'captured', capturedAmount: 700n })
    expect(holds.get(more.id)).toMatchObject({ status: 'captured', capturedAmount: 1_300n })
    expect(holds.get(untouched.id)).toMatchObject({ status: 'open' })
    const budget = await guard.get('agent')
    expect(budget).toMatchObject({ spent: 700n + 1_300n + 250n, reserved: 500n })
    await guard.flushAlerts()
    expect(unreserved).toHaveLength(1)
    expect(unreserved[0]).toMatchObject({ taskId: 'agent', amount: 250n, count: 1, chainId: anvil.chainId })
    expect(unreserved[0]?.entryIds).toHaveLength(1)
    const status = await tracker.status()
    expect(status.unassigned.foreign).toBe(1)
    expect(status.unassigned.recent.find((l) => l.disposition === 'foreign')).toMatchObject({
      amount: 5_000n,
      token: other.token.toLowerCase(),
      taskId: 'agent',
    })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: a payment pay declared paid on chain counts once, never below what the chain moved; a settled hold\'s ref on any other log counts whole', async () => {
    const { stack, guard, follow } = await setup({ total: 10_000n })
    const tracker = follow()
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    const unreserved: UnreservedSpendEvent[] = []
    guard.on('unreserved_spend', (e) => void unreserved.push(e))
    /** pay() declared paid on chain: `fn` sends `transfers` (one transaction) carrying the hold's ref and says it settled `settled`. */
    const payOnChain = (maxAmount: bigint, transfers: Payment[], settled: bigint) =>
      guard.pay(
        'agent',
        maxAmount,
        async ({ hold }) => {
          const carrying = transfers.map((t) => ({ ...t, ref: hold.ref }))
          await (carrying.length === 1 ? stack.pay(carrying[0] as Payment) : stack.payBatch(carrying))
          return { settled }
        },
        { onchain: true },
      )
    // pay() declared paid on chain, whose function says it settled less than it moved.
    const viaPay = await payOnChain(500n, [{ to: peer(2), amount: 400n }], 100n)
    // Another declared payment, and one transaction paying twice with its ref: the second transfer is another payment.
    const twice = await payOnChain(
      100n,
      [
        { to: peer(3), amount: 10n },
        { to: peer(4), amount: 20n },
      ],
      10n,
    )
    // A hold captured by hand may have paid off the chain: a log carrying its ref is a payment of its own.
    const byHand = await guard.reserve('agent', 1_000n)
    await guard.capture(byHand.id, 300n)
    await stack.pay({ to: peer(1), amount: 300n, ref: byHand.ref })
    await tracker.syncOnce()
    expect((await guard.get('agent')).spent).toBe(400n + 10n + 20n + 300n + 300n)

    // A declared payment's ref used again later is another payment too.
    await stack.pay({ to: peer(5), amount: 50n, ref: (await guard.hold(viaPay.holdId as string)).ref as Hex })
    await tracker.syncOnce()
    expect((await guard.get('agent')).spent).toBe(1_030n + 50n)
    await guard.flushAlerts()
    expect(unreserved.reduce((sum, e) => sum + e.amount, 0n)).toBe(300n + 20n + 300n + 50n)

    // Entries of one batch share their time: compared in an order of their own.
    const chain = (await guard.entries('agent')).filter((e) => e.source === 'onchain')
    const byHoldAndAmount = (rows: [string | undefined, bigint][]) => rows.map(([h, a]) => `${h ?? '-'} ${a}`).sort()
    expect(byHoldAndAmount(chain.map((e) => [e.holdId, e.amount]))).toEqual(
      byHoldAndAmount([
        [viaPay.holdId, 300n],
        [twice.holdId, 0n],
        [undefined, 20n],
        [undefined, 300n],
        [undefined, 50n],
      ]),
    )
    expect(await guard.hold(viaPay.holdId as string)).toMatchObject({ status: 'captured', capturedAmount: 100n, entryId: viaPay.id })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })

    // A reorg drops the transfer beyond pay's settlement: the settlement stays, its hold captured.
    const later = await payOnChain(1_000n, [{ to: peer(6), amount: 900n }], 100n)
    await tracker.syncOnce()
    expect((await guard.get('agent')).spent).toBe(1_080n + 900n)
    await rpc(anvil.rpcUrl, 'anvil_reorg', [1, []])
    expect(await tracker.syncOnce()).toMatchObject({ reorgs: 1, reverted: 1 })
    expect((await guard.get('agent')).spent).toBe(1_080n + 100n)
    expect(await guard.hold(later.holdId as string)).toMatchObject({ status: 'captured', capturedAmount: 100n })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: pay declared paid on chain whose hold ends while it pays counts the payment once, whether the tracker or pay records it first', async () => {
    const { stack, guard, follow } = await setup({ total: 10_000n })
    const tracker = follow()
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    // The tracker first: the hold is released, the log is applied, then pay settles.
    const first = await guard.pay(
      'agent',
      300n,
      async ({ hold }) => {
        await stack.pay({ to: peer(1), amount: 250n, ref: hold.ref })
        await guard.release(hold.id)
        await tracker.syncOnce()
        return { settled: 250n }
      },
      { key: 'tracker-first', onchain: true },
    )
    expect(first).toMatchObject({ source: 'onchain', amount: 250n })
    expect((await guard.get('agent')).spent).toBe(250n)
    // A retry with the key answers with the same entry, and pays nothing.
    expect(await guard.pay('agent', 300n, () => Promise.reject(new Error('paid again')), { key: 'tracker-first', onchain: true })).toEqual(first)

    // pay first: the hold is released, pay records the spend, then the tracker sees the log.
    const second = await guard.pay(
      'agent',
      300n,
      async ({ hold }) => {
        await stack.pay({ to: peer(2), amount: 120n, ref: hold.ref })
        await guard.release(hold.id)
        return { settled: 120n }
      },
      { onchain: true },
    )
    expect(second).toMatchObject({ source: 'offchain', amount: 120n })
    await tracker.syncOnce()
    expect((await guard.get('agent')).spent).toBe(370n)

    // The tracker first, and fn says it settled more than the log moved: the larger counts.
    await guard.pay(
      'agent',
      500n,
      async ({ hold }) => {
        await stack.pay({ to: peer(3), amount: 100n, ref: hold.ref })
        await guard.release(hold.id)
        await tracker.syncOnce()
        return { settled: 400n }
      },
      { onchain: true },
    )
    expect((await guard.get('agent')).spent).toBe(370n + 400n)
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: spends of an unbound account are reported, never summed', async () => {
    const { stack, guard, follow } = await setup()
    await stack.pay({ to: peer(1), amount: 77n })
    const tracker = follow()
    expect(await tracker.syncOnce()).toMatchObject({ logs: 1, applied: 0, unbound: 1 })
    expect((await guard.get('agent')).spent).toBe(0n)
    const status = await tracker.status()
    expect(status.unassigned.unbound).toBe(1)
    expect(status.unassigned.recent[0]).toMatchObject({ disposition: 'unbound', amount: 77n, account: stack.account.toLowerCase() })
  })

  test('behavior: a binding naming a sender takes only that sender\'s spends; a sender-less binding takes the rest', async () => {
    const { stack, guard, follow } = await setup()
    await guard.allocate('other', { total: 10n ** 30n, ...USDC })
    // The account's only callers are its owner and the account itself. A payment the account
    // makes by calling its own `execute` reaches the hook with the account as msg.sender, so
    // SpendRecorded names the account, not the owner, as sender.
    const payAsAccount = async (payments: Payment[]) => {
      const data = encodeFunctionData({
        abi: minimalAccountAbi,
        functionName: 'execute',
        args: [zeroHash, encodePacked(['address', 'uint256', 'bytes'], [stack.account, 0n, stack.batchCalldata(payments)])],
      })
      const hash = (await rpc(anvil.rpcUrl, 'eth_sendTransaction', [
        { from: stack.owner, to: stack.account, data, gas: numberToHex(3_000_000) },
      ])) as Hex
      await stack.mined(hash)
      return hash
    }
    const txHashes = async (taskId: string) => (await guard.entries(taskId)).map((e) => e.chain?.txHash).sort()

    const byOwner = [await stack.pay({ to: peer(1), amount: 100n }), await stack.pay({ to: peer(2), amount: 200n })]
    const byAccount = await payAsAccount([{ to: peer(3), amount: 7n }])
    const tracker = follow()
    await tracker.bind({ account: stack.account, sender: stack.owner, taskId: 'agent', token: stack.token })
    // Only the owner's spends are bound; the account's own spend has no binding.
    expect(await tracker.syncOnce()).toMatchObject({ logs: 3, applied: 2, unbound: 1 })
    expect((await guard.get('agent')).spent).toBe(300n)
    expect(await txHashes('agent')).toEqual([...byOwner].sort())
    const status = await tracker.status()
    expect(status.unassigned.unbound).toBe(1)
    expect(status.unassigned.recent[0]).toMatchObject({
      disposition: 'unbound',
      amount: 7n,
      account: stack.account.toLowerCase(),
      sender: stack.account.toLowerCase(),
      txHash: byAccount,
    })

    // A sender-less binding of the same account takes every other sender; the owner's
    // spends still go to the binding that names it.
    await tracker.bind({ account: stack.account, taskId: 'other', token: stack.token })
    const owner2 = await stack.pay({ to: peer(4), amount: 40n })
    const account2 = await payAsAccount([
      { to: peer(5), amount: 5n },
      { to: peer(6), amount: 6n },
    ])
    expect(await tracker.syncOnce()).toMatchObject({ logs: 3, applied: 3, unbound: 0 })
    expect((await guard.get('agent')).spent).toBe(340n)
    expect(await txHashes('agent')).toEqual([...byOwner, owner2].sort())
    expect((await guard.get('other')).spent).toBe(11n)
    expect(await txHashes('other')).toEqual([account2, account2])
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: a spend is confirmed once it is `confirmations` blocks below the head, not before', async () => {
    const { stack, guard, follow } = await setup()
    const confirmations = 4
    // Eight spends, one block each.
    for (let i = 0; i < 8; i++) await stack.pay({ to: peer(i), amount: 10n + BigInt(i) })
    const tracker = follow({
      confirmations,
      reorgDepthMax: 16,
    })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    const confirmedState = async () =>
      (await guard.entries('agent'))
        .map((e) => ({ block: e.chain?.blockNumber as bigint, confirmed: e.chain?.confirmed }))
        .sort((a, b) => (a.block < b.block ? -1 : 1))
    const expectConfirmedUpTo = async (head: bigint, count: number) => {
      const state = await confirmedState()
      expect(state.map((s) => s.block)).toEqual(Array.from({ length: 8 }, (_, i) => state[0]!.block + BigInt(i)))
      expect(state.map((s) => s.confirmed)).toEqual(state.map((s) => s.block <= head - BigInt(confirmations)))
      expect(state.filter((s) => s.confirmed)).toHaveLength(count)
      expect(await tracker.status()).toMatchObject({ confirmed: count, unconfirmed: 8 - count })
    }

    const first = await tracker.syncOnce()
    expect(first).toMatchObject({ applied: 8 })
    // The last spend is the head: the four spends at depth 4 or more are confirmed.
    expect((await confirmedState()).at(-1)?.block).toBe(first.head)
    await expectConfirmedUpTo(first.head, 4)

    // One more block: one more spend reaches the depth.
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(1)])
    const second = await tracker.syncOnce()
    expect(second).toMatchObject({ head: first.head + 1n, applied: 0 })
    await expectConfirmedUpTo(second.head, 5)

    // `confirmations` blocks past the last spend: all confirmed.
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(confirmations - 1)])
    const third = await tracker.syncOnce()
    expect(third.head).toBe(first.head + BigInt(confirmations))
    await expectConfirmedUpTo(third.head, 8)
    expect((await confirmedState()).every((s) => s.confirmed === true)).toBe(true)
  })

  test('behavior: reorgs of depth 1, 3 and 10 leave the ledger equal to the canonical chain', async () => {
    const { stack, guard, fromBlock, follow } = await setup({ total: 100_000n })
    const alerts: AlertEvent[] = []
    guard.on('alert', (a) => void alerts.push(a))
    const tracker = follow({
      confirmations: 2,
      reorgDepthMax: 32,
    })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    const hold = await guard.reserve('agent', 5_000n)

    for (const depth of [1, 3, 10]) {
      // Blocks that will be replaced: one carries the hold's ref, the rest plain spends.
      for (let i = 0; i < depth; i++)
        await stack.pay({ to: peer(i), amount: 6_000n + BigInt(i), ref: i === 0 && depth === 3 ? hold.ref : undefined })
      await tracker.syncOnce()
      await guard.flushAlerts()
      const before = await guard.get('agent')
      expect(before.spent).toBeGreaterThan(0n)

      // Replacements drop some spends, change one and add another.
      const replacement = stack.batchCalldata([
        { to: peer(90), amount: 111n },
        { to: peer(91), amount: 222n },
      ])
      await rpc(anvil.rpcUrl, 'anvil_reorg', [
        depth,
        [[{ from: stack.owner, to: stack.account, data: replacement, gas: numberToHex(3_000_000) }, depth - 1]],
      ])
      const result = await tracker.syncOnce()
      expect(result.reorgs).toBeGreaterThanOrEqual(1)

      // The ledger equals what the canonical chain implies.
      const canonical = (await rpc(anvil.rpcUrl, 'eth_getLogs', [
        { address: stack.hook, fromBlock: numberToHex(fromBlock), toBlock: 'latest' },
      ])) as { data: string }[]
      const expected = canonical.reduce((a, l) => a + BigInt(`0x${l.data.slice(66, 130)}`), 0n)
      const after = await guard.get('agent')
      expect(after.spent).toBe(expected)
      const live = (await guard.entries('agent')).filter((e) => !e.reverted)
      expect(live).toHaveLength(canonical.length)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    }
    // The hold captured in the orphaned blocks is open again.
    expect((await guard.holds('agent'))[0]).toMatchObject({ id: hold.id, status: 'open' })
    // 0.5 fired when the depth-10 blocks pushed spent past 50,000; the reorg took them
    // away, so the threshold re-armed and fires again on the next crossing.
    expect(alerts.map((a) => a.threshold)).toEqual([0.5])
    expect((await guard.get('agent')).spent).toBeLessThan(50_000n)
    await stack.pay({ to: peer(7), amount: 55_000n })
    await tracker.syncOnce()
    await guard.flushAlerts()
    expect(alerts.map((a) => a.threshold)).toEqual([0.5, 0.5])
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: a reorg deeper than the kept window stops the tracker with a clear error', async () => {
    const { stack, guard, follow } = await setup()
    const tracker = follow({ reorgDepthMax: 4 })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    for (let i = 0; i < 12; i++) await stack.pay({ to: peer(i), amount: 10n })
    await tracker.syncOnce()
    const spent = (await guard.get('agent')).spent
    await rpc(anvil.rpcUrl, 'anvil_reorg', [10, []])
    const error = await tracker.syncOnce().catch((e) => e)
    expect(error).toBeInstanceOf(ReorgTooDeepError)
    expect(error).toMatchObject({ code: 'REORG_TOO_DEEP', chainId: anvil.chainId, reorgDepthMax: 4 })
    expect(error.message).toContain('deeper than the 4 blocks kept')
    expect((await guard.get('agent')).spent).toBe(spent)
  })

  test('behavior: a reorg within the window that also replaces the block before fromBlock is rolled back whole', async () => {
    const { stack, guard, follow } = await setup()
    // Blocks of padding, so the reorg below leaves the deployment alone; the tracker starts at the tip.
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(10)])
    const fromBlock = (await stack.publicClient.getBlockNumber()) + 1n
    const tracker = follow({ fromBlock, reorgDepthMax: 12, confirmations: 2 })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    await stack.pay({ to: peer(1), amount: 5n })
    await stack.pay({ to: peer(2), amount: 7n })
    await tracker.syncOnce()
    expect((await guard.get('agent')).spent).toBe(12n)
    // Four blocks replaced by empty ones: both spends, and the block before `fromBlock`, are gone.
    await rpc(anvil.rpcUrl, 'anvil_reorg', [4, []])
    expect(await tracker.syncOnce()).toMatchObject({ reorgs: 1, reverted: 2 })
    expect(await guard.get('agent')).toMatchObject({ spent: 0n, entryCount: 0 })
    // It goes on following the new chain.
    await stack.pay({ to: peer(3), amount: 11n })
    expect(await tracker.syncOnce()).toMatchObject({ reorgs: 0, applied: 1 })
    expect(await guard.get('agent')).toMatchObject({ spent: 11n, entryCount: 1 })
    // And a second reorg over the new base is rolled back as well.
    await rpc(anvil.rpcUrl, 'anvil_reorg', [3, []])
    expect(await tracker.syncOnce()).toMatchObject({ reorgs: 1, reverted: 1 })
    expect(await guard.get('agent')).toMatchObject({ spent: 0n })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: a restart whose fromBlock lands just above the oldest kept block does not take that block for its own base', async () => {
    const { stack, guard, follow } = await setup()
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(10)])
    const first = follow({ reorgDepthMax: 4 })
    await first.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    for (let i = 0; i < 8; i++) await stack.pay({ to: peer(i), amount: 10n })
    await first.syncOnce()
    expect((await guard.get('agent')).spent).toBe(80n)
    // Started again, configured from just above the oldest block the ledger kept.
    const oldest = (await guard.internal.store.chain.blocks(anvil.chainId, stack.hook.toLowerCase(), 0n)).at(-1)?.number as bigint
    const again = follow({ reorgDepthMax: 4, fromBlock: oldest + 1n })
    // A reorg below that block: spends applied at and below it are gone too, beyond the window.
    await rpc(anvil.rpcUrl, 'anvil_reorg', [6, []])
    await expect(again.syncOnce()).rejects.toBeInstanceOf(ReorgTooDeepError)
    expect((await guard.get('agent')).spent).toBe(80n)
  })

  test('behavior: a reorg while the tracker was away is rolled back however far the head moved since', async () => {
    const { stack, guard, fromBlock, follow } = await setup()
    const tracker = follow({ reorgDepthMax: 8 })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    await stack.pay({ to: peer(1), amount: 5n })
    await tracker.syncOnce()
    // The paying block is replaced, then the chain runs far past the kept window before the next sync.
    const replacement = stack.batchCalldata([
      { to: peer(90), amount: 111n },
      { to: peer(91), amount: 222n },
    ])
    await rpc(anvil.rpcUrl, 'anvil_reorg', [1, [[{ from: stack.owner, to: stack.account, data: replacement, gas: numberToHex(3_000_000) }, 0]]])
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(20)])
    const result = await tracker.syncOnce()
    expect(result.reorgs).toBe(1)
    const canonical = (await rpc(anvil.rpcUrl, 'eth_getLogs', [{ address: stack.hook, fromBlock: numberToHex(fromBlock), toBlock: 'latest' }])) as unknown[]
    expect(canonical).toHaveLength(2)
    expect(await guard.get('agent')).toMatchObject({ spent: 333n, entryCount: 2 })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })

    // Deeper than the kept window, however long ago: the tracker stops rather than diverge.
    for (let i = 0; i < 10; i++) await stack.pay({ to: peer(i), amount: 10n })
    await tracker.syncOnce()
    const spent = (await guard.get('agent')).spent
    await rpc(anvil.rpcUrl, 'anvil_reorg', [10, []])
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(10)])
    await expect(tracker.syncOnce()).rejects.toBeInstanceOf(ReorgTooDeepError)
    expect((await guard.get('agent')).spent).toBe(spent)
  })

  test('behavior: a range the node cannot answer in time is asked for in halves, not again as it is', async () => {
    const { stack, guard, follow } = await setup()
    const amounts: bigint[] = []
    for (let i = 0; i < 6; i++) {
      amounts.push(10n + BigInt(i))
      await stack.pay({ to: peer(i), amount: amounts[i] as bigint })
      await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(40)])
    }
    // A node that times out on getLogs over more than 32 blocks (its client gives up waiting).
    const upstream = http(anvil.rpcUrl, { retryCount: 0 })({})
    const wide: string[] = []
    const client = createPublicClient({
      transport: custom({
        async request({ method, params }) {
          const filter = (params as [{ fromBlock?: Hex; toBlock?: Hex }] | undefined)?.[0]
          if (method === 'eth_getLogs' && filter?.fromBlock && filter.toBlock && BigInt(filter.toBlock) - BigInt(filter.fromBlock) + 1n > 32n) {
            wide.push(`${filter.fromBlock}-${filter.toBlock}`)
            throw new TimeoutError({ body: { method }, url: anvil.rpcUrl })
          }
          return upstream.request({ method, params } as never)
        },
      }, { retryCount: 0 }),
    }) as PublicClient
    const tracker = follow({ client, pageBlocks: { initialBlocks: 256 }, rpcRetryDelayMs: 1 })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    expect(await tracker.syncOnce()).toMatchObject({ applied: 6 })
    expect((await guard.get('agent')).spent).toBe(sum(amounts))
    // Each range that timed out was asked for once: a halving instead of eight tries of it.
    expect(wide.length).toBeGreaterThan(0)
    expect(new Set(wide).size).toBe(wide.length)
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: logs of a block the node asked does not know yet are waited for, not a failed sync', async () => {
    const { stack, guard, follow } = await setup()
    await stack.pay({ to: peer(1), amount: 5n })
    await stack.pay({ to: peer(2), amount: 7n })
    // A node behind a load balancer: the headers come from one node, the logs by block hash
    // from another that does not have those blocks yet (as geth answers).
    const upstream = http(anvil.rpcUrl, { retryCount: 0 })({})
    let lagging = true
    const client = createPublicClient({
      transport: custom(
        {
          async request({ method, params }) {
            const filter = (params as [{ blockHash?: Hex }] | undefined)?.[0]
            if (lagging && method === 'eth_getLogs' && filter?.blockHash) throw Object.assign(new Error('unknown block'), { code: -32000 })
            return upstream.request({ method, params } as never)
          },
        },
        { retryCount: 0 },
      ),
    }) as PublicClient
    const tracker = follow({ client, rpcAttemptsMax: 2, rpcRetryDelayMs: 1 })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    expect(await tracker.syncOnce()).toMatchObject({ applied: 0 })
    expect(await tracker.status()).toMatchObject({ error: null })
    expect((await guard.get('agent')).spent).toBe(0n)
    lagging = false
    expect(await tracker.syncOnce()).toMatchObject({ applied: 2 })
    expect((await guard.get('agent')).spent).toBe(12n)
  })

  test('behavior: a provider refusing wide ranges in words no pattern knows still gets every log', async () => {
    for (const rangeRefusal of ['http413', 'unworded'] as const) {
      const { stack, guard, follow } = await setup()
      await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(300)])
      await stack.pay({ to: peer(1), amount: 77n })
      const proxy = await startFaultyRpc(anvil.rpcUrl, { rate: 0, maxRangeBlocks: 50, oversizeAboveBlocks: 100_000, slowMs: 0, rangeRefusal })
      try {
        const tracker = follow({ rpcUrl: proxy.url, reorgDepthMax: 4, pageBlocks: { initialBlocks: 200 } })
        await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
        await tracker.syncOnce()
        expect(proxy.counts.rangeRefused, rangeRefusal).toBeGreaterThan(0)
        expect((await guard.get('agent')).spent, rangeRefusal).toBe(77n)
        expect((await tracker.status()).lagBlocks).toBe(0n)
      } finally {
        await proxy.stop()
      }
    }
  })

  test('behavior: a provider with a fixed range cap is found in a few refusals, not refused every other page', async () => {
    const { stack, guard, follow } = await setup()
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(6_000)])
    await stack.pay({ to: peer(1), amount: 77n })
    const proxy = await startFaultyRpc(anvil.rpcUrl, { rate: 0, maxRangeBlocks: 100, oversizeAboveBlocks: 100_000, slowMs: 0 })
    try {
      const tracker = follow({ rpcUrl: proxy.url, reorgDepthMax: 4 })
      await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
      await tracker.syncOnce()
      expect((await guard.get('agent')).spent).toBe(77n)
      // Growing back past a cap of 100 blocks after each refusal is refused again and again
      // (35 times over these 6,000 blocks). Halving the gap between the widest range answered
      // and the narrowest refused finds 100 in about six steps (one step may be refused twice:
      // the two pages fetched ahead are sized alike).
      expect(proxy.counts.rangeRefused).toBeGreaterThan(0)
      expect(proxy.counts.rangeRefused).toBeLessThanOrEqual(12)
    } finally {
      await proxy.stop()
    }
  })

  test('behavior: start() right after stop() follows again', async () => {
    const { stack, guard, follow } = await setup()
    const tracker = follow({ pollIntervalMs: 50 })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    tracker.start()
    const stopped = tracker.stop()
    tracker.start()
    await stopped
    try {
      expect((await tracker.status()).running).toBe(true)
      await stack.pay({ to: peer(1), amount: 42n })
      while ((await guard.get('agent')).spent !== 42n) await new Promise((r) => setTimeout(r, 20))
    } finally {
      await tracker.stop()
    }
    expect((await tracker.status()).running).toBe(false)
  })

  test('behavior: the sync process killed with SIGKILL mid-backfill resumes exactly', async () => {
    const stack = await deployLocalStack({ rpcUrl: anvil.rpcUrl })
    const fromBlock = (await stack.publicClient.getBlockNumber()) + 1n
    const amounts = await spendMany(stack, 3_000, 20)
    const dbUrl = await guards.url()
    const { createGuard } = await import('../src/index.ts')
    const shared = await createGuard({ db: dbUrl })
    await shared.allocate('agent', { total: 10n ** 30n, ...USDC })
    const job = {
      kind: 'sync',
      db: dbUrl,
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      hook: stack.hook,
      account: stack.account,
      token: stack.token,
      fromBlock: fromBlock.toString(),
    }
    const head = await stack.publicClient.getBlockNumber()
    let committed = fromBlock - 1n
    for (let round = 0; round < 5; round++) {
      const worker = startWorker(job)
      // Killed after a different number of committed pages each round, always mid-backfill.
      await worker.waitFor(() => worker.lines.filter((l) => l.op === 'page').length >= 2 + round)
      // The signal is what ended the process: it was still syncing, not already finished.
      expect(await worker.kill()).toEqual({ code: null, signal: 'SIGKILL' })
      expect(worker.lines.some((l) => l.op === 'done')).toBe(false)
      const cursors = worker.lines.filter((l) => l.op === 'page').map((l) => BigInt(l.cursor as string))
      // Each round resumed past the last page the previous round committed (not from the
      // start) and was killed short of the head.
      expect(cursors[0]).toBeGreaterThan(committed)
      expect(cursors.at(-1)).toBeLessThan(head)
      committed = cursors.at(-1) as bigint
    }
    const tracker = createTracker({ guard: shared, rpcUrl: anvil.rpcUrl, chainId: anvil.chainId, hook: stack.hook, fromBlock })
    await tracker.syncOnce()
    const budget = await shared.get('agent')
    expect(budget.spent).toBe(sum(amounts))
    const entries = await shared.entries('agent')
    expect(entries).toHaveLength(3_000)
    expect(new Set(entries.map((e) => e.id)).size).toBe(3_000)
    expect(await shared.verify()).toEqual({ ok: true, problems: [] })
    await shared.destroy()
  })

  test('behavior: a faulty RPC never costs a log', async () => {
    const { stack, guard, fromBlock, follow } = await setup()
    const amounts = await spendMany(stack, 600, 20)
    const other = await deployLocalStack({ rpcUrl: anvil.rpcUrl })
    await other.pay({ to: peer(1), amount: 5n })
    const [forged] = (await rpc(anvil.rpcUrl, 'eth_getLogs', [{ address: other.hook, fromBlock: numberToHex(fromBlock) }])) as Record<string, unknown>[]
    // The forged log claims our account and token but comes from another contract.
    const proxy = await startFaultyRpc(anvil.rpcUrl, {
      rate: 0.25,
      maxRangeBlocks: 6,
      oversizeAboveBlocks: 3,
      slowMs: 700,
      forgedLog: { ...forged, topics: [(forged?.topics as string[])[0], `0x${stack.account.slice(2).padStart(64, '0')}`, `0x${stack.token.slice(2).padStart(64, '0')}`, (forged?.topics as string[])[3]] },
    })
    try {
      const tracker = follow({
        rpcUrl: proxy.url,
        reorgDepthMax: 4,
        rpcTimeoutMs: 400,
        rpcRetryDelayMs: 5,
        rpcAttemptsMax: 30,
        pageBlocks: { initialBlocks: 64 },
      })
      await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
      const result = await tracker.syncOnce()
      expect(result.applied).toBe(600)
      expect((await guard.get('agent')).spent).toBe(sum(amounts))
      expect((await guard.entries('agent')).length).toBe(600)
      for (const fault of ['dropped', 'tooMany', 'serverError', 'slow', 'rangeRefused', 'oversized', 'forged'] as const)
        expect(proxy.counts[fault], fault).toBeGreaterThan(0)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await proxy.stop()
    }
  })

  test('behavior: an RPC that lists each log twice in its answers never counts one twice', async () => {
    const { stack, guard, follow } = await setup()
    const amounts = await spendMany(stack, 40, 4)
    // Spends in another token are kept apart as foreign, each once too.
    const other = await deployLocalStack({ rpcUrl: anvil.rpcUrl })
    await stack.mint({ to: stack.account, amount: 100n, token: other.token })
    await stack.pay({ to: peer(2), amount: 9n, token: other.token })
    await stack.pay({ to: peer(3), amount: 11n, token: other.token })
    const proxy = await startFaultyRpc(anvil.rpcUrl, { rate: 0, maxRangeBlocks: 1_000, oversizeAboveBlocks: 1_000, slowMs: 0, repeatLogs: 'identical' })
    try {
      const tracker = follow({ rpcUrl: proxy.url, reorgDepthMax: 4 })
      await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
      const result = await tracker.syncOnce()
      expect(proxy.counts.repeated).toBeGreaterThanOrEqual(42)
      expect(result.applied).toBe(40)
      expect(result.foreign).toBe(2)
      expect((await guard.get('agent')).spent).toBe(sum(amounts))
      expect((await guard.entries('agent')).length).toBe(40)
      expect((await tracker.status()).unassigned.foreign).toBe(2)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await proxy.stop()
    }
  })

  test('behavior: an RPC answering with two different logs at one position is refused, and nothing of that answer applied', async () => {
    const { stack, guard, follow } = await setup()
    await spendMany(stack, 10, 2)
    const proxy = await startFaultyRpc(anvil.rpcUrl, { rate: 0, maxRangeBlocks: 1_000, oversizeAboveBlocks: 1_000, slowMs: 0, repeatLogs: 'altered' })
    try {
      const tracker = follow({ rpcUrl: proxy.url, reorgDepthMax: 4 })
      await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
      const refused = await tracker.syncOnce().then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(refused).toBeInstanceOf(RpcInconsistentError)
      expect(proxy.counts.repeated).toBeGreaterThan(0)
      expect(await guard.get('agent')).toMatchObject({ spent: 0n, entryCount: 0 })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await proxy.stop()
    }
  })

  test('behavior: a getLogs node lagging behind the node serving blocks never costs the newest logs', async () => {
    const { stack, guard, follow } = await setup()
    const proxy = await startFaultyRpc(anvil.rpcUrl, { rate: 0, maxRangeBlocks: 1_000, oversizeAboveBlocks: 1_000, slowMs: 0, rangeLagBlocks: 2 })
    try {
      const tracker = follow({ rpcUrl: proxy.url, reorgDepthMax: 8 })
      await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
      let paid = 0n
      // Each sync finds its newest blocks in the unfinalized window, where the lagging answers are.
      for (const amount of [5n, 7n, 11n]) {
        await stack.pay({ to: peer(1), amount })
        paid += amount
        await tracker.syncOnce()
        expect((await guard.get('agent')).spent).toBe(paid)
      }
      expect((await guard.entries('agent')).length).toBe(3)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await proxy.stop()
    }
  })

  test('behavior: a getLogs node lagging more than reorgDepthMax blocks never costs a log of the backfill', async () => {
    const { stack, guard, fromBlock, follow } = await setup()
    // Range answers lack the newest 12 blocks; blocks at or below head - 4 are read by range.
    const proxy = await startFaultyRpc(anvil.rpcUrl, { rate: 0, maxRangeBlocks: 1_000, oversizeAboveBlocks: 1_000, slowMs: 0, rangeLagBlocks: 12 })
    const mine = (blocks: number) => rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(blocks)])
    try {
      const tracker = follow({ rpcUrl: proxy.url, reorgDepthMax: 4, confirmations: 2, pageBlocks: { initialBlocks: 4 } })
      await tracker.bind({ account: stack.account, sender: stack.owner, taskId: 'agent', token: stack.token })
      // A backfill: ten blocks of spends, the newest of them final but within the lag.
      const amounts = await spendMany(stack, 30, 3)
      await mine(6)
      expect(await tracker.syncOnce()).toMatchObject({ applied: 30, duplicates: 0 })
      expect(proxy.counts.lagHidden).toBeGreaterThan(0)
      expect((await guard.get('agent')).spent).toBe(sum(amounts))
      // Syncs a few blocks apart: each spend is final at the next sync, and still hidden from range answers.
      for (const amount of [5n, 7n, 11n]) {
        const hidden = proxy.counts.lagHidden
        await stack.pay({ to: peer(1), amount })
        amounts.push(amount)
        await mine(8)
        expect(await tracker.syncOnce()).toMatchObject({ applied: 1, duplicates: 0 })
        expect(proxy.counts.lagHidden).toBeGreaterThan(hidden)
        expect((await guard.get('agent')).spent).toBe(sum(amounts))
      }
      // A healthy node afterwards finds nothing missing and nothing to count twice.
      await mine(20)
      expect(await follow({ reorgDepthMax: 4, confirmations: 2 }).syncOnce()).toMatchObject({ applied: 0, duplicates: 0 })
      const canonical = (await rpc(anvil.rpcUrl, 'eth_getLogs', [{ address: stack.hook, fromBlock: numberToHex(fromBlock), toBlock: 'latest' }])) as unknown[]
      expect(canonical).toHaveLength(amounts.length)
      expect(await guard.get('agent')).toMatchObject({ spent: sum(amounts), entryCount: amounts.length })
      expect(new Set((await guard.entries('agent')).map((e) => `${e.chain?.blockHash}:${e.chain?.logIndex}`)).size).toBe(amounts.length)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await proxy.stop()
    }
  })

  test('behavior: a bound pair whose counter saturated is read by block hash behind a lagging getLogs node', async () => {
    const { stack, guard, fromBlock, follow } = await setup()
    // approve(max) is metered as an outflow of 2^256 - 1: the hook's counter counts nothing more.
    const approve = encodeFunctionData({ abi: erc20Abi, functionName: 'approve', args: [peer(9), maxUint256] })
    const data = encodeFunctionData({
      abi: minimalAccountAbi,
      functionName: 'execute',
      args: [zeroHash, encodePacked(['address', 'uint256', 'bytes'], [stack.token, 0n, approve])],
    })
    await stack.mined((await rpc(anvil.rpcUrl, 'eth_sendTransaction', [{ from: stack.owner, to: stack.account, data, gas: numberToHex(3_000_000) }])) as Hex)
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(30)])
    for (const amount of [5n, 7n]) await stack.pay({ to: peer(1), amount })
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(6)])
    const proxy = await startFaultyRpc(anvil.rpcUrl, { rate: 0, maxRangeBlocks: 1_000, oversizeAboveBlocks: 1_000, slowMs: 0, rangeLagBlocks: 12 })
    try {
      const tracker = follow({ rpcUrl: proxy.url, reorgDepthMax: 4, confirmations: 2 })
      await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
      expect(await tracker.syncOnce()).toMatchObject({ applied: 3 })
      expect(proxy.counts.lagHidden).toBeGreaterThan(0)
      const canonical = (await rpc(anvil.rpcUrl, 'eth_getLogs', [{ address: stack.hook, fromBlock: numberToHex(fromBlock), toBlock: 'latest' }])) as unknown[]
      expect(canonical).toHaveLength(3)
      expect(await guard.get('agent')).toMatchObject({ spent: maxUint256 + 12n, entryCount: 3 })
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await proxy.stop()
    }
  })

  test('behavior: a batch checked for other bindings than the ledger now has is refused, and writes nothing', async () => {
    const { stack, guard, follow } = await setup()
    const tracker = follow()
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    const account = stack.account.toLowerCase() as Hex
    const token = stack.token.toLowerCase() as Hex
    const log = {
      blockNumber: 9n,
      blockHash: `0x${'ab'.repeat(32)}`,
      txHash: `0x${'cd'.repeat(32)}`,
      logIndex: 0,
      account,
      token,
      sender: stack.owner.toLowerCase(),
      to: peer(1).toLowerCase(),
      amount: 5n,
      windowSpent: 5n,
      cumulativeSpent: 5n,
      ref: zeroHash,
    } as const
    const batch = (checkedPairs: ReadonlySet<string>) =>
      guard.internal.submit((ctx) =>
        reconcile.applyBatch(ctx, {
          chainId: anvil.chainId,
          hook: stack.hook.toLowerCase(),
          logs: [log as never],
          blocks: [],
          from: null,
          to: { number: 9n, hash: log.blockHash },
          confirmedUpTo: 0n,
          pruneBelow: 0n,
          checkedPairs,
        }),
      )
    // The pair was bound after the counters were read: its spend was never checked.
    await expect(batch(new Set())).rejects.toBeInstanceOf(reconcile.BindingsChanged)
    expect(await guard.get('agent')).toMatchObject({ spent: 0n, entryCount: 0 })
    expect((await tracker.status()).cursor).toBeNull()
    expect(await batch(new Set([`${account}:${token}`]))).toMatchObject({ applied: 1 })
    expect(await guard.get('agent')).toMatchObject({ spent: 5n, entryCount: 1 })
  })

  test('behavior: a node behind the cursor is waited for, never taken for a reorg', async () => {
    const { stack, guard, follow } = await setup()
    const proxy = await startFaultyRpc(anvil.rpcUrl, { rate: 0, maxRangeBlocks: 1_000, oversizeAboveBlocks: 1_000, slowMs: 0 })
    try {
      const tracker = follow({ rpcUrl: proxy.url, reorgDepthMax: 8 })
      await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
      const amounts = [5n, 7n, 11n]
      for (const amount of amounts) await stack.pay({ to: peer(1), amount })
      await tracker.syncOnce()
      expect((await guard.get('agent')).spent).toBe(sum(amounts))
      // The next answers come from a node two blocks behind (a load balancer switched nodes):
      // the spends of those blocks are still on the chain and must stay counted.
      proxy.setNodeLag(2)
      const behind = await tracker.syncOnce()
      expect(behind).toMatchObject({ reorgs: 0, reverted: 0, applied: 0 })
      expect((await guard.get('agent')).spent).toBe(sum(amounts))
      expect(await tracker.status()).toMatchObject({ lagBlocks: 0n, error: null })
      // Caught up, with one more spend: counted once, nothing counted twice.
      proxy.setNodeLag(0)
      await stack.pay({ to: peer(1), amount: 13n })
      expect(await tracker.syncOnce()).toMatchObject({ reorgs: 0, applied: 1 })
      expect((await guard.get('agent')).spent).toBe(sum(amounts) + 13n)
      expect((await guard.entries('agent')).filter((e) => !e.reverted)).toHaveLength(4)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await proxy.stop()
    }
  })

  test('behavior: a node further behind than the kept window applies nothing and says why, even when the blocks it has are the ones applied', async () => {
    const { stack, guard, follow } = await setup()
    const proxy = await startFaultyRpc(anvil.rpcUrl, { rate: 0, maxRangeBlocks: 1_000, oversizeAboveBlocks: 1_000, slowMs: 0 })
    try {
      const tracker = follow({ rpcUrl: proxy.url, reorgDepthMax: 4 })
      await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
      for (let i = 0; i < 12; i++) await stack.pay({ to: peer(i), amount: 10n })
      await tracker.syncOnce()
      expect((await guard.get('agent')).spent).toBe(120n)
      const cursor = (await tracker.status()).cursor?.blockNumber as bigint
      // A node ten blocks behind: its head is below every kept block. The block of an applied
      // spend it has is the very one the ledger has, but a chain started over after that block
      // would look the same: nothing is rolled back, nothing applied, and the pass says why.
      proxy.setNodeLag(10)
      const error = await tracker.syncOnce().then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(NodeBehindWindowError)
      expect(error).toMatchObject({ code: 'NODE_BEHIND_WINDOW', chainId: anvil.chainId, head: cursor - 10n, oldestKept: cursor - 4n })
      expect((await guard.get('agent')).spent).toBe(120n)
      expect((await tracker.status()).cursor?.blockNumber).toBe(cursor)
      proxy.setNodeLag(0)
      await stack.pay({ to: peer(1), amount: 13n })
      expect(await tracker.syncOnce()).toMatchObject({ reorgs: 0, applied: 1 })
      expect((await guard.get('agent')).spent).toBe(133n)
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    } finally {
      await proxy.stop()
    }
  })

  test('behavior: a chain started over below the kept window is reported at once, and stops the tracker once it reaches the kept blocks', async () => {
    const { stack, guard, follow } = await setup()
    const updates: Error[] = []
    const tracker = follow({ reorgDepthMax: 4, pollIntervalMs: 20, onError: (e) => void updates.push(e as Error) })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    // No spend below where the chain starts over: nothing the ledger has can prove it.
    const restart = (await rpc(anvil.rpcUrl, 'evm_snapshot')) as Hex
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(3)])
    for (let i = 0; i < 8; i++) await stack.pay({ to: peer(2), amount: 10n })
    await tracker.syncOnce()
    expect((await guard.get('agent')).spent).toBe(80n)
    await rpc(anvil.rpcUrl, 'evm_revert', [restart])
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(1)])
    tracker.start()
    try {
      await vi.waitFor(() => expect(updates.length).toBeGreaterThan(0), { timeout: 10_000 })
      expect(updates[0]).toBeInstanceOf(NodeBehindWindowError)
      expect((await tracker.status()).error).toBeInstanceOf(NodeBehindWindowError)
      expect((await tracker.status()).running).toBe(true)
      // The new chain grows up to the kept blocks: their hashes differ, the tracker stops.
      await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(16)])
      await vi.waitFor(async () => expect((await tracker.status()).running).toBe(false), { timeout: 10_000 })
      expect((await tracker.status()).error).toBeInstanceOf(ReorgTooDeepError)
    } finally {
      await tracker.stop()
    }
    expect((await guard.get('agent')).spent).toBe(80n)
  })

  test('behavior: a chain that became shorter is rolled back at once; one started over stops the tracker', async () => {
    const { stack, guard, follow } = await setup()
    const tracker = follow({ reorgDepthMax: 4 })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    await stack.pay({ to: peer(1), amount: 5n })
    const shorter = (await rpc(anvil.rpcUrl, 'evm_snapshot')) as Hex
    await stack.pay({ to: peer(1), amount: 7n })
    await stack.pay({ to: peer(1), amount: 11n })
    await tracker.syncOnce()
    expect((await guard.get('agent')).spent).toBe(23n)
    // Back two blocks, then one other block: the head is below the cursor and differs from the
    // block the ledger kept at its height.
    await rpc(anvil.rpcUrl, 'evm_revert', [shorter])
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(1)])
    expect(await tracker.syncOnce()).toMatchObject({ reorgs: 1, reverted: 2 })
    expect((await guard.get('agent')).spent).toBe(5n)
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })

    // A chain that starts over far below the kept window: nothing is rolled back, the tracker says why.
    const restart = (await rpc(anvil.rpcUrl, 'evm_snapshot')) as Hex
    for (let i = 0; i < 8; i++) await stack.pay({ to: peer(2), amount: 1n })
    await tracker.syncOnce()
    expect((await guard.get('agent')).spent).toBe(13n)
    await rpc(anvil.rpcUrl, 'evm_revert', [restart])
    await rpc(anvil.rpcUrl, 'anvil_mine', [numberToHex(1)])
    await expect(tracker.syncOnce()).rejects.toBeInstanceOf(ReorgTooDeepError)
    expect((await guard.get('agent')).spent).toBe(13n)
  })

  test('behavior: another contract emitting the same event is ignored', async () => {
    const { stack, guard, follow } = await setup()
    const impostor = await deployLocalStack({ rpcUrl: anvil.rpcUrl })
    const tracker = follow()
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    // Bound too, but its spends go through another SpendingHook deployment.
    await tracker.bind({ account: impostor.account, taskId: 'agent', token: impostor.token })
    await impostor.pay({ to: peer(1), amount: 1_000n })
    await stack.pay({ to: peer(2), amount: 3n })
    expect(await tracker.syncOnce()).toMatchObject({ logs: 1, applied: 1 })
    expect((await guard.get('agent')).spent).toBe(3n)
  })

  test('behavior: an on-chain spend beyond the hard limit is recorded and raises overspent', async () => {
    const { stack, guard, follow } = await setup({ total: 1_000n })
    const overspent: OverspentEvent[] = []
    guard.on('overspent', (e) => void overspent.push(e))
    await guard.reserve('agent', 900n)
    await stack.pay({ to: peer(1), amount: 600n })
    const tracker = follow()
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    await tracker.syncOnce()
    const budget = await guard.get('agent')
    expect(budget).toMatchObject({ spent: 600n, reserved: 900n, remaining: 0n, overspent: 500n, status: 'exhausted' })
    await stack.pay({ to: peer(1), amount: 700n })
    await tracker.syncOnce()
    expect(await guard.get('agent')).toMatchObject({ spent: 1_300n, overspent: 1_200n })
    await guard.flushAlerts()
    expect(overspent).toHaveLength(1)
    expect(overspent[0]).toMatchObject({ taskId: 'agent', spent: 1_300n, total: 1_000n })
    expect(await guard.check('agent', 1n)).toMatchObject({ allowed: false })
  })

  test('behavior: bad parameters are refused', async () => {
    const { stack, guard } = await setup()
    expect(() => createTracker({ guard, rpcUrl: anvil.rpcUrl, chainId: 0, hook: stack.hook })).toThrow(/chainId/)
    expect(() => createTracker({ guard, rpcUrl: anvil.rpcUrl, chainId: 1, hook: '0x12' })).toThrow(/hook/)
    const tracker = createTracker({ guard, rpcUrl: anvil.rpcUrl, chainId: anvil.chainId + 1, hook: stack.hook })
    await expect(tracker.syncOnce()).rejects.toMatchObject({ name: 'ChainMismatchError', actual: anvil.chainId })
    await expect(tracker.bind({ account: '0x1' as Address, taskId: 'agent', token: zeroAddress })).rejects.toMatchObject({
      name: 'InvalidArgumentError',
    })
    await expect(tracker.bind({ account: stack.account, taskId: 'nope', token: zeroAddress })).rejects.toMatchObject({
      name: 'BudgetNotFoundError',
    })
  })
})
