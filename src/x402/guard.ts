import { AsyncLocalStorage } from 'node:async_hooks'
import type {
  PaymentCreatedContext,
  PaymentCreationContext,
  PaymentCreationFailureContext,
  PaymentResponseContext,
  x402Client,
} from '@x402/core/client'
import type { PaymentPayload, PaymentRequired, PaymentRequirements, SettleResponse } from '@x402/core/types'
import { wrapFetchWithPayment } from '@x402/fetch'
import { type PublicClient, isAddress, isAddressEqual } from 'viem'
import { GuardDestroyedError, HoldNotOpenError, InvalidAmountError, InvalidArgumentError, isDomainError } from '../engine/errors.ts'
import type { Guard } from '../engine/guard.ts'
import type { Hold, SpendEntry } from '../engine/types.ts'
import { x402PaidAfterHoldEnded } from '../engine/rules.ts'
import { assertId, optionalCount, optionalText, optionalTtlMs } from '../engine/validate.ts'
import { X402AssetNotAllowedError, X402ValidityTooLongError, X402VersionNotSupportedError } from './errors.ts'
import {
  type SettledAmountSource,
  atMostReserved,
  authorizationOutcome,
  chainQuestion,
  exactSignedValue,
  loose,
  parseAtomicAmount,
  settledAmount,
  settlementMovedByPayment,
  settlementReceiptAmount,
  signedAuthorization,
} from './settled.ts'

/** A `fetch`-shaped function, such as the one `wrapFetchWithPayment` of `@x402/fetch` returns. */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

/** A token contract that carries the budget's asset on one network. */
export type X402Asset = {
  /** CAIP-2 network id, e.g. `eip155:8453` (Base) or `eip155:31337` (anvil). */
  network: `${string}:${string}`
  /** The token as x402 names it in payment requirements: an EVM address (any case) or the network's own id. */
  asset: string
  /**
   * A viem client of `network` (EVM only). When given, the chain is asked rather than the server
   * believed: a settlement of a scheme other than `exact` is measured by the `Transfer` logs of
   * the transaction that used the payment's signed transfer, a settlement the facilitator could
   * not confirm (`settlement_pending`) is resolved by its receipt, and a payment the server
   * answered as failed (or never answered) is settled once the chain shows its signed transfer
   * used or expired (see `authorizationPollMs`).
   */
  publicClient?: PublicClient | undefined
}

export type CreateX402GuardParameters = {
  guard: Guard
  /** The task whose budget pays. */
  taskId: string
  /**
   * The tokens that carry the budget's asset. A payment requirement in any other token or network
   * is refused with {@link X402AssetNotAllowedError} before anything is signed.
   */
  assets: readonly X402Asset[]
  /**
   * Lifetime of each hold; the engine releases a hold that outlives it. Unset: holds live until the
   * payment's response (or, with {@link X402Guard.wrapFetch}, the end of the request). A
   * requirement whose `maxTimeoutSeconds` is not below it is refused before signing
   * ({@link X402ValidityTooLongError}); a payment found settled after its hold expired is
   * recorded as a spend without a hold.
   */
  holdTtlMs?: number | undefined
  /** `tool` of every spend entry. */
  tool?: string | undefined
  /** How long to wait for a settlement transaction's receipt (default 30 s). */
  receiptTimeoutMs?: number | undefined
  /**
   * How often a payment left unresolved (including one the server answered as failed while its
   * authorization can still be used) is looked up again on chain, when its asset has a
   * `publicClient` and it carries a signed transfer the chain can be asked about (an EIP-3009
   * authorization or a Permit2 signature transfer; default 15,000 ms): until the chain
   * shows the authorization used (its signed value is captured) or expired unused in a
   * finalized block (the hold is released). The lookups do not keep the process alive; a hold
   * whose process ends first stays reserved.
   */
  authorizationPollMs?: number | undefined
  /**
   * Told about every hold the adapter reserves, captures or releases, for logs and metrics (what
   * it throws, or the promise it returns rejects with, is ignored).
   */
  onPayment?: ((event: X402PaymentEvent) => unknown) | undefined
}

