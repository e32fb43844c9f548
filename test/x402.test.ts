import type { ClientEvmSigner } from '@x402/evm'
import { ExactEvmScheme } from '@x402/evm/exact/client'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  decodePaymentRequiredHeader,
  decodePaymentResponseHeader,
  decodePaymentSignatureHeader,
  encodePaymentRequiredHeader,
  encodePaymentResponseHeader,
} from '@x402/core/http'
import { wrapFetchWithPayment, x402Client } from '@x402/fetch'
import type { SettleResponse } from '@x402/core/types'
import {
  type Address,
  type Hex,
  type PublicClient,
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  getAddress,
  http,
  parseEventLogs,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from 'vitest'
import {
  BudgetClosedError,
  BudgetExceededError,
  type CreateGuardParameters,
  type Guard,
  GuardDestroyedError,
  InvalidArgumentError,
  RiskDeniedError,
  X402AssetNotAllowedError,
  X402ValidityTooLongError,
  type X402Asset,
  type X402PaymentEvent,
  createGuard,
  createX402Guard,
  settledAmount,
  testUsdcAbi,
  testUsdcBytecode,
  wrapFetchWithSpendguard,
} from '../src/index.ts'
import { type AnvilInstance, startAnvil } from './helpers/anvil.ts'
import { installPermit2Nonces, permit2NoncesAbi } from './helpers/permit2.ts'
import { manualClock, useGuards } from './helpers/guard.ts'
import { sqliteTarget } from './helpers/stores.ts'
import { type LocalFacilitator, type LocalResourceServer, startFacilitator, startResourceServer } from './helpers/x402.ts'

// anvil's default development keys (public, funded with ether on every anvil).
const deployerKey: Hex = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
const payerKey: Hex = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
const payeeKey: Hex = '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a'
const facilitatorKey: Hex = '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6'
/** Holds ether but no tokens. */
const brokeKey: Hex = '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a'

const network = 'eip155:31337' as const
const domain = { name: 'USD Coin', version: '2' }
const price = 10_000n // 0.01 tUSDC
const taskId = 'agent-task'

let anvil: AnvilInstance
let publicClient: PublicClient
let token: Address
let payee: Address
let facilitator: LocalFacilitator
let resource: LocalResourceServer
/** A transaction that moved tokens, but not from the payer to the payee. */
let mintTx: Hex

beforeAll(async () => {
  anvil = await startAnvil()
  const chain = defineChain({
    id: anvil.chainId,
    name: 'anvil',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [anvil.rpcUrl] } },
  })
  publicClient = createPublicClient({ chain, transport: http(anvil.rpcUrl), pollingInterval: 50 }) as PublicClient
  const deployer = createWalletClient({ chain, transport: http(anvil.rpcUrl), account: privateKeyToAccount(deployerKey) })
  const deployed = await publicClient.waitForTransactionReceipt({
    hash: await deployer.deployContract({ abi: testUsdcAbi, bytecode: testUsdcBytecode, args: [domain.name, 'tUSDC', domain.version] }),
    pollingInterval: 20,
  })
  token = getAddress(deployed.contractAddress as Address)
  const mint = await deployer.writeContract({
    address: token,
    abi: testUsdcAbi,
    functionName: 'mint',
    args: [privateKeyToAccount(payerKey).address, 1_000_000_000n],
  })
  await publicClient.waitForTransactionReceipt({ hash: mint, pollingInterval: 20 })
  mintTx = mint
  payee = privateKeyToAccount(payeeKey).address

  facilitator = await startFacilitator({ rpcUrl: anvil.rpcUrl, chain, network, privateKey: facilitatorKey })
  resource = await startResourceServer({ facilitatorUrl: facilitator.url, network, asset: token, domain, payTo: payee, price })
}, 60_000)

afterAll(async () => {
  await resource?.stop()
  await facilitator?.stop()
  await anvil?.stop()
})

const guards = useGuards(sqliteTarget)

async function balanceOf(holder: Address): Promise<bigint> {
  return publicClient.readContract({ address: token, abi: testUsdcAbi, functionName: 'balanceOf', args: [holder] })
}

/** A real x402 client paying with `key` under the exact EVM scheme; counts its signatures. */
function payingClient(key: Hex): { client: x402Client; address: Address; signatures: () => number } {
  const account = privateKeyToAccount(key)
  let signatures = 0
  const signer: ClientEvmSigner = {
    address: account.address,
    signTypedData: (message) => {
      signatures++
      return account.signTypedData(message as Parameters<typeof account.signTypedData>[0])
    },
  }
  const client = new x402Client().register(network, new ExactEvmScheme(signer))
  // The test token is not one of x402's default assets: allow it, as an agent would.
  client.setSpendControls({ allowedAssets: [{ network, asset: token }] })
  return { client, address: account.address, signatures: () => signatures }
}

type Setup = {
  guard: Guard
  pay: (input: string | Request, init?: RequestInit) => Promise<Response>
  payer: Address
  signatures: () => number
  events: X402PaymentEvent[]
}

async function setup({
  total,
  key = payerKey,
  assets,
  guardParameters,
  authorizationPollMs,
  holdTtlMs,
  observe,
  transport = fetch,
  db,
}: {
  total: bigint
  key?: Hex
  assets?: X402Asset[]
  guardParameters?: Omit<CreateGuardParameters, 'db'>
  authorizationPollMs?: number
  holdTtlMs?: number
  /** Also told of each event, after the test notes it. */
  observe?: (event: X402PaymentEvent) => unknown
  /** The fetch the paying client sends through (a proxy that rewrites responses, say). */
  transport?: typeof fetch
  /** A database of the test's own; the test destroys the guard. */
  db?: string
}): Promise<Setup> {
  const guard = db === undefined ? await guards.guard(guardParameters) : await createGuard({ ...guardParameters, db })
  await guard.allocate(taskId, { total, asset: 'USDC', decimals: 6 })
  const { client, address, signatures } = payingClient(key)
  const events: X402PaymentEvent[] = []
  const spend = createX402Guard({
    guard,
    taskId,
    assets: assets ?? [{ network, asset: token }],
    tool: 'answers',
    authorizationPollMs,
    holdTtlMs,
    onPayment: (event) => {
      events.push(event)
      return observe?.(event)
    },
  })
  spend.register(client)
  const pay = spend.wrapFetch(wrapFetchWithPayment(transport, client))
  return { guard, pay, payer: address, signatures, events }
}

/** A transport whose paid responses carry `change`d settlements, answered with status 402. */
function settlementRewritten(change: (settled: SettleResponse) => SettleResponse): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, init)
    const header = response.headers.get('PAYMENT-RESPONSE')
    if (!header) return response
    const headers = new Headers(response.headers)
    headers.set('PAYMENT-RESPONSE', encodePaymentResponseHeader(change(decodePaymentResponseHeader(header))))
    return new Response(response.body, { status: 402, headers })
  }
}

