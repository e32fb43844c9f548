import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BaseError, ContractFunctionRevertedError, decodeErrorResult } from 'viem'
import { BudgetExceededError } from '../engine/errors.ts'
import { createGuard } from '../engine/guard.ts'
import type { AlertEvent } from '../engine/types.ts'
import { spendingHookAbi } from '../onchain/abi.generated.ts'
import { startAnvil } from '../onchain/anvil.ts'
import { deployLocalStack } from '../onchain/local.ts'
import { createTracker } from '../onchain/tracker.ts'
import { amount, bar, json, percent } from './format.ts'

/**
 * `spendguard demo`: the whole system on a local chain in well under a minute. A task gets
 * 10 USDC; an agent pays an API off-chain and pays on-chain through its smart account
 * (carrying hold refs) while the tracker reconciles; alerts fire at 50/80/95%; the guard
 * denies a payment at its limit and the SpendingHook reverts a transfer at its own.
 */
const decimals = 6
const usd = (whole: number) => BigInt(Math.round(whole * 100)) * 10n ** BigInt(decimals - 2)
const taskId = 'demo-agent'

export async function runDemo({ json: asJson = false }: { json?: boolean } = {}): Promise<void> {
  const say = (line = '') => {
    if (!asJson) process.stdout.write(`${line}\n`)
  }
  const dir = mkdtempSync(join(tmpdir(), 'spendguard-demo-'))
  const anvil = await startAnvil()
  const cleanup: (() => Promise<unknown>)[] = [() => anvil.stop()]
  try {
    say(`anvil on ${anvil.rpcUrl} (chain ${anvil.chainId})`)
    const stack = await deployLocalStack({ rpcUrl: anvil.rpcUrl })
    say(`deployed token ${stack.token}, SpendingHook ${stack.hook}, account ${stack.account}`)
    // The hook's own limit on the account: at most 4 USDC in all, whatever the guard says.
    await stack.setLimits({ cumulative: usd(4) })
    say('on-chain limit: cumulative 4.00 USDC per account (SpendingHook)')
    const fromBlock = await stack.publicClient.getBlockNumber()

    const guard = await createGuard({ db: `sqlite:${join(dir, 'demo.db')}` })
    cleanup.unshift(() => guard.destroy())
    guard.on('alert', (a: AlertEvent) => say(`  ⚑ alert: ${taskId} passed ${a.threshold * 100}% (spent ${amount(a.spent, decimals, 'USDC')})`))
    guard.on('exhausted', () => say(`  ⚑ exhausted: ${taskId} has nothing left to spend`))
    guard.on('unreserved_spend', (e) => say(`  ⚑ unreserved on-chain spend of ${amount(e.amount, decimals, 'USDC')}`))
    await guard.allocate(taskId, { total: usd(10), asset: 'USDC', decimals })
    say(`allocated ${taskId}: 10.00 USDC`)

    const tracker = createTracker({
      guard,
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      hook: stack.hook,
      fromBlock,
      confirmations: 2,
      pollIntervalMs: 100,
    })
    cleanup.unshift(() => tracker.stop())
    await tracker.bind({ account: stack.account, taskId, token: stack.token })
    tracker.start()
    say('tracker following the hook')
    say()

    const status = async (label: string) => {
      await guard.flushAlerts()
      const b = await guard.get(taskId)
      say(`${label.padEnd(34)} ${bar(b, 30)} spent ${amount(b.spent, decimals)} · reserved ${amount(b.reserved, decimals)} · left ${amount(b.remaining, decimals)} (${percent(b.spent, b.total)})`)
    }
    const settled = async (target: bigint) => {
      const deadline = Date.now() + 10_000
      while ((await guard.get(taskId)).spent < target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25))
    }

    // The agent's loop: on-chain payments through the account, each under a hold whose ref it carries.
    const onchain = [1.5, 1.25, 1]
    for (const [i, price] of onchain.entries()) {
      const hold = await guard.reserve(taskId, usd(price), { key: `onchain-${i}`, ttlMs: 60_000 })
      const before = (await guard.get(taskId)).spent
      await stack.pay({ to: stack.owner, amount: usd(price), ref: hold.ref })
      await settled(before + usd(price))
      await status(`on-chain ${amount(usd(price), decimals, 'USDC')} (hold ${hold.id.slice(0, 12)}…)`)
    }

    // Off-chain payments wrapped in guard.pay: reserve the maximum, settle what was charged.
    const offchain = [
      { max: 2, charged: 1.8 },
      { max: 3, charged: 2.5 },
      { max: 1.5, charged: 1.45 },
      { max: 1, charged: 0.5 },
    ]
    for (const { max, charged } of offchain) {
      try {
        await guard.pay(taskId, usd(max), async () => ({ settled: usd(charged), peer: 'api.local', tool: 'search' }))
        await status(`off-chain ${amount(usd(charged), decimals, 'USDC')} (max ${amount(usd(max), decimals)})`)
      } catch (error) {
        if (!(error instanceof BudgetExceededError)) throw error
        say(`  ✗ denied by the guard: requested ${amount(error.requested, decimals, 'USDC')}, ${amount(error.remaining, decimals, 'USDC')} remaining`)
      }
    }

    // The hook refuses on its own: the account already sent 3.75 of its 4 USDC.
    try {
      await stack.pay({ to: stack.owner, amount: usd(0.5) })
      say('  ! the hook let an over-limit transfer through')
    } catch (error) {
      say(`  ✗ reverted on-chain by the SpendingHook: ${describeRevert(error)}`)
    }

    await tracker.stop()
    await guard.flushAlerts()
    const report = await guard.close(taskId)
    const verified = await guard.verify()
    const trackerStatus = await tracker.status()
    if (asJson) {
      process.stdout.write(`${json({ rpcUrl: anvil.rpcUrl, report, verify: verified, tracker: { cursor: trackerStatus.cursor, confirmed: trackerStatus.confirmed, unconfirmed: trackerStatus.unconfirmed } })}\n`)
    } else {
      say()
      say(`report: ${taskId} spent ${amount(report.spent, decimals, 'USDC')} of ${amount(report.total, decimals, 'USDC')} in ${report.entryCount} payments, ${report.releasedHolds} holds released, ${(report.durationMs / 1000).toFixed(1)} s`)
      say(`verify: ${verified.ok ? 'ok, the ledger matches its journal' : verified.problems.join('; ')}`)
    }
    if (!verified.ok) throw new Error('verify failed')
  } finally {
    for (const step of cleanup) await step().catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  }
}

function describeRevert(error: unknown): string {
  if (error instanceof BaseError) {
    const revert = error.walk((e) => e instanceof ContractFunctionRevertedError)
    if (revert instanceof ContractFunctionRevertedError && revert.data) return `${revert.data.errorName}(${revert.data.args?.join(', ')})`
    const data = (error.walk((e) => typeof (e as { data?: unknown }).data === 'string') as { data?: `0x${string}` } | null)?.data
    if (data) {
      try {
        const decoded = decodeErrorResult({ abi: spendingHookAbi, data })
        return `${decoded.errorName}(${decoded.args?.join(', ')})`
      } catch {}
    }
  }
  return (error as Error).message.split('\n')[0] ?? String(error)
}