/** What happened to one payment's hold. */
export type X402PaymentEvent =
  | { type: 'reserved'; hold: Hold; requirements: PaymentRequirements; resource: string | undefined }
  /** `settlement` is missing when a successful response carried none (see `wrapFetch`). */
  | { type: 'captured'; hold: Hold; entry: SpendEntry; settlement: SettleResponse | undefined; amountSource: SettledAmountSource }
  | { type: 'released'; hold: Hold; reason: string; settlement?: SettleResponse | undefined }
  /**
   * Nothing says whether the payment moved money, so the hold stays open (until its TTL, if
   * any, or until the chain tells: see `authorizationPollMs`): a settlement the facilitator
   * broadcast but could not confirm, that no client could confirm either; a paid response
   * without a readable settlement and without a status that tells; a paid request that failed
   * once sent, whose authorization the chain does not show used (or no client was given to
   * ask); or a failure answer whose authorization the chain shows still usable.
   */
  | { type: 'unresolved'; hold: Hold; reason: string; settlement?: SettleResponse | undefined }

export type X402Guard = {
  readonly taskId: string
  /**
   * Installs the guard's hooks on an x402 client: reserve before a payment is created, capture or
   * release when its response comes back. A client can be guarded by one adapter only.
   */
  register<C extends x402Client>(client: C): C
  /**
   * Wraps a paying fetch (`wrapFetchWithPayment(fetch, client)` of a registered client) so that a
   * refusal reaches the caller as the guard's own error (`BudgetExceededError`, …) rather than the
   * transport's generic one, and so that a payment whose request failed after signing is settled
   * when the request ends: captured when the chain shows its signed transfer used, released when
   * it shows it expired unused; otherwise kept reserved, since the server may have settled it
   * (without a `publicClient`, one whose connection never opened is released).
   */
  wrapFetch(paidFetch: FetchLike): FetchLike
}

/**
 * `reserved` (not signed yet), `signed` (waiting for its response), `answered` (the paid
 * response came back without a settlement; `wrapFetch` decides from its status), then
 * `closed`: its response came (or it is being released), and nothing else may capture or
 * release its hold.
 */
type PaymentState = 'reserved' | 'signed' | 'answered' | 'closed'

type Payment = {
  hold: Hold
  requirements: PaymentRequirements
  /** The signed payload, once signed. */
  payload?: PaymentPayload | undefined
  asset: X402Asset
  resource: string | undefined
  state: PaymentState
}

/** The payments one wrapped request made, and the refusal that stopped it, if any. */
type Call = { payments: Payment[]; refusal?: unknown }

const settlementPendingReason = 'settlement_pending'
const caip2Pattern = /^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}$/

/** Clients some adapter guards: a second adapter would reserve every payment twice. */
const guardedClients = new WeakSet<object>()

/**
 * Creates the spendguard adapter for x402 clients (`@x402/core`, `@x402/fetch`, `@x402/evm`).
 * For each payment the client is about to create, it checks that the selected requirement pays in
 * one of `assets` and reserves its amount on the task's budget; a refusal
 * (`BudgetExceededError`, `RiskDeniedError`, `BudgetClosedError`, …) stops the payment before
 * anything is signed. When the paid response comes back it captures the settled amount (see
 * {@link settledAmount}) with the resource's host as `peer` and the settlement transaction as
 * `reason`, or releases the hold when the settlement failed (with a `publicClient`, once the chain
 * shows that its authorization can no longer be used). Each payment has its own hold, so
 * any number of requests may pay at once.
 *
 * @example
 * import { createGuard, createX402Guard } from 'spendguard'
 * import { wrapFetchWithPayment, x402Client } from '@x402/fetch'
 * import { ExactEvmScheme } from '@x402/evm/exact/client'
 * import { privateKeyToAccount } from 'viem/accounts'
 *
 * const guard = await createGuard()
 * await guard.allocate('task-1', { total: 5_000_000n, asset: 'USDC', decimals: 6 })
 *
 * const client = new x402Client().register('eip155:8453', new ExactEvmScheme(privateKeyToAccount(key)))
 * const spend = createX402Guard({
 *   guard,
 *   taskId: 'task-1',
 *   assets: [{ network: 'eip155:8453', asset: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913' }],
 * })
 * spend.register(client)
 * const pay = spend.wrapFetch(wrapFetchWithPayment(fetch, client))
 *
 * const response = await pay('https://api.example.com/search?q=anvil') // reserved, paid, captured
 */