/** The facilitator's counters, to show that a refused payment never reached it. */
function facilitatorSeen() {
  return { verify: facilitator.requests.verify, settle: facilitator.requests.settle }
}

/** What the settlement transaction named in an entry's reason moved from `from` to the payee. */
async function movedBy(reason: string | undefined, from: Address): Promise<bigint> {
  const hash = reason?.match(/0x[0-9a-fA-F]{64}/)?.[0] as Hex | undefined
  if (!hash) throw new Error(`no transaction in "${reason}"`)
  const receipt = await publicClient.getTransactionReceipt({ hash })
  const transfers = parseEventLogs({ abi: testUsdcAbi, eventName: 'Transfer', logs: receipt.logs })
  return transfers
    .filter((t) => t.address.toLowerCase() === token.toLowerCase() && t.args.from === from && t.args.to === payee)
    .reduce((sum, t) => sum + t.args.value, 0n)
}

/** A transport that keeps the payment header of every request it sends, as its receiver can. */
function keeping(sent: string[]): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init)
    const header = request.headers.get('PAYMENT-SIGNATURE')
    if (header) sent.push(header)
    return fetch(request)
  }
}

/** Settles a payment the client sent, through the facilitator, as whoever received it may at any time. */
async function settleLater(header: string): Promise<void> {
  const payload = decodePaymentSignatureHeader(header)
  const settled = await fetch(`${facilitator.url}/settle`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ x402Version: 2, paymentPayload: payload, paymentRequirements: payload.accepted }),
  })
  expect(await settled.json()).toMatchObject({ success: true })
}

/**
 * Waits out the last valid moment of the payment `header` carries (`meanwhile` runs just
 * before the chain passes it), mines a block past it and enough blocks on it (same timestamp)
 * for anvil to call it finalized, and waits for the adapter to release its hold as expired.
 */
async function releasedOnceExpired(header: string, events: X402PaymentEvent[], meanwhile: () => unknown): Promise<void> {
  const signed = decodePaymentSignatureHeader(header).payload as { authorization?: { validBefore: string }; permit2Authorization?: { deadline: string } }
  const lastValid = Number(signed.authorization?.validBefore ?? signed.permit2Authorization?.deadline)
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, lastValid * 1000 - Date.now() + 1_100)))
  await meanwhile()
  await publicClient.request({ method: 'evm_mine' } as never)
  await publicClient.request({ method: 'anvil_mine', params: ['0x40', '0x0'] } as never)
  await until(events, 'released')
  expect(events.at(-1)).toMatchObject({ type: 'released', reason: expect.stringContaining('authorization expired unused') })
}

/**
 * A transport through which every server asks for Permit2 payments (`assetTransferMethod`), as
 * a server may; it keeps the payment header of every request it sends, as its receiver can.
 */
function askingPermit2(sent: string[]): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init)
    const header = request.headers.get('PAYMENT-SIGNATURE')
    if (header) sent.push(header)
    const response = await fetch(request)
    const required = response.headers.get('PAYMENT-REQUIRED')
    if (header || response.status !== 402 || !required) return response
    const asked = decodePaymentRequiredHeader(required)
    for (const accepts of asked.accepts) accepts.extra = { ...accepts.extra, assetTransferMethod: 'permit2' }
    return new Response('{}', { status: 402, headers: { 'PAYMENT-REQUIRED': encodePaymentRequiredHeader(asked) } })
  }
}

/**
 * Resolves once the newest event is of `done`'s type (or `done()` holds); fails after 15 s,
 * naming the events seen.
 */
async function until(events: X402PaymentEvent[], done: X402PaymentEvent['type'] | (() => boolean | Promise<boolean>)): Promise<void> {
  const holds = typeof done === 'function' ? done : () => events.at(-1)?.type === done
  for (const began = Date.now(); !(await holds()); await new Promise((resolve) => setTimeout(resolve, 20)))
    if (Date.now() - began > 15_000) throw new Error(`timed out; events: ${events.map((e) => e.type).join(', ')}`)
}

