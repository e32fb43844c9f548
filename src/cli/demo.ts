import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { x402Client } from '@x402/core/client'
import { ExactEvmScheme } from '@x402/evm/exact/client'
import { wrapFetchWithPayment } from '@x402/fetch'
import { BaseError, ContractFunctionRevertedError, decodeErrorResult, defineChain } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { BudgetExceededError } from '../engine/errors.ts'
import { createGuard } from '../engine/guard.ts'
import type { AlertEvent } from '../engine/types.ts'
import { spendingHookAbi } from '../onchain/abi.generated.ts'
import { startAnvil } from '../onchain/anvil.ts'
import { deployLocalStack, testUsdcDomain } from '../onchain/local.ts'
import { createTracker } from '../onchain/tracker.ts'
import { createX402Guard } from '../x402/guard.ts'
import { startFacilitator, startResourceServer } from '../x402/local.ts'
import { amount, bar, json, percent, thresholdPercent } from './format.ts'

/**
 * `spendguard demo`: the whole system on a local chain in well under a minute. A task gets
 * 10 USDC; an agent pays an API off-chain and pays on-chain through its smart account
 * (carrying hold refs) while the tracker reconciles; alerts fire at 50/80/95%; the guard
 * denies a payment at its limit and the SpendingHook reverts a transfer at its own.
 */
const decimals = 6
const usd = (whole: number) => BigInt(Math.round(whole * 100)) * 10n ** BigInt(decimals - 2)
/** anvil's well-known development keys #1 (the agent's x402 payer), #2 (the API's payee), #3 (the facilitator). */
const payerKey = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
const payeeKey = '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a'
const facilitatorKey = '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6'
const apiPrice = usd(1.5)

/** Exit codes of a demo stopped by a signal: 128 + the signal's number, as a shell reports it. */
const signalExitCodes = { SIGINT: 130, SIGTERM: 143 } as const
/**
 * How long a signal waits for the orderly stop. A Ctrl-C also ends anvil, and the tracker's
 * pass in flight then retries its RPC calls for seconds; past this the demo exits anyway
 * (startAnvil kills an anvil still running when the process exits).
 */
const signalStopMs = 2_000

/**
 * Runs the demo. Its ledger is a temporary SQLite file, removed at the end, unless `db` names
 * one to keep (then the task gets a name of its own, so runs do not collide). SIGINT or
 * SIGTERM stops everything it started, removes the temporary directory and exits 130 or 143.
 */
export async function runDemo({ json: asJson = false, db }: { json?: boolean; db?: string | undefined } = {}): Promise<void> {
  const say = (line = '') => {
    if (!asJson) process.stdout.write(`${line}\n`)
  }
  const taskId = db === undefined ? 'demo-agent' : `demo-agent-${Date.now().toString(36)}`
  const dir = mkdtempSync(join(tmpdir(), 'spendguard-demo-'))
  /** What to stop, newest first; the temporary directory goes last. */
  const cleanup: (() => Promise<unknown>)[] = []
  let cleaning: Promise<void> | undefined
  const cleanUp = () =>
    (cleaning ??= (async () => {
      for (const step of cleanup) await step().catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    })())
  // A signal runs the same cleanup as the end of the demo, then exits; a second one exits at once
  // (an anvil still starting is killed on exit by startAnvil's own handler).
  let interrupted: number | undefined
  const onSignal = (signal: keyof typeof signalExitCodes) => {
    const code = signalExitCodes[signal]
    if (interrupted !== undefined) {
      rmSync(dir, { recursive: true, force: true })
      process.exit(code)
    }
    interrupted = code
    process.stderr.write(`\ndemo: ${signal}, stopping everything it started…\n`)
    void Promise.race([cleanUp(), new Promise((r) => setTimeout(r, signalStopMs))]).then(() => {
      rmSync(dir, { recursive: true, force: true })
      process.exit(code)
    })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    const anvil = await startAnvil()
    cleanup.unshift(() => anvil.stop())
    say(`anvil on ${anvil.rpcUrl} (chain ${anvil.chainId})`)
    const stack = await deployLocalStack({ rpcUrl: anvil.rpcUrl })
    say(`deployed token ${stack.token}, SpendingHook ${stack.hook}, account ${stack.account}`)
    // The hook's own limit on the account: at most 4 USDC in all, whatever the guard says.
    await stack.setLimits({ cumulative: usd(4) })
    say('on-chain limit: cumulative 4.00 USDC per account (SpendingHook)')
    const fromBlock = await stack.publicClient.getBlockNumber()

    const guard = await createGuard({ db: db ?? `sqlite:${join(dir, 'demo.db')}` })
    cleanup.unshift(() => guard.destroy())
    guard.on('alert', (a: AlertEvent) => say(`  ⚑ alert: ${taskId} passed ${thresholdPercent(a.threshold)}% (spent ${amount(a.spent, decimals, 'USDC')})`))
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

    // Off-chain: an API that charges through x402. The agent's x402 client is guarded: the
    // guard reserves the price before anything is signed and captures what was settled.
    const network = `eip155:${anvil.chainId}` as const
    const chain = defineChain({
      id: anvil.chainId,
      name: 'anvil',
      nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
      rpcUrls: { default: { http: [anvil.rpcUrl] } },
    })
    const payer = privateKeyToAccount(payerKey)
    await stack.mint({ to: payer.address, amount: usd(100) })
    const facilitator = await startFacilitator({ rpcUrl: anvil.rpcUrl, chain, network, privateKey: facilitatorKey })
    cleanup.unshift(() => facilitator.stop())
    const api = await startResourceServer({
      facilitatorUrl: facilitator.url,
      network,
      asset: stack.token,
      domain: testUsdcDomain,
      payTo: privateKeyToAccount(payeeKey).address,
      price: apiPrice,
    })
    cleanup.unshift(() => api.stop())
    say(`x402 API on ${api.url}/paid at ${amount(apiPrice, decimals, 'USDC')} a call, facilitator on ${facilitator.url}`)
    const client = new x402Client().register(network, new ExactEvmScheme(payer))
    client.setSpendControls({ allowedAssets: [{ network, asset: stack.token }] })
    const spend = createX402Guard({ guard, taskId, assets: [{ network, asset: stack.token, publicClient: stack.publicClient }], tool: 'search' })
    spend.register(client)
    const pay = spend.wrapFetch(wrapFetchWithPayment(fetch, client))
    const callApi = async (label: string) => {
      try {
        const response = await pay(`${api.url}/paid`)
        if (!response.ok) throw new Error(`API answered ${response.status}`)
        await status(label)
      } catch (error) {
        if (!(error instanceof BudgetExceededError)) throw error
        say(`  ✗ denied by the guard before signing: requested ${amount(error.requested, decimals, 'USDC')}, ${amount(error.remaining, decimals, 'USDC')} remaining`)
      }
    }
    for (let i = 1; i <= 3; i++) await callApi(`x402 call ${i} (${amount(apiPrice, decimals, 'USDC')})`)

    // Any other payment goes through guard.pay: reserve the maximum, settle what was charged.
    await guard.pay(taskId, usd(1.5), async () => ({ settled: usd(1.25), peer: 'compute.local', tool: 'render' }))
    await status('guard.pay 1.25 USDC (max 1.50)')

    // The budget has 0.50 left: the next API call is refused before the client signs anything.
    await callApi('x402 call 4')

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
    await cleanUp()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    // Stopped by a signal: what failed because of the stop is not the demo's error.
    if (interrupted !== undefined) process.exit(interrupted)
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