export function createX402Guard(parameters: CreateX402GuardParameters): X402Guard {
  const { guard, taskId, assets, tool, onPayment } = validate(parameters)
  const holdTtlMs = parameters.holdTtlMs
  const receiptTimeoutMs = parameters.receiptTimeoutMs
  const authorizationPollMs = parameters.authorizationPollMs ?? 15_000
  const calls = new AsyncLocalStorage<Call>()
  /** Reserved payments not signed yet, by the requirement they pay (the object the client selected). */
  const reservedByRequirements = new WeakMap<PaymentRequirements, Payment[]>()
  /** Signed payments waiting for their response, by the payload the client sends. */
  const signedByPayload = new WeakMap<PaymentPayload, Payment>()
  /** The payments one `createPaymentPayload` call of a guarded client reserved. */
  const creating = new AsyncLocalStorage<Payment[]>()
  const chainChecks = new Map<X402Asset, Promise<void>>()

  function emit(event: X402PaymentEvent): void {
    try {
      // An observer may be async: its rejection is dropped as its throw is.
      const observed: unknown = onPayment?.(event)
      if (typeof (observed as PromiseLike<unknown> | undefined)?.then === 'function') Promise.resolve(observed).catch(() => {})
    } catch {
      // An observer cannot undo a payment: its error must not leave a hold behind.
    }
  }

  /** A client's chain must be the asset's network: checked once, before the first signature. */
  function checkChain(asset: X402Asset): Promise<void> {
    const client = asset.publicClient
    if (!client) return Promise.resolve()
    let check = chainChecks.get(asset)
    if (!check) {
      check = client.getChainId().then((chainId) => {
        if (`eip155:${chainId}` !== asset.network)
          throw new InvalidArgumentError({
            argument: 'assets[].publicClient',
            value: `eip155:${chainId}`,
            reason: `a client of ${asset.network}`,
          })
      })
      check.catch(() => chainChecks.delete(asset))
      chainChecks.set(asset, check)
    }
    return check
  }

  async function reserve(context: PaymentCreationContext): Promise<Payment> {
    const { paymentRequired, selectedRequirements: requirements } = context
    if (paymentRequired.x402Version !== 2) throw new X402VersionNotSupportedError({ x402Version: paymentRequired.x402Version })
    const asset = assets.find((a) => a.network === requirements.network && sameAsset(a.asset, requirements.asset))
    if (!asset)
      throw new X402AssetNotAllowedError({
        taskId,
        network: requirements.network,
        asset: requirements.asset,
        allowed: assets.map((a) => `${a.asset} on ${a.network}`),
      })
    const amount = parseAtomicAmount(requirements.amount)
    if (amount === undefined)
      throw new InvalidAmountError({ value: requirements.amount, reason: 'an x402 amount is an integer string in the smallest unit' })
    // The signed payment stays good for maxTimeoutSeconds: a hold that expired first would free
    // its amount while the payee can still take it.
    const validFor = requirements.maxTimeoutSeconds
    if (holdTtlMs !== undefined && !(typeof validFor === 'number' && validFor >= 0 && validFor * 1000 < holdTtlMs))
      throw new X402ValidityTooLongError({ taskId, maxTimeoutSeconds: validFor, holdTtlMs })
    await checkChain(asset)
    const hold = await guard.reserve(taskId, amount, { ttlMs: holdTtlMs })
    const resource = paymentRequired.resource?.url
    emit({ type: 'reserved', hold, requirements, resource })
    return { hold, requirements, asset, resource, state: 'reserved' }
  }

  async function beforePaymentCreation(context: PaymentCreationContext): Promise<void> {
    const call = calls.getStore()
    let payment: Payment
    try {
      payment = await reserve(context)
    } catch (error) {
      if (call) call.refusal = error
      throw error
    }
    call?.payments.push(payment)
    creating.getStore()?.push(payment)
    const reserved = reservedByRequirements.get(context.selectedRequirements)
    if (reserved) reserved.push(payment)
    else reservedByRequirements.set(context.selectedRequirements, [payment])
  }

  function takeReserved(requirements: PaymentRequirements): Payment | undefined {
    const reserved = reservedByRequirements.get(requirements)
    const payment = reserved?.shift()
    if (reserved?.length === 0) reservedByRequirements.delete(requirements)
    return payment
  }

  async function afterPaymentCreation(context: PaymentCreatedContext): Promise<void> {
    const payment = takeReserved(context.selectedRequirements)
    if (!payment) return
    payment.state = 'signed'
    payment.payload = context.paymentPayload
    signedByPayload.set(context.paymentPayload, payment)
  }

  /**
   * Runs a guarded client's `createPaymentPayload`. A payload that never came back was never
   * sent: what the call reserved or signed is released. (Another hook that aborts after the
   * adapter's reserve ends the call without the client's failure hooks.)
   */
  async function createGuarded(create: x402Client['createPaymentPayload'], paymentRequired: PaymentRequired): Promise<PaymentPayload> {
    const created: Payment[] = []
    const unclaim = (payment: Payment) => {
      const reserved = reservedByRequirements.get(payment.requirements)
      const at = reserved?.indexOf(payment) ?? -1
      if (reserved && at >= 0) reserved.splice(at, 1)
      if (payment.payload) signedByPayload.delete(payment.payload)
    }
    let payload: PaymentPayload
    try {
      payload = await creating.run(created, () => create(paymentRequired))
    } catch (error) {
      for (const payment of created) {
        if (payment.state !== 'reserved' && payment.state !== 'signed') continue
        unclaim(payment)
        await release(payment, `payment creation failed: ${messageOf(error)}`)
      }
      throw error
    }
    // A payload a failure hook recovered goes out in place of the one the adapter saw signed
    // (or of none): its hold is that payment's.
    const payment = created.at(-1)
    if (payment && (payment.state === 'reserved' || payment.state === 'signed') && payment.payload !== payload) {
      unclaim(payment)
      payment.state = 'signed'
      payment.payload = payload
      signedByPayload.set(payload, payment)
    }
    return payload
  }

  /**
   * Whether the payment is made after all is known only when `createPaymentPayload` ends:
   * another failure hook may recover it with a payload of its own (see {@link createGuarded}).
   */
  async function onPaymentCreationFailure(context: PaymentCreationFailureContext): Promise<void> {
    takeReserved(context.selectedRequirements)
  }

  async function onPaymentResponse(context: PaymentResponseContext): Promise<void> {
    const payment = signedByPayload.get(context.paymentPayload)
    if (!payment || payment.state !== 'signed') return
    signedByPayload.delete(context.paymentPayload)
    payment.state = 'closed'
    const settlement = context.settleResponse
    if (settlement?.success === true) await capture(payment, context.paymentPayload, settlement)
    else if (settlement?.errorReason === settlementPendingReason && settlement.transaction)
      await resolvePending(payment, context.paymentPayload, settlement)
    else if (settlement || context.paymentRequired) await releaseUnlessUsed(payment, failureReason(context), settlement)
    else if (calls.getStore()) {
      // No settlement could be read (a proxy dropped the header, or it was garbled): the
      // server may well have been paid. wrapFetch decides when it sees the status.
      payment.state = 'answered'
    } else unresolved(payment, failureReason(context))
  }

  /**
   * A paid response without a readable settlement. An x402 server settles whenever its
   * handler answers below 400 (a redirect that fetch followed included), so such a response
   * was paid for: what was signed counts (`exact`), else the hold's amount. A status of 400 or
   * more is a response the server says it did not settle for (see {@link releaseUnlessUsed}).
   * No response at all leaves the hold open, since nothing says whether money moved.
   */
  async function answered(payment: Payment, response: Response | undefined): Promise<void> {
    payment.state = 'closed'
    if (!response) {
      unresolved(payment, 'no settlement in the response, and the request failed')
      return
    }
    const status = `${response.status}${response.redirected ? ' after a redirect' : ''}`
    if (response.status >= 400 && !response.redirected) return releaseUnlessUsed(payment, `no settlement in the response (status ${status})`)
    const signed = payment.payload && exactSignedValue(payment.requirements, payment.payload)
    await spend(
      payment,
      signed ?? payment.hold.amount,
      signed === undefined ? 'reserved' : 'authorization',
      undefined,
      `x402 ${payment.requirements.scheme} payment answered ${status} without a settlement`,
    )
  }

  async function capture(payment: Payment, payload: PaymentPayload, settlement: SettleResponse): Promise<void> {
    const settled = await settledAmount({
      settlement,
      payload,
      requirements: payment.requirements,
      reserved: payment.hold.amount,
      publicClient: payment.asset.publicClient,
      receiptTimeoutMs,
    })
    await spend(payment, settled.amount, settled.source, settlement)
  }

  /**
   * Captures what a settlement moved, or releases the hold when the evidence says it moved
   * nothing. `reason` (the entry's) defaults to naming the settlement's transaction.
   */
  async function spend(
    payment: Payment,
    amount: bigint,
    amountSource: SettledAmountSource,
    settlement: SettleResponse | undefined,
    reason = `x402 ${payment.requirements.scheme} settlement ${settlement?.transaction} on ${settlement?.network}`,
  ): Promise<void> {
    if (amount === 0n) {
      await release(payment, `settlement ${settlement?.transaction} moved nothing to ${payment.requirements.payTo}`, settlement)
      return
    }
    const peer = peerOf(payment.resource)
    let entry: SpendEntry
    try {
      // The payment's own settlement: taken also while destroy() waits for requests under way.
      entry = await guard.internal.settleCapture(payment.hold.id, amount, { peer, tool, reason })
    } catch (error) {
      if (!(error instanceof HoldNotOpenError) || (error.status !== 'expired' && error.status !== 'released')) throw error
      // The hold ended (its TTL ran out, or the budget was closed) before the payment was known
      // settled; the money left all the same. It is recorded once (keyed by the hold) as a
      // fact: a spend without a hold, whatever the limit (past it, the budget shows it overspent).
      entry = await guard.internal.recordFact(taskId, {
        id: x402PaidAfterHoldEnded(payment.hold.id),
        amount,
        peer,
        tool,
        reason: `x402 ${payment.requirements.scheme} payment settled after its hold ${error.status === 'expired' ? 'expired' : 'was released'}`,
      })
    }
    emit({ type: 'captured', hold: payment.hold, entry, settlement, amountSource })
  }

  /** A broadcast settlement the facilitator could not confirm: ask the chain, if a client was given. */
  async function resolvePending(payment: Payment, payload: PaymentPayload, settlement: SettleResponse): Promise<void> {
    const parameters = { settlement, payload, requirements: payment.requirements, publicClient: payment.asset.publicClient, receiptTimeoutMs }
    const signed = exactSignedValue(payment.requirements, payload)
    if (signed === undefined) {
      // What the transaction that used the signed transfer moved, never more than the payer
      // authorized; a transaction the payee names that did not use it shows nothing.
      const moved = await settlementMovedByPayment(parameters)
      if (moved !== undefined) {
        const settled = atMostReserved(moved, 'receipt', payment.hold.amount)
        await spend(payment, settled.amount, settled.source, settlement)
      } else unresolved(payment, 'settlement pending and not confirmed', settlement)
      return
    }
    const moved = await settlementReceiptAmount(parameters)
    if (moved !== undefined && moved >= signed) {
      await spend(payment, signed, moved === signed ? 'receipt' : 'authorization', settlement)
      return
    }
    // Money may have moved, or may still move: an `exact` authorization whose transaction moved
    // less stays good until it expires. The hold stays reserved (until its TTL, if any).
    unresolved(payment, 'settlement pending and not confirmed', settlement)
  }

  async function release(payment: Payment, reason: string, settlement?: SettleResponse): Promise<void> {
    payment.state = 'closed'
    let hold: Hold
    try {
      hold = await guard.internal.settleRelease(payment.hold.id)
    } catch (error) {
      // A hold that expired in the meantime is released already.
      if (!(error instanceof HoldNotOpenError) || error.status !== 'expired') throw error
      hold = { ...payment.hold, status: 'expired' }
    }
    emit({ type: 'released', hold, reason, settlement })
  }

  /**
   * Ends a request's payments: settles what was answered without a settlement by the response
   * (`undefined`: none came, the request failed with `error`), sees to what was signed and sent
   * but never answered, and releases what was reserved but never signed.
   */
  async function finish(call: Call, reason: string, response: Response | undefined, error?: unknown): Promise<void> {
    for (const payment of call.payments) {
      if (payment.state === 'answered') await answered(payment, response)
      if (payment.state === 'reserved') {
        const reserved = reservedByRequirements.get(payment.requirements)
        const at = reserved?.indexOf(payment) ?? -1
        if (reserved && at >= 0) reserved.splice(at, 1)
      }
      if (payment.state === 'signed' && response === undefined) await unanswered(payment, reason, error)
      if (payment.state === 'signed') await releaseUnlessUsed(payment, reason)
      if (payment.state === 'reserved') await release(payment, reason)
    }
  }

  /**
   * A signed payment whose request failed without an answer. Any failure may have come after the
   * server settled (a server that drops every answer would otherwise have its payments
   * forgotten): the hold stays reserved (until its TTL, if any) unless the chain tells (see
   * {@link unresolved}). Even a connection that never opened may be a redirect's, after the
   * first server took the payment: only where the chain cannot tell is such a request taken as
   * never sent, and released.
   */
  async function unanswered(payment: Payment, reason: string, error: unknown): Promise<void> {
    if (neverSent(error) && !chainCanTell(payment)) return release(payment, reason)
    payment.state = 'closed'
    if (!(await settledOnChain(payment, reason))) unresolved(payment, `${reason}; the server may have settled the payment`)
  }

  /**
   * Settles the payment from what the chain says of its authorization: used, captured; expired
   * unused, released. False when the chain cannot tell yet (or at all).
   */
  async function settledOnChain(payment: Payment, reason: string): Promise<boolean> {
    const outcome = await authorizationOf(payment)
    if (outcome === 'used') await captureAuthorized(payment, reason)
    else if (outcome === 'expired') await release(payment, `authorization expired unused; ${reason}`)
    else return false
    return true
  }

  /** Whether the chain can say what became of the payment: a signed transfer it can be asked about, and a client to ask. */
  function chainCanTell(payment: Payment): boolean {
    const { payload, asset, requirements } = payment
    return payload !== undefined && chainQuestion({ payload, requirements, publicClient: asset.publicClient }) !== undefined
  }

  function authorizationOf(payment: Payment) {
    const { payload, requirements } = payment
    return payload ? authorizationOutcome({ payload, requirements, publicClient: payment.asset.publicClient }) : undefined
  }

  /**
   * A payment the server answered as not settled. Its word is checked where the chain can
   * tell (an EIP-3009 or Permit2 signed transfer, a `publicClient` for its asset): an unused one
   * stays valid until its `validBefore`, and whoever holds it (the server) may still settle it
   * after answering. So the hold is captured if the authorization is used, released once it
   * expired unused, and otherwise kept reserved and looked up again (see {@link unresolved}),
   * as is one whose look-up failed. Where the chain cannot tell, the server's word stands.
   */
  async function releaseUnlessUsed(payment: Payment, reason: string, settlement?: SettleResponse): Promise<void> {
    payment.state = 'closed'
    const outcome = await authorizationOf(payment)
    if (outcome === 'used') return captureAuthorized(payment, `the server answered: ${reason}`)
    if (outcome === 'expired') return release(payment, `authorization expired unused; ${reason}`, settlement)
    if (outcome === 'open' || (outcome === undefined && chainCanTell(payment)))
      return unresolved(payment, `${reason}; its authorization can still be used until it expires`, settlement)
    return release(payment, reason, settlement)
  }

  /** A signed transfer the chain shows used moved its signed value (never more than the hold). */
  async function captureAuthorized(payment: Payment, reason: string): Promise<void> {
    const signed = payment.payload && signedAuthorization(payment.payload.payload).value
    const settled = atMostReserved(signed ?? payment.hold.amount, 'authorization', payment.hold.amount)
    await spend(payment, settled.amount, settled.source, undefined, `x402 ${payment.requirements.scheme} authorization used on chain; ${reason}`)
  }

  /**
   * Nothing says whether the payment moved money: the hold stays reserved, and where the chain
   * can tell (an EIP-3009 or Permit2 signed transfer, a `publicClient` for its asset), it is asked again every
   * `authorizationPollMs` until the authorization is used (captured) or expired unused (released).
   */
  function unresolved(payment: Payment, reason: string, settlement?: SettleResponse): void {
    emit({ type: 'unresolved', hold: payment.hold, reason, settlement })
    if (!chainCanTell(payment)) return
    const poll = () => {
      const timer = setTimeout(async () => {
        try {
          // Captured some other way meanwhile: nothing to look up. A hold that ended otherwise (its
          // TTL, a release, the budget's close) is still looked after: the payee may yet use the
          // authorization, and the money would leave all the same.
          if ((await guard.hold(payment.hold.id)).status === 'captured') return
          if (!(await settledOnChain(payment, reason))) poll()
        } catch (error) {
          // Settled some other way between the look-up and the write, or the guard is gone.
          if (error instanceof HoldNotOpenError || error instanceof GuardDestroyedError) return
          // The ledger refused the write (a budget gone, a conflicting entry): asking again would
          // meet the same refusal.
          if (isDomainError(error)) {
            emit({ type: 'unresolved', hold: payment.hold, reason: `${reason}; settling it failed: ${messageOf(error)}` })
            return
          }
          poll()
        }
      }, authorizationPollMs)
      timer.unref()
    }
    poll()
  }

  return {
    taskId,

    register(client) {
      if (guardedClients.has(client))
        throw new InvalidArgumentError({
          argument: 'client',
          value: 'x402Client',
          reason: 'a client no other spendguard adapter guards (each payment would be reserved twice)',
        })
      guardedClients.add(client)
      const create = client.createPaymentPayload.bind(client)
      client.createPaymentPayload = (paymentRequired) => createGuarded(create, paymentRequired)
      client
        .onBeforePaymentCreation(beforePaymentCreation)
        .onAfterPaymentCreation(afterPaymentCreation)
        .onPaymentCreationFailure(onPaymentCreationFailure)
        .onPaymentResponse(onPaymentResponse)
      return client
    },

    wrapFetch(paidFetch) {
      if (typeof paidFetch !== 'function')
        throw new InvalidArgumentError({ argument: 'paidFetch', value: paidFetch, reason: 'a fetch function' })
      return async (input, init) => {
        // A request that carries a payment of its own would be signed for again and never sent
        // with it: refused before anything is reserved.
        if (carriesPayment(input, init))
          throw new InvalidArgumentError({
            argument: 'headers',
            value: 'PAYMENT-SIGNATURE',
            reason: 'a request without a payment header: the guarded client makes and signs the payment',
          })
        // destroy() waits for the request: what it paid is captured (or its hold released)
        // before the store closes. A payment it has not reserved yet by then is refused.
        return guard.internal.underWay(
          (async () => {
            const call: Call = { payments: [] }
            let response: Response
            try {
              response = await calls.run(call, () => paidFetch(input, init))
            } catch (error) {
              await finish(call, `request failed: ${messageOf(error)}`, undefined, error)
              throw call.refusal ?? error
            }
            await finish(call, 'no payment response', response)
            return response
          })(),
        )
      }
    },
  }
}