describe('x402 adapter, end to end on anvil', () => {
  test('default', async () => {
    const { guard, pay, payer, signatures, events } = await setup({ total: 35_000n })
    const payerBefore = await balanceOf(payer)
    const payeeBefore = await balanceOf(payee)

    for (let i = 0; i < 3; i++) {
      const response = await pay(`${resource.url}/paid`)
      expect(response.status).toBe(200)
      expect(await response.json()).toEqual({ answer: 42 })
    }

    const budget = await guard.get(taskId)
    expect(budget.spent).toBe(3n * price)
    expect(budget.reserved).toBe(0n)
    expect(payerBefore - (await balanceOf(payer))).toBe(budget.spent)
    expect((await balanceOf(payee)) - payeeBefore).toBe(budget.spent)

    const entries = await guard.entries(taskId)
    expect(entries).toHaveLength(3)
    const host = new URL(resource.url).host
    for (const entry of entries) {
      expect(entry.amount).toBe(price)
      expect(entry.peer).toBe(host)
      expect(entry.tool).toBe('answers')
      expect(entry.holdId).toBeDefined()
      // Each capture is what its settlement transaction moved on chain.
      expect(await movedBy(entry.reason, payer)).toBe(entry.amount)
    }
    const holds = await guard.holds(taskId)
    expect(holds.map((h) => [h.status, h.capturedAmount])).toEqual([
      ['captured', price],
      ['captured', price],
      ['captured', price],
    ])
    expect(events.filter((e) => e.type === 'captured').map((e) => e.type === 'captured' && e.amountSource)).toEqual([
      'authorization',
      'authorization',
      'authorization',
    ])
    expect(signatures()).toBe(3)

    // 5_000 left, the price is 10_000: refused before anything is signed or sent to the facilitator.
    const seen = facilitatorSeen()
    const payerAfter = await balanceOf(payer)
    const refusal = await pay(`${resource.url}/paid`).catch((error: unknown) => error)
    expect(refusal).toBeInstanceOf(BudgetExceededError)
    expect(refusal).toMatchObject({ taskId, requested: price, remaining: 5_000n })
    expect(signatures()).toBe(3)
    expect(facilitatorSeen()).toEqual(seen)
    expect(await balanceOf(payer)).toBe(payerAfter)
    expect(await guard.holds(taskId)).toHaveLength(3)
    expect((await guard.get(taskId)).spent).toBe(3n * price)
    expect((await guard.verify()).ok).toBe(true)
  })

  test('behavior: concurrent requests each hold their own amount and never overspend', async () => {
    const { guard, pay, payer, signatures } = await setup({ total: 5n * price })
    const payerBefore = await balanceOf(payer)

    const results = await Promise.allSettled(Array.from({ length: 8 }, () => pay(`${resource.url}/paid`)))

    const paid = results.filter((r) => r.status === 'fulfilled')
    const refused = results.filter((r) => r.status === 'rejected')
    expect(paid.map((r) => r.value.status)).toEqual([200, 200, 200, 200, 200])
    expect(refused).toHaveLength(3)
    for (const r of refused) expect(r.reason).toBeInstanceOf(BudgetExceededError)
    expect(signatures()).toBe(5)

    const budget = await guard.get(taskId)
    expect(budget.spent).toBe(5n * price)
    expect(budget.reserved).toBe(0n)
    expect(payerBefore - (await balanceOf(payer))).toBe(budget.spent)
    const entries = await guard.entries(taskId)
    expect(new Set(entries.map((e) => e.holdId)).size).toBe(5)
    expect(new Set(entries.map((e) => e.reason)).size).toBe(5)
    for (const entry of entries) expect(await movedBy(entry.reason, payer)).toBe(entry.amount)
    expect((await guard.holds(taskId)).every((h) => h.status === 'captured')).toBe(true)
    expect((await guard.verify()).ok).toBe(true)
  })

  test('behavior: destroy() waits for a paid request under way and captures its payment; a request that has not reserved yet is refused before signing', async () => {
    const db = await guards.url()
    // The paid answer is held back until the test lets it through.
    let sent = false
    let letThrough: () => void = () => {}
    const held = new Promise<void>((resolve) => {
      letThrough = resolve
    })
    const holding: typeof fetch = async (input, init) => {
      const request = new Request(input, init)
      if (!request.headers.get('PAYMENT-SIGNATURE')) return fetch(request)
      const response = await fetch(request)
      sent = true
      await held
      return response
    }
    const { guard, pay, signatures } = await setup({ total: 100_000n, transport: holding, db })
    const paying = pay(`${resource.url}/paid`)
    await until([], () => sent)
    let destroyed = false
    const destroying = guard.destroy().then(() => {
      destroyed = true
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(destroyed).toBe(false)
    const seen = facilitatorSeen()
    await expect(pay(`${resource.url}/paid`)).rejects.toBeInstanceOf(GuardDestroyedError)
    expect(signatures()).toBe(1)
    expect(facilitatorSeen()).toEqual(seen)
    letThrough()
    expect((await paying).status).toBe(200)
    await destroying
    const again = await createGuard({ db })
    try {
      expect(await again.get(taskId)).toMatchObject({ spent: price, reserved: 0n, entryCount: 1, openHolds: 0 })
      expect((await again.holds(taskId)).map((h) => h.status)).toEqual(['captured'])
      expect((await again.verify()).ok).toBe(true)
    } finally {
      await again.destroy()
    }
  })

  test('behavior: without a client, a failed settlement releases the hold', async () => {
    const { guard, pay, payer, signatures, events } = await setup({ total: 100_000n })
    const payerBefore = await balanceOf(payer)
    const seen = facilitatorSeen()
    facilitator.mode = 'fail'
    try {
      const response = await pay(`${resource.url}/paid`)
      expect(response.status).toBe(402)
    } finally {
      facilitator.mode = 'settle'
    }
    expect(signatures()).toBe(1)
    expect(facilitator.requests.settle).toBe(seen.settle + 1)
    expect(await balanceOf(payer)).toBe(payerBefore)
    const budget = await guard.get(taskId)
    expect([budget.spent, budget.reserved, budget.remaining]).toEqual([0n, 0n, 100_000n])
    expect((await guard.holds(taskId)).map((h) => h.status)).toEqual(['released'])
    expect(events.at(-1)).toMatchObject({ type: 'released', reason: expect.stringContaining('unexpected_settle_error') })
  })

  test('behavior: without a client, a payer without funds fails verification; the hold is released', async () => {
    const { guard, pay, payer, signatures, events } = await setup({ total: 100_000n, key: brokeKey })
    expect(await balanceOf(payer)).toBe(0n)
    const seen = facilitatorSeen()

    const response = await pay(`${resource.url}/paid`)

    expect(response.status).toBe(402)
    expect(signatures()).toBe(1)
    expect(facilitator.requests.verify).toBe(seen.verify + 1)
    expect(facilitator.requests.settle).toBe(seen.settle)
    const budget = await guard.get(taskId)
    expect([budget.spent, budget.reserved]).toEqual([0n, 0n])
    expect((await guard.holds(taskId)).map((h) => h.status)).toEqual(['released'])
    expect(events.at(-1)).toMatchObject({ type: 'released', reason: expect.stringContaining('payment refused') })
  })

  test('behavior: a paid request that fails once sent keeps its hold reserved; with a client, the chain shows the authorization unused', async () => {
    // The server drops the connection before it settles: nothing moved, but no client can tell.
    for (const assets of [undefined, [{ network, asset: token, publicClient }]]) {
      const { guard, pay, payer, signatures, events } = await setup({ total: 100_000n, assets })
      const payerBefore = await balanceOf(payer)
      const seen = facilitatorSeen()

      await expect(pay(`${resource.url}/drop`)).rejects.toThrow()

      expect(signatures()).toBe(1)
      expect(facilitatorSeen()).toEqual(seen)
      expect(await balanceOf(payer)).toBe(payerBefore)
      const budget = await guard.get(taskId)
      expect([budget.spent, budget.reserved]).toEqual([0n, price])
      expect((await guard.holds(taskId)).map((h) => h.status)).toEqual(['open'])
      expect(events.at(-1)).toMatchObject({ type: 'unresolved', reason: expect.stringContaining('request failed') })
    }
  })

  test('behavior: a server that settles and drops the answer cannot free the budget it was paid from', async () => {
    // Without a client the hold stays reserved; with one, the used authorization is captured.
    for (const assets of [undefined, [{ network, asset: token, publicClient }]]) {
      const { guard, pay, payer, events } = await setup({ total: 100_000n, assets })
      const payerBefore = await balanceOf(payer)
      const seen = facilitatorSeen()

      await expect(pay(`${resource.url}/take`)).rejects.toThrow()

      expect(facilitatorSeen().settle).toBe(seen.settle + 1)
      expect(payerBefore - (await balanceOf(payer))).toBe(price)
      const budget = await guard.get(taskId)
      if (assets === undefined) {
        expect([budget.spent, budget.reserved]).toEqual([0n, price])
        expect(events.at(-1)).toMatchObject({ type: 'unresolved' })
      } else {
        expect([budget.spent, budget.reserved]).toEqual([price, 0n])
        expect(events.at(-1)).toMatchObject({ type: 'captured', amountSource: 'authorization', entry: { amount: price } })
      }
    }
  })

  test('behavior: an unresolved payment is settled from the chain later: captured once its authorization is used, released once it expired unused', async () => {
    // The paid requests are dropped before the server settles; the test keeps what they carried.
    const sent: string[] = []
    const assets = [{ network, asset: token, publicClient }]
    const { guard, pay, payer, events } = await setup({ total: 100_000n, assets, authorizationPollMs: 20, transport: keeping(sent) })
    const before = await balanceOf(payer)

    // Used later: whoever holds the signed payment settles it after the client gave up.
    await expect(pay(`${resource.url}/drop`)).rejects.toThrow()
    expect(events.at(-1)).toMatchObject({ type: 'unresolved' })
    await settleLater(sent[0] as string)
    await until(events, 'captured')
    expect(events.at(-1)).toMatchObject({ type: 'captured', amountSource: 'authorization', entry: { amount: price } })
    expect(before - (await balanceOf(payer))).toBe(price)
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })

    // Expired unused: valid for 2 s, never settled. Once a finalized block is past its validBefore,
    // nothing can use it any more.
    await expect(pay(`${resource.url}/lapse`)).rejects.toThrow()
    expect(events.at(-1)).toMatchObject({ type: 'unresolved' })
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: price })
    await releasedOnceExpired(sent[1] as string, events, () => expect(events.at(-1)).toMatchObject({ type: 'unresolved' }))
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
    expect(before - (await balanceOf(payer))).toBe(price)
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: an unresolved payment stops being looked up on chain once its hold is captured some other way', async () => {
    // A client that counts its contract reads.
    let reads = 0
    const counting = createPublicClient({
      chain: publicClient.chain,
      transport: http(anvil.rpcUrl, {
        onFetchRequest: async (request) => {
          if ((await request.clone().text()).includes('"eth_call"')) reads++
        },
      }),
    }) as PublicClient
    const { guard, pay, events } = await setup({ total: 100_000n, assets: [{ network, asset: token, publicClient: counting }], authorizationPollMs: 10 })
    await expect(pay(`${resource.url}/drop`)).rejects.toThrow()
    expect(events.at(-1)).toMatchObject({ type: 'unresolved' })
    const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
    const before = reads
    for (let i = 0; i < 100 && reads === before; i++) await wait(10)
    expect(reads).toBeGreaterThan(before)

    // Captured by hand (the operator learned what was paid): nothing left to look up.
    const [hold] = await guard.holds(taskId)
    await guard.capture((hold as { id: string }).id, price)
    // A look-up already past its hold check may still read once; a poller that went on would
    // read about twenty times in 200 ms.
    const after = reads
    await wait(200)
    expect(reads - after).toBeLessThanOrEqual(1)
    expect(events.at(-1)).toMatchObject({ type: 'unresolved' })
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n, entryCount: 1 })
  })

  test('behavior: a paid request whose connection never opened releases its hold', async () => {
    // The paid retry goes to a port nothing listens on: the payment never left the machine.
    const closed = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo
        server.close(() => resolve(port))
      })
    })
    const refused: typeof fetch = async (input, init) => {
      const request = new Request(input, init)
      if (request.headers.has('PAYMENT-SIGNATURE')) return fetch(`http://127.0.0.1:${closed}/`, { headers: request.headers })
      return fetch(request)
    }
    const { guard, pay, signatures, events } = await setup({ total: 100_000n, transport: refused })
    await expect(pay(`${resource.url}/paid`)).rejects.toThrow()
    expect(signatures()).toBe(1)
    expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: 0n })
    expect((await guard.holds(taskId)).map((h) => h.status)).toEqual(['released'])
    expect(events.at(-1)).toMatchObject({ type: 'released', reason: expect.stringContaining('request failed') })
  })

  test('behavior: a token outside the budget asset is refused before signing', async () => {
    const other = getAddress('0x000000000000000000000000000000000000dEaD')
    const { guard, pay, signatures } = await setup({ total: 100_000n, assets: [{ network, asset: other }] })
    const seen = facilitatorSeen()

    const refusal = await pay(`${resource.url}/paid`).catch((error: unknown) => error)

    expect(refusal).toBeInstanceOf(X402AssetNotAllowedError)
    expect(refusal).toMatchObject({ taskId, network, asset: token })
    expect(signatures()).toBe(0)
    expect(facilitatorSeen()).toEqual(seen)
    expect(await guard.holds(taskId)).toEqual([])
  })

  test('behavior: a risk denial or a closed budget stops the payment before signing', async () => {
    const risky = await setup({
      total: 100_000n,
      guardParameters: { riskAssessor: ({ operation }) => (operation === 'reserve' ? { allow: false, reason: 'peer on a blocklist' } : { allow: true }) },
    })
    await expect(risky.pay(`${resource.url}/paid`)).rejects.toBeInstanceOf(RiskDeniedError)
    expect(risky.signatures()).toBe(0)

    const closed = await setup({ total: 100_000n })
    await closed.guard.close(taskId)
    await expect(closed.pay(`${resource.url}/paid`)).rejects.toBeInstanceOf(BudgetClosedError)
    expect(closed.signatures()).toBe(0)
  })

  test('behavior: with a client, the settled amount is read from the transfer in the receipt', async () => {
    const { guard, pay, payer, events } = await setup({ total: 100_000n, assets: [{ network, asset: token, publicClient }] })
    const payerBefore = await balanceOf(payer)

    expect((await pay(`${resource.url}/paid`)).status).toBe(200)

    expect(events.find((e) => e.type === 'captured')).toMatchObject({ amountSource: 'receipt', entry: { amount: price } })
    expect((await guard.get(taskId)).spent).toBe(payerBefore - (await balanceOf(payer)))
  })

  test('behavior: an exact settlement naming a transaction that paid the payee nothing still counts the signed value', async () => {
    const from = privateKeyToAccount(payerKey).address
    const payload = { x402Version: 2, payload: { authorization: { from, to: payee, value: price.toString() } } } as never
    const requirements = { scheme: 'exact', network, asset: token, amount: price.toString(), payTo: payee, maxTimeoutSeconds: 60, extra: {} } as never
    // A success answer whose transaction is the token's mint: the receipt shows nothing moved to
    // the payee, yet the signed authorization could still be settled until it expires.
    const settlement = { success: true, transaction: mintTx, network, payer: from } as never
    expect(await settledAmount({ settlement, payload, requirements, reserved: price, publicClient })).toEqual({
      amount: price,
      source: 'authorization',
    })
  })

  test('behavior: a paid success whose settlement header was lost or garbled counts what was signed', async () => {
    for (const rewrite of ['strip', 'garble', 'not modified'] as const) {
      // A proxy between the agent and the server drops or mangles the settlement header (and
      // answers a paid request from its cache: a 304, which the server settled all the same).
      const proxy: typeof fetch = async (input, init) => {
        const response = await fetch(input, init)
        if (!response.headers.has('PAYMENT-RESPONSE')) return response
        const headers = new Headers(response.headers)
        if (rewrite === 'garble') headers.set('PAYMENT-RESPONSE', 'not base64 json')
        else headers.delete('PAYMENT-RESPONSE')
        if (rewrite === 'not modified') return new Response(null, { status: 304, headers })
        return new Response(response.body, { status: response.status, headers })
      }
      const { guard, pay, payer, events } = await setup({ total: 25_000n, transport: proxy })
      const before = await balanceOf(payer)
      for (let i = 0; i < 2; i++) expect((await pay(`${resource.url}/paid`)).status).toBe(rewrite === 'not modified' ? 304 : 200)
      // The third would pass the hard limit: refused before signing, as the ledger knows both.
      await expect(pay(`${resource.url}/paid`)).rejects.toBeInstanceOf(BudgetExceededError)
      const budget = await guard.get(taskId)
      expect([budget.spent, budget.reserved]).toEqual([2n * price, 0n])
      expect(before - (await balanceOf(payer))).toBe(budget.spent)
      expect(events.filter((e) => e.type === 'captured').map((e) => (e as { amountSource: string }).amountSource)).toEqual([
        'authorization',
        'authorization',
      ])
      expect(await guard.verify()).toEqual({ ok: true, problems: [] })
    }
  })

  test('behavior: a paid redirect that fetch follows to an error page still counts what was signed', async () => {
    // The paid answer is a redirect (settled, its header gone with it), followed to a page that is missing.
    const pages = createServer((request, response) => {
      if (request.url === '/moved') response.writeHead(302, { location: '/missing' }).end()
      else response.writeHead(404).end('not here')
    })
    await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve))
    const moved = `http://127.0.0.1:${(pages.address() as AddressInfo).port}/moved`
    const redirecting: typeof fetch = async (input, init) => {
      const response = await fetch(input, init)
      return response.headers.has('PAYMENT-RESPONSE') ? fetch(moved) : response
    }
    try {
      const { guard, pay, payer, events } = await setup({ total: 100_000n, transport: redirecting })
      const before = await balanceOf(payer)
      const response = await pay(`${resource.url}/paid`)
      expect([response.status, response.redirected]).toEqual([404, true])
      expect(before - (await balanceOf(payer))).toBe(price)
      expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
      expect(events.at(-1)).toMatchObject({ type: 'captured', amountSource: 'authorization' })
    } finally {
      await new Promise((resolve) => pages.close(resolve))
    }
  })

  test('behavior: without a client, a paid request answered with an error and no settlement releases its hold', async () => {
    // A gateway answers 502 for the paid request: it never reached the server, nothing settled.
    const gateway: typeof fetch = async (input, init) => {
      const request = new Request(input, init)
      if (request.headers.has('PAYMENT-SIGNATURE')) return new Response('bad gateway', { status: 502 })
      return fetch(request)
    }
    const { guard, pay, payer, events } = await setup({ total: 100_000n, transport: gateway })
    const before = await balanceOf(payer)
    expect((await pay(`${resource.url}/paid`)).status).toBe(502)
    expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: 0n })
    expect(await balanceOf(payer)).toBe(before)
    expect(events.at(-1)).toMatchObject({ type: 'released', reason: 'no settlement in the response (status 502)' })
  })

  test('behavior: a server that settles yet answers a failure is caught by the chain where a client can ask', async () => {
    const lying = settlementRewritten((settled) => ({ ...settled, success: false, errorReason: 'unexpected_settle_error' }))
    for (const assets of [[{ network, asset: token, publicClient }], undefined]) {
      const { guard, pay, payer, events } = await setup({ total: 100_000n, assets, transport: lying })
      const before = await balanceOf(payer)
      expect((await pay(`${resource.url}/paid`)).status).toBe(402)
      expect(before - (await balanceOf(payer))).toBe(price)
      if (assets) {
        expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
        expect(events.at(-1)).toMatchObject({ type: 'captured', amountSource: 'authorization', entry: { amount: price } })
      } else {
        // No client to ask: the server's word stands (the README names this limit).
        expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: 0n })
        expect(events.at(-1)).toMatchObject({ type: 'released', reason: expect.stringContaining('unexpected_settle_error') })
      }
    }
  })

  test('behavior: with a client, a failure answer keeps the hold until the chain shows the authorization used or expired', async () => {
    // The server answers that settling failed, yet keeps a signed authorization that stays valid
    // until its validBefore: released at once, it could be settled afterwards past the budget.
    const sent: string[] = []
    const assets = [{ network, asset: token, publicClient }]
    const { guard, pay, payer, events } = await setup({ total: 100_000n, assets, authorizationPollMs: 20, transport: keeping(sent) })
    const before = await balanceOf(payer)
    facilitator.mode = 'fail'
    try {
      expect((await pay(`${resource.url}/paid`)).status).toBe(402)
      expect(events.at(-1)).toMatchObject({ type: 'unresolved', reason: expect.stringContaining('unexpected_settle_error') })
      expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: price })
      expect(await balanceOf(payer)).toBe(before)
      expect((await pay(`${resource.url}/brief`)).status).toBe(402)
      expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: 2n * price })
    } finally {
      facilitator.mode = 'settle'
    }

    // The first one settled later: captured at its signed value.
    await settleLater(sent[0] as string)
    await until(events, async () => (await guard.get(taskId)).spent !== 0n)
    expect(events.filter((e) => e.type === 'captured')).toMatchObject([{ amountSource: 'authorization', entry: { amount: price } }])
    expect(before - (await balanceOf(payer))).toBe(price)
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: price })

    // The second, valid for 2 s, never settled: released once a finalized block is past it.
    await releasedOnceExpired(sent[1] as string, events, async () => expect(await guard.get(taskId)).toMatchObject({ reserved: price }))
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
    expect(before - (await balanceOf(payer))).toBe(price)
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: with a client, a failure answer whose authorization cannot be looked up keeps the hold', async () => {
    // The node fails every contract read for a while: a read that failed says nothing.
    let reachable = false
    const flaky = createPublicClient({
      chain: publicClient.chain,
      transport: custom({
        request: async ({ method, params }: { method: string; params?: unknown }) => {
          if (method === 'eth_call' && !reachable) throw new Error('node unavailable')
          return publicClient.request({ method, params } as never)
        },
      }),
    }) as PublicClient
    const sent: string[] = []
    const assets = [{ network, asset: token, publicClient: flaky }]
    const { guard, pay, events } = await setup({ total: 100_000n, assets, authorizationPollMs: 20, transport: keeping(sent) })
    facilitator.mode = 'fail'
    try {
      expect((await pay(`${resource.url}/paid`)).status).toBe(402)
    } finally {
      facilitator.mode = 'settle'
    }
    expect(events.at(-1)).toMatchObject({ type: 'unresolved' })
    expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: price })
    await settleLater(sent[0] as string)
    reachable = true
    await until(events, 'captured')
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
  })

  test('behavior: with a client, a paid request redirected to a port nobody listens on is settled by the chain, not taken as never sent', async () => {
    // The server settles, then redirects the client to a closed port: the request fails as if it
    // never connected, although the first hop took the payment.
    for (const assets of [[{ network, asset: token, publicClient }], undefined]) {
      const { guard, pay, payer, events } = await setup({ total: 100_000n, assets })
      const before = await balanceOf(payer)
      await expect(pay(`${resource.url}/detour`)).rejects.toThrow()
      expect(before - (await balanceOf(payer))).toBe(price)
      if (assets) {
        expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
        expect(events.at(-1)).toMatchObject({ type: 'captured', amountSource: 'authorization', entry: { amount: price } })
      } else {
        // No client to ask: a refused connection is taken as never sent (the README names this limit).
        expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: 0n })
        expect(events.at(-1)).toMatchObject({ type: 'released' })
      }
    }
  })

  test('behavior: a payment valid longer than the hold lives is refused before anything is reserved or signed', async () => {
    // The server asks for 120 s of validity; a 60 s hold could expire while the payee can still settle.
    const { guard, pay, signatures } = await setup({ total: 100_000n, holdTtlMs: 60_000 })
    const seen = facilitatorSeen()
    const refusal = await pay(`${resource.url}/paid`).catch((error: unknown) => error)
    expect(refusal).toBeInstanceOf(X402ValidityTooLongError)
    expect(refusal).toMatchObject({ code: 'X402_VALIDITY_TOO_LONG', taskId, maxTimeoutSeconds: 120, holdTtlMs: 60_000 })
    expect(signatures()).toBe(0)
    expect(facilitatorSeen()).toEqual(seen)
    expect(await guard.holds(taskId)).toEqual([])
    // A hold that outlives the validity pays as usual.
    const longer = await setup({ total: 100_000n, holdTtlMs: 121_000 })
    expect((await longer.pay(`${resource.url}/paid`)).status).toBe(200)
    expect(await longer.guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
  })

  test('behavior: a payment used on chain after its hold expired is recorded once, as a fact, even past the limit', async () => {
    const clock = manualClock(Date.now())
    const sent: string[] = []
    const assets = [{ network, asset: token, publicClient }]
    const { guard, pay, payer, events } = await setup({
      total: price,
      assets,
      holdTtlMs: 121_000,
      authorizationPollMs: 20,
      transport: keeping(sent),
      guardParameters: { clock },
    })
    const before = await balanceOf(payer)
    await expect(pay(`${resource.url}/drop`)).rejects.toThrow()
    expect(events.at(-1)).toMatchObject({ type: 'unresolved' })
    // The hold's TTL runs out before the payee settles, and the freed budget is reserved again.
    clock.advance(122_000)
    expect(await guard.expireHolds()).toBe(1)
    expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: 0n })
    await guard.reserve(taskId, price)
    await settleLater(sent[0] as string)
    await until(events, 'captured')
    expect(before - (await balanceOf(payer))).toBe(price)
    const [entry] = await guard.entries(taskId)
    expect(entry).toMatchObject({ amount: price, holdId: undefined, reason: expect.stringContaining('settled after its hold expired') })
    expect(entry?.id).toMatch(/^x402_hold_/)
    expect((await guard.holds(taskId)).map((h) => h.status)).toEqual(['expired', 'open'])
    // The money left: the ledger counts it, past the hard limit, as overspent.
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: price, overspent: price, entryCount: 1 })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: a payment used on chain after its budget was closed is recorded once, as a fact', async () => {
    const sent: string[] = []
    const assets = [{ network, asset: token, publicClient }]
    const { guard, pay, payer, events } = await setup({ total: 100_000n, assets, authorizationPollMs: 20, transport: keeping(sent) })
    const before = await balanceOf(payer)
    await expect(pay(`${resource.url}/drop`)).rejects.toThrow()
    expect(events.at(-1)).toMatchObject({ type: 'unresolved' })
    // The task ends while the payment is unresolved: close releases its hold.
    expect(await guard.close(taskId)).toMatchObject({ releasedHolds: 1, spent: 0n })
    await settleLater(sent[0] as string)
    await until(events, 'captured')
    expect(before - (await balanceOf(payer))).toBe(price)
    const [entry] = await guard.entries(taskId)
    expect(entry).toMatchObject({ amount: price, holdId: undefined, reason: expect.stringContaining('after its hold was released') })
    expect(await guard.get(taskId)).toMatchObject({ status: 'closed', spent: price, reserved: 0n, entryCount: 1 })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: another hook that aborts a payment after the adapter reserved it leaves no hold behind', async () => {
    const guard = await guards.guard()
    await guard.allocate(taskId, { total: 100_000n, asset: 'USDC', decimals: 6 })
    const { client, signatures } = payingClient(payerKey)
    createX402Guard({ guard, taskId, assets: [{ network, asset: token }] }).register(client)
    // An application policy registered after the guard; with the hooks alone (no wrapFetch).
    client.onBeforePaymentCreation(async () => ({ abort: true, reason: 'policy: resource not allowed' }))
    const pay = wrapFetchWithPayment(fetch, client)
    for (let i = 0; i < 3; i++) await expect(pay(`${resource.url}/paid`)).rejects.toThrow(/policy: resource not allowed/)
    expect(signatures()).toBe(0)
    expect((await guard.holds(taskId)).map((h) => h.status)).toEqual(['released', 'released', 'released'])
    expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: 0n })
  })

  test('behavior: a payment another hook recovers after its creation failed keeps its hold, and its settlement is captured', async () => {
    const guard = await guards.guard()
    await guard.allocate(taskId, { total: 100_000n, asset: 'USDC', decimals: 6 })
    // A signer whose first signature fails; the application's own failure hook signs again.
    const account = privateKeyToAccount(payerKey)
    let failures = 1
    const signer: ClientEvmSigner = {
      address: account.address,
      signTypedData: async (message) => {
        if (failures-- > 0) throw new Error('signer busy')
        return account.signTypedData(message as Parameters<typeof account.signTypedData>[0])
      },
    }
    const scheme = () => new x402Client().register(network, new ExactEvmScheme(signer)).setSpendControls({ allowedAssets: [{ network, asset: token }] })
    const client = scheme()
    const spend = createX402Guard({ guard, taskId, assets: [{ network, asset: token }] })
    spend.register(client)
    const again = scheme()
    client.onPaymentCreationFailure(async (context) => ({ recovered: true as const, payload: await again.createPaymentPayload(context.paymentRequired) }))
    const pay = spend.wrapFetch(wrapFetchWithPayment(fetch, client))
    expect((await pay(`${resource.url}/paid`)).status).toBe(200)
    expect((await guard.holds(taskId)).map((h) => h.status)).toEqual(['captured'])
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
  })

  test('behavior: a request that already carries a payment header is refused before anything is reserved or signed', async () => {
    const { guard, pay, signatures } = await setup({ total: 100_000n })
    for (const [input, init] of [
      [`${resource.url}/paid`, { headers: { 'PAYMENT-SIGNATURE': 'e30=' } }],
      [new Request(`${resource.url}/paid`, { headers: { 'X-PAYMENT': 'e30=' } }), undefined],
    ] as const)
      await expect(pay(input as string, init)).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'headers' })
    expect(signatures()).toBe(0)
    expect(await guard.holds(taskId)).toEqual([])
  })

  test('behavior: an observer that throws or rejects changes nothing', async () => {
    // A rejection nobody handles would end the agent's process.
    const unhandled: unknown[] = []
    const note = (reason: unknown) => void unhandled.push(reason)
    process.on('unhandledRejection', note)
    onTestFinished(() => void process.off('unhandledRejection', note))
    for (const observe of [
      () => {
        throw new Error('log sink down')
      },
      async () => {
        throw new Error('log sink down')
      },
    ]) {
      const { guard, pay, events } = await setup({ total: 100_000n, observe })
      expect((await pay(`${resource.url}/paid`)).status).toBe(200)
      await new Promise((resolve) => setTimeout(resolve, 20))
      expect(events.map((e) => e.type)).toEqual(['reserved', 'captured'])
      expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
    }
    expect(unhandled).toEqual([])
  })

  test('behavior: with a client, a Permit2 payment the server answered as failed is settled by the chain: captured once its nonce is spent, released once it expired', async () => {
    // The server picks how the payer signs: here a Permit2 signature transfer, which the server
    // refuses, while keeping it valid until its deadline.
    const permit2 = await installPermit2Nonces(publicClient)
    const sent: string[] = []
    const assets = [{ network, asset: token, publicClient }]
    const { guard, pay, events } = await setup({ total: 100_000n, assets, authorizationPollMs: 20, transport: askingPermit2(sent) })
    facilitator.mode = 'fail'
    onTestFinished(() => void (facilitator.mode = 'settle'))
    expect((await pay(`${resource.url}/paid`)).status).toBe(402)
    expect(decodePaymentSignatureHeader(sent[0] as string).payload).toHaveProperty('permit2Authorization')
    expect(events.at(-1)).toMatchObject({ type: 'unresolved' })
    expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: price })

    // Its nonce spent on Permit2 (by the payer here; a transfer spends it the same way): captured.
    const nonce = BigInt((decodePaymentSignatureHeader(sent[0] as string).payload.permit2Authorization as { nonce: string }).nonce)
    const payer = createWalletClient({ chain: publicClient.chain, transport: http(anvil.rpcUrl), account: privateKeyToAccount(payerKey) })
    const spent = await payer.writeContract({
      address: permit2,
      abi: permit2NoncesAbi,
      functionName: 'invalidateUnorderedNonces',
      args: [nonce >> 8n, 1n << (nonce & 255n)],
      chain: publicClient.chain,
    })
    await publicClient.waitForTransactionReceipt({ hash: spent, pollingInterval: 20 })
    await until(events, 'captured')
    expect(events.at(-1)).toMatchObject({ type: 'captured', amountSource: 'authorization', entry: { amount: price } })
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })

    // One valid for 2 s, never used: released once a finalized block is past its deadline.
    expect((await pay(`${resource.url}/brief`)).status).toBe(402)
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: price })
    await releasedOnceExpired(sent[1] as string, events, async () => expect(await guard.get(taskId)).toMatchObject({ reserved: price }))
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  })

  test('behavior: a pending exact settlement whose transaction paid the payee nothing stays reserved', async () => {
    // The payee answers "pending" naming the token's mint: its receipt shows nothing moved to the
    // payee, yet the signed authorization may have been settled, or may still be.
    const pending = settlementRewritten((settled) => ({ ...settled, success: false, errorReason: 'settlement_pending', transaction: mintTx }))
    const { guard, pay, payer, events } = await setup({ total: 100_000n, assets: [{ network, asset: token, publicClient }], transport: pending })
    const before = await balanceOf(payer)
    await pay(`${resource.url}/paid`)
    expect(before - (await balanceOf(payer))).toBe(price)
    expect(await guard.get(taskId)).toMatchObject({ spent: 0n, reserved: price })
    expect(events.at(-1)).toMatchObject({ type: 'unresolved', settlement: { transaction: mintTx } })
  })

  test('behavior: an unconfirmed settlement is resolved on chain with a client, kept reserved without one', async () => {
    facilitator.mode = 'unconfirmed'
    try {
      const resolved = await setup({ total: 100_000n, assets: [{ network, asset: token, publicClient }] })
      const before = await balanceOf(resolved.payer)
      expect((await resolved.pay(`${resource.url}/paid`)).status).toBe(402)
      const budget = await resolved.guard.get(taskId)
      expect([budget.spent, budget.reserved]).toEqual([price, 0n])
      expect(before - (await balanceOf(resolved.payer))).toBe(price)
      expect(resolved.events.at(-1)).toMatchObject({ type: 'captured', amountSource: 'receipt' })

      // No client to ask: the money may have moved, so the hold stays reserved rather than freed.
      const unknown = await setup({ total: 100_000n })
      expect((await unknown.pay(`${resource.url}/paid`)).status).toBe(402)
      const kept = await unknown.guard.get(taskId)
      expect([kept.spent, kept.reserved]).toEqual([0n, price])
      expect(unknown.events.at(-1)).toMatchObject({ type: 'unresolved' })
    } finally {
      facilitator.mode = 'settle'
    }
  })

  test('behavior: the hooks alone reserve and capture; the wrapper adds typed refusals', async () => {
    const guard = await guards.guard()
    await guard.allocate(taskId, { total: 15_000n, asset: 'USDC', decimals: 6 })
    const { client, signatures } = payingClient(payerKey)
    createX402Guard({ guard, taskId, assets: [{ network, asset: token }] }).register(client)
    const pay = wrapFetchWithPayment(fetch, client)

    expect((await pay(`${resource.url}/paid`)).status).toBe(200)
    expect(await guard.get(taskId)).toMatchObject({ spent: price, reserved: 0n })

    // @x402/fetch rewraps the refusal in a plain Error; it still comes before any signature.
    await expect(pay(`${resource.url}/paid`)).rejects.toThrow(/Failed to create payment payload: Budget/)
    expect(signatures()).toBe(1)
    expect(await guard.holds(taskId)).toHaveLength(1)
  })

  test('behavior: bad adapter timings are refused with InvalidArgumentError', async () => {
    const guard = await guards.guard()
    const assets = [{ network, asset: token }]
    for (const bad of [{ receiptTimeoutMs: 0 }, { authorizationPollMs: -1 }, { authorizationPollMs: 1.5 }, { authorizationPollMs: 2 ** 31 }])
      expect(() => createX402Guard({ guard, taskId, assets, ...bad }), JSON.stringify(bad)).toThrow(InvalidArgumentError)
    expect(() => createX402Guard({ guard, taskId, assets, authorizationPollMs: 1_000 })).not.toThrow()
  })

  test('behavior: the one-line setup pays, and a client is guarded once', async () => {
    const guard = await guards.guard()
    await guard.allocate(taskId, { total: 100_000n, asset: 'USDC', decimals: 6 })
    const { client } = payingClient(payerKey)
    const pay = wrapFetchWithSpendguard(fetch, client, { guard, taskId, assets: [{ network, asset: token }] })

    expect((await pay(`${resource.url}/paid`)).status).toBe(200)
    expect((await guard.get(taskId)).spent).toBe(price)
    expect(() => createX402Guard({ guard, taskId, assets: [{ network, asset: token }] }).register(client)).toThrow(
      InvalidArgumentError,
    )
  })
})