/**
 * The one-line setup: guards `client` with a new {@link createX402Guard} adapter and returns
 * `fetch` wrapped by `@x402/fetch` and by the adapter.
 *
 * @example
 * import { createGuard, wrapFetchWithSpendguard } from 'spendguard'
 * import { x402Client } from '@x402/fetch'
 * import { ExactEvmScheme } from '@x402/evm/exact/client'
 *
 * const client = new x402Client().register('eip155:8453', new ExactEvmScheme(account))
 * const pay = wrapFetchWithSpendguard(fetch, client, {
 *   guard,
 *   taskId: 'task-1',
 *   assets: [{ network: 'eip155:8453', asset: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913' }],
 * })
 * const response = await pay('https://api.example.com/search?q=anvil')
 */
export function wrapFetchWithSpendguard(fetch: FetchLike, client: x402Client, parameters: CreateX402GuardParameters): FetchLike {
  const spend = createX402Guard(parameters)
  spend.register(client)
  return spend.wrapFetch(wrapFetchWithPayment(fetch, client))
}

function validate(parameters: CreateX402GuardParameters): CreateX402GuardParameters {
  if (typeof parameters !== 'object' || parameters === null)
    throw new InvalidArgumentError({ argument: 'parameters', value: parameters, reason: '{ guard, taskId, assets }' })
  const { guard, taskId, assets } = parameters
  if (typeof guard?.reserve !== 'function')
    throw new InvalidArgumentError({ argument: 'guard', value: guard, reason: 'a guard from createGuard()' })
  assertId('taskId', taskId)
  optionalTtlMs(parameters.holdTtlMs)
  if (!Array.isArray(assets) || assets.length === 0)
    throw new InvalidArgumentError({ argument: 'assets', value: assets, reason: 'at least one { network, asset }' })
  for (const asset of assets) {
    if (typeof asset?.network !== 'string' || !caip2Pattern.test(asset.network))
      throw new InvalidArgumentError({ argument: 'assets[].network', value: asset?.network, reason: 'a CAIP-2 network id such as eip155:8453' })
    if (typeof asset.asset !== 'string' || asset.asset.length === 0)
      throw new InvalidArgumentError({ argument: 'assets[].asset', value: asset.asset, reason: 'a token address' })
    if (asset.publicClient !== undefined && !asset.network.startsWith('eip155:'))
      throw new InvalidArgumentError({ argument: 'assets[].publicClient', value: asset.network, reason: 'an EVM (eip155) network' })
  }
  optionalText('tool', parameters.tool)
  if (parameters.onPayment !== undefined && typeof parameters.onPayment !== 'function')
    throw new InvalidArgumentError({ argument: 'onPayment', value: parameters.onPayment, reason: 'a function' })
  // Milliseconds a timer can wait.
  optionalCount('receiptTimeoutMs', parameters.receiptTimeoutMs, 2 ** 31 - 1)
  optionalCount('authorizationPollMs', parameters.authorizationPollMs, 2 ** 31 - 1)
  return parameters
}