describe('x402 settled amount', () => {
  const payer = '0x00000000000000000000000000000000000000A1'
  const payTo = '0x00000000000000000000000000000000000000B2'
  const asset = '0x00000000000000000000000000000000000000C3'
  const requirements = (scheme: string) =>
    ({ scheme, network: 'eip155:31337', asset, amount: '1000', payTo, maxTimeoutSeconds: 60, extra: {} }) as never
  const payload = { x402Version: 2, payload: { authorization: { from: payer, to: payTo, value: '1000' } } } as never
  const settlement = (amount: string | undefined) =>
    ({ success: true, transaction: `0x${'ab'.repeat(32)}`, network: 'eip155:31337', payer, amount }) as never
  /** What a successful settlement claiming `claim` counts, for a hold of 1000 signed as 1000. */
  const settle = (claim: string | undefined, scheme: string) =>
    settledAmount({ settlement: settlement(claim), payload, requirements: requirements(scheme), reserved: 1000n })

  test('behavior: an exact settlement claiming less than was signed counts the signed value', async () => {
    // A payee paid 1000 that reports 1 would otherwise free 999 of budget already spent.
    expect(await settle('1', 'exact')).toEqual({ amount: 1000n, source: 'authorization' })
    expect(await settle('0', 'exact')).toEqual({ amount: 1000n, source: 'authorization' })
    expect(await settle('1000', 'exact')).toEqual({ amount: 1000n, source: 'response' })
    expect(await settle(undefined, 'exact')).toEqual({ amount: 1000n, source: 'authorization' })
  })

  test('behavior: a scheme that settles up to the signed value reports its own amount', async () => {
    expect(await settle('250', 'upto')).toEqual({ amount: 250n, source: 'response' })
  })

  test('behavior: with a client, what the transaction that used the signed transfer moved counts, not the amount the payee reports', async () => {
    // A Permit2 signed transfer of at most 1000; its settlement moves 700 from the payer to the
    // payee and spends the nonce, in one block.
    const permit2 = await installPermit2Nonces(publicClient)
    const account = privateKeyToAccount(payerKey)
    const wallet = createWalletClient({ chain: publicClient.chain, transport: http(anvil.rpcUrl), account })
    const send = (amount: bigint) => wallet.writeContract({ address: token, abi: testUsdcAbi, functionName: 'transfer', args: [payee, amount], chain: publicClient.chain })
    const nonce = 0xbeefn
    const unrelated = await send(700n)
    await publicClient.waitForTransactionReceipt({ hash: unrelated, pollingInterval: 20 })
    await publicClient.request({ method: 'evm_setAutomine', params: [false] } as never)
    let settlement: Hex
    try {
      settlement = await send(700n)
      await wallet.writeContract({ address: permit2, abi: permit2NoncesAbi, functionName: 'invalidateUnorderedNonces', args: [nonce >> 8n, 1n << (nonce & 255n)], chain: publicClient.chain })
      await publicClient.request({ method: 'evm_mine' } as never)
    } finally {
      await publicClient.request({ method: 'evm_setAutomine', params: [true] } as never)
    }
    await publicClient.waitForTransactionReceipt({ hash: settlement, pollingInterval: 20 })
    const upto = { scheme: 'upto', network, asset: token, amount: '1000', payTo: payee, maxTimeoutSeconds: 60, extra: {} } as never
    const signed = {
      x402Version: 2,
      payload: { permit2Authorization: { from: account.address, nonce: nonce.toString(), deadline: '99999999999', permitted: { token, amount: '1000' } } },
    } as never
    const settled = (transaction: Hex, amount: string) =>
      settledAmount({ settlement: { success: true, transaction, network, payer: account.address, amount } as never, payload: signed, requirements: upto, reserved: 1000n, publicClient, receiptTimeoutMs: 1_000 })
    expect(await settled(settlement, '1')).toEqual({ amount: 700n, source: 'receipt' })
    // A real transfer that did not use the signed transfer (the payee names an older payment): the
    // signed transfer may still take its whole amount.
    expect(await settled(unrelated, '1')).toEqual({ amount: 1000n, source: 'reserved' })
    // A transaction that never lands: the most that may have left.
    expect(await settled(`0x${'ef'.repeat(32)}`, '1')).toEqual({ amount: 1000n, source: 'reserved' })
  })

  test('behavior: an exact settlement naming a transaction that never lands is answered without waiting for it', async () => {
    const began = Date.now()
    const settled = await settledAmount({
      settlement: settlement(undefined),
      payload,
      requirements: requirements('exact'),
      reserved: 1000n,
      publicClient,
      receiptTimeoutMs: 30_000,
    })
    expect(settled).toEqual({ amount: 1000n, source: 'authorization' })
    // Waiting for that receipt would take the whole 30 s.
    expect(Date.now() - began).toBeLessThan(10_000)
  })

  test('behavior: a settlement claiming more than the payer authorized is not believed', async () => {
    // exact moves exactly what was signed; a larger claim would charge the budget for money that never left.
    expect(await settle('50000', 'exact')).toEqual({ amount: 1000n, source: 'authorization' })
    // Any other scheme: at most the hold, the most the payer authorized.
    expect(await settle('1001', 'upto')).toEqual({ amount: 1000n, source: 'reserved' })
  })
})