/** EVM addresses compare case-insensitively; other networks' token ids (base58) exactly. */
function sameAsset(a: string, b: string): boolean {
  return isAddress(a, loose) && isAddress(b, loose) ? isAddressEqual(a, b) : a === b
}

function peerOf(resource: string | undefined): string | undefined {
  if (resource === undefined) return undefined
  try {
    return new URL(resource).host || undefined
  } catch {
    return undefined
  }
}

function failureReason(context: PaymentResponseContext): string {
  const settlement = context.settleResponse
  if (settlement) return `settlement failed: ${settlement.errorReason ?? 'unknown'}${settlement.errorMessage ? ` (${settlement.errorMessage})` : ''}`
  if (context.paymentRequired) return `payment refused: ${context.paymentRequired.error ?? 'the server asked for payment again'}`
  if (context.error) return `payment response error: ${messageOf(context.error)}`
  return 'no settlement in the response'
}

/** Whether a request's headers already carry an x402 payment (as `@x402/fetch` tells them). */
function carriesPayment(input: string | URL | Request, init: RequestInit | undefined): boolean {
  // Headers given to the call replace the request's own.
  const headers = init?.headers !== undefined ? new Headers(init.headers) : input instanceof Request ? input.headers : undefined
  return headers !== undefined && (headers.has('PAYMENT-SIGNATURE') || headers.has('X-PAYMENT'))
}

/** Codes of a connection that never opened: a request failing with one never left. */
const connectFailures = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])

/** Whether `error` (or what caused it) says the request's connection never opened. */
function neverSent(error: unknown): boolean {
  let e = error
  for (let depth = 0; depth < 8 && typeof e === 'object' && e !== null; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && connectFailures.has(code)) return true
    // Every address tried, each refused.
    const errors = (e as { errors?: unknown }).errors
    if (Array.isArray(errors) && errors.length > 0 && errors.every(neverSent)) return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
