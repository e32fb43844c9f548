import type { PaymentPayload, PaymentRequirements, SettleResponse } from '@x402/core/types'
import { type Address, type Hex, type PublicClient, isAddress, isAddressEqual, isHash, parseAbi, parseEventLogs } from 'viem'
import { maxAmount } from '../engine/amount.ts'

/**
 * How the adapter knows what a settlement moved:
 * - `response`: the settlement response's own `amount` (schemes that settle less than the
 *   maximum, such as `upto`, report it), taken as it is only where no client can read the
 *   transaction;
 * - `receipt`: the ERC-20 `Transfer` logs from the payer to `payTo` in the settlement
 *   transaction, read through the viem client configured for the asset;
 * - `authorization`: the value the payer signed, for the `exact` scheme only, where the
 *   facilitator settles that value or nothing (it checks the transfer's value in the receipt
 *   before it reports success);
 * - `reserved`: none of the above is known, or what is claimed exceeds the hold: the hold's
 *   amount, the most the payer authorized, so that the ledger never counts less than what may
 *   have left, nor more than could have.
 */
export type SettledAmountSource = 'response' | 'receipt' | 'authorization' | 'reserved'

export type SettledAmount = { amount: bigint; source: SettledAmountSource }

/** Accepts addresses in any case (a checksum is not required). */
export const loose = { strict: false } as const

/** How long to wait for a settlement transaction's receipt by default. */
const receiptTimeoutMsDefault = 30_000

const transferEvent = [
  {
    type: 'event',
    name: 'Transfer',
    inputs: [
      { name: 'from', type: 'address', indexed: true },
      { name: 'to', type: 'address', indexed: true },
      { name: 'value', type: 'uint256', indexed: false },
    ],
  },
] as const

/**
 * An amount as x402 carries it (a decimal integer string in the asset's smallest unit) as a
 * bigint; `undefined` when `value` is not one or lies outside 0 … 2^256−1.
 *
 * @example
 * import { parseAtomicAmount } from 'spendguard'
 *
 * parseAtomicAmount('10000') // 10000n
 * parseAtomicAmount('$0.01') // undefined
 */
export function parseAtomicAmount(value: unknown): bigint | undefined {
  if (typeof value !== 'string' || !/^\d{1,78}$/.test(value)) return undefined
  const amount = BigInt(value)
  return amount <= maxAmount ? amount : undefined
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined
}

/**
 * The payer and the amount an EVM `exact` payload authorizes: EIP-3009's
 * `authorization.{from, value}` or Permit2's `permit2Authorization.{from, permitted.amount}`.
 *
 * @example
 * import { signedAuthorization } from 'spendguard'
 *
 * signedAuthorization({ authorization: { from: '0xA0…', value: '10000' } })
 * // { from: '0xA0…', value: 10000n }
 */
export function signedAuthorization(payload: Record<string, unknown>): { from: string | undefined; value: bigint | undefined } {
  const eip3009 = record(payload.authorization)
  if (eip3009) return { from: stringOrUndefined(eip3009.from), value: parseAtomicAmount(eip3009.value) }
  const permit2 = record(payload.permit2Authorization)
  if (permit2) return { from: stringOrUndefined(permit2.from), value: parseAtomicAmount(record(permit2.permitted)?.amount) }
  return { from: undefined, value: undefined }
}

/**
 * The value an `exact` payment signed, which it settles exactly or not at all; undefined for
 * other schemes (which may settle less) or a payload of another shape.
 */
export function exactSignedValue(requirements: PaymentRequirements, payload: PaymentPayload): bigint | undefined {
  return requirements.scheme === 'exact' ? signedAuthorization(payload.payload).value : undefined
}

/** `amount` from `source`, unless it is more than the hold: the payer authorized no more than that. */
export function atMostReserved(amount: bigint, source: SettledAmountSource, reserved: bigint): SettledAmount {
  return amount <= reserved ? { amount, source } : { amount: reserved, source: 'reserved' }
}

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}

export type ReceiptTransferParameters = {
  transaction: Hex
  asset: Address
  from: Address
  to: Address
  timeoutMs?: number | undefined
}

/**
 * What a transaction moved of `asset` from `from` to `to`: the sum of its ERC-20 `Transfer`
 * logs; 0 when it reverted. Waits for the receipt up to `timeoutMs` (0: reads it once, without
 * waiting).
 *
 * @example
 * import { receiptTransferAmount } from 'spendguard'
 *
 * const moved = await receiptTransferAmount(publicClient, { transaction, asset: usdc, from: payer, to: payTo })
 */
export async function receiptTransferAmount(client: PublicClient, parameters: ReceiptTransferParameters): Promise<bigint> {
  return (await receiptTransfer(client, parameters)).moved
}

/** What a transaction moved (see {@link receiptTransferAmount}), and the block it landed in. */
async function receiptTransfer(client: PublicClient, parameters: ReceiptTransferParameters): Promise<{ moved: bigint; blockNumber: bigint }> {
  const receipt =
    parameters.timeoutMs === 0
      ? await client.getTransactionReceipt({ hash: parameters.transaction })
      : await client.waitForTransactionReceipt({ hash: parameters.transaction, timeout: parameters.timeoutMs ?? receiptTimeoutMsDefault })
  if (receipt.status !== 'success') return { moved: 0n, blockNumber: receipt.blockNumber }
  const logs = parseEventLogs({
    abi: transferEvent,
    eventName: 'Transfer',
    logs: receipt.logs.filter((log) => isAddressEqual(log.address, parameters.asset)),
  })
  let moved = 0n
  for (const log of logs) {
    if (isAddressEqual(log.args.from, parameters.from) && isAddressEqual(log.args.to, parameters.to)) moved += log.args.value
  }
  return { moved, blockNumber: receipt.blockNumber }
}

const authorizationStateAbi = parseAbi(['function authorizationState(address authorizer, bytes32 nonce) view returns (bool)'])

/** How far behind its newest block a chain without finalized blocks is taken to be final. */
const unfinalizedMarginSeconds = 3_600n

/** Permit2's canonical deployment, at one address on every chain: x402's Permit2 payments name it. */
export const permit2Address = '0x000000000022D473030F116dDEE9F6B43aC78BA3'

const nonceBitmapAbi = parseAbi(['function nonceBitmap(address owner, uint256 wordPosition) view returns (uint256)'])

/**
 * A signed transfer the chain can be asked about, with `usableUntil`, the last block timestamp
 * that can still use it (undefined when the payload does not say):
 * - `eip3009`: `authorization.{from, nonce, validBefore}`, usable while `block.timestamp <
 *   validBefore`, used once the token's `authorizationState(from, nonce)` is set;
 * - `permit2`: `permit2Authorization.{from, nonce, deadline}` (a Permit2 signature transfer),
 *   usable while `block.timestamp <= deadline`, used once Permit2's bit for the nonce is set.
 */
export type TransferAuthorization =
  | { kind: 'eip3009'; from: Address; nonce: Hex; usableUntil: bigint | undefined }
  | { kind: 'permit2'; from: Address; nonce: bigint; usableUntil: bigint | undefined }

/** The signed transfer an EVM payload carries, or undefined for a payload of another shape or a malformed one. */
export function transferAuthorization(payload: PaymentPayload): TransferAuthorization | undefined {
  const eip3009 = record(payload.payload.authorization)
  if (eip3009) {
    const { from, nonce } = eip3009
    if (typeof from !== 'string' || !isAddress(from, loose) || typeof nonce !== 'string' || !isHash(nonce)) return undefined
    const validBefore = parseAtomicAmount(eip3009.validBefore)
    return { kind: 'eip3009', from, nonce, usableUntil: validBefore === undefined ? undefined : validBefore - 1n }
  }
  const permit2 = record(payload.payload.permit2Authorization)
  if (permit2) {
    const { from } = permit2
    const nonce = parseAtomicAmount(permit2.nonce)
    if (typeof from !== 'string' || !isAddress(from, loose) || nonce === undefined) return undefined
    return { kind: 'permit2', from, nonce, usableUntil: parseAtomicAmount(permit2.deadline) }
  }
  return undefined
}

/**
 * What asking the chain about a payment takes: the signed transfer its payload carries, a
 * client, and the token as an EVM address. Undefined when any of them is missing.
 */
export function chainQuestion(parameters: {
  payload: PaymentPayload
  requirements: PaymentRequirements
  publicClient?: PublicClient | undefined
}): { authorization: TransferAuthorization; client: PublicClient; token: Address } | undefined {
  const { payload, requirements, publicClient } = parameters
  const authorization = transferAuthorization(payload)
  const token = requirements.asset
  if (!publicClient || !authorization || !isAddress(token, loose)) return undefined
  return { authorization, client: publicClient, token }
}

/** What the chain says of a signed transfer; see {@link authorizationOutcome}. */
export type AuthorizationOutcome = 'used' | 'expired' | 'open'

/**
 * What the chain says of the signed transfer an EVM payload carries (an EIP-3009
 * authorization, or a Permit2 signature transfer at {@link permit2Address}):
 * - `used`: its nonce is spent in the newest block (the token's `authorizationState(from,
 *   nonce)`, or Permit2's `nonceBitmap` bit), so it moved its signed value to its payee;
 * - `expired`: unused in the newest finalized block, whose timestamp is past its last valid
 *   moment (EIP-3009: `block.timestamp < validBefore`; Permit2: `block.timestamp <= deadline`):
 *   no block after it can use it (on a chain that names no finalized block: unused in the
 *   newest block, an hour past that moment);
 * - `open`: unused, and it may still be.
 * `undefined` when that cannot be read: no client, a payload of another shape, or a failed
 * call (a token without EIP-3009, no Permit2 on the chain, or the RPC failed).
 *
 * @example
 * import { authorizationOutcome } from 'spendguard'
 *
 * const outcome = await authorizationOutcome({ payload, requirements, publicClient }) // 'used' | 'expired' | 'open' | undefined
 */
export async function authorizationOutcome(parameters: {
  payload: PaymentPayload
  requirements: PaymentRequirements
  publicClient?: PublicClient | undefined
}): Promise<AuthorizationOutcome | undefined> {
  const question = chainQuestion(parameters)
  if (!question) return undefined
  const { authorization, client, token } = question
  const { usableUntil } = authorization
  try {
    // The finalized block first: the newest block read after it descends from it, so a use in
    // any block up to it shows there. A chain that names no finalized block counts its newest
    // block an hour later than it is: no reorg goes that deep.
    const finalized =
      usableUntil === undefined
        ? undefined
        : await client.getBlock({ blockTag: 'finalized' }).catch(async () => {
            const latest = await client.getBlock({ blockTag: 'latest' })
            return { timestamp: latest.timestamp - unfinalizedMarginSeconds }
          })
    if (await nonceSpent(client, token, authorization)) return 'used'
    return finalized !== undefined && usableUntil !== undefined && finalized.timestamp > usableUntil ? 'expired' : 'open'
  } catch {
    return undefined
  }
}

/** Whether the signed transfer's nonce is spent, in the newest block or after `blockNumber`. */
async function nonceSpent(client: PublicClient, token: Address, authorization: TransferAuthorization, blockNumber?: bigint): Promise<boolean> {
  const { from } = authorization
  if (authorization.kind === 'eip3009')
    return client.readContract({ address: token, abi: authorizationStateAbi, functionName: 'authorizationState', args: [from, authorization.nonce], blockNumber })
  // Permit2 keeps a bitmap of spent nonces per owner: 256 nonces a word.
  const { nonce } = authorization
  const word = await client.readContract({ address: permit2Address, abi: nonceBitmapAbi, functionName: 'nonceBitmap', args: [from, nonce >> 8n], blockNumber })
  return ((word >> (nonce & 255n)) & 1n) === 1n
}

export type SettledAmountParameters = {
  settlement: SettleResponse
  payload: PaymentPayload
  requirements: PaymentRequirements
  /** The hold's amount: what was reserved for the payment. */
  reserved: bigint
  /** A client of the settlement's chain, to read the transaction's Transfer logs. */
  publicClient?: PublicClient | undefined
  receiptTimeoutMs?: number | undefined
}

/**
 * What the settlement's transaction moved of `requirements.asset` from the payer (the
 * settlement's `payer`, else the payload's signer) to `requirements.payTo`, read from its receipt
 * (see {@link receiptTransferAmount}). `undefined` when it cannot be read: no client, no
 * transaction hash or payer, a non-EVM asset or payee, or no receipt in time (or the RPC failed).
 */
export async function settlementReceiptAmount(parameters: Omit<SettledAmountParameters, 'reserved'>): Promise<bigint | undefined> {
  return (await settlementReceipt(parameters))?.moved
}

/** {@link settlementReceiptAmount}, with the block the transaction landed in. */
async function settlementReceipt(parameters: Omit<SettledAmountParameters, 'reserved'>): Promise<{ moved: bigint; blockNumber: bigint } | undefined> {
  const { settlement, requirements, publicClient } = parameters
  // The signer pays: the payee's word for who paid is only taken when the payload names no one.
  const payer = signedAuthorization(parameters.payload.payload).from ?? settlement.payer
  const transaction = settlement.transaction
  if (
    !publicClient ||
    !isHash(transaction) ||
    payer === undefined ||
    !isAddress(payer, loose) ||
    !isAddress(requirements.asset, loose) ||
    !isAddress(requirements.payTo, loose)
  )
    return undefined
  try {
    return await receiptTransfer(publicClient, {
      transaction,
      asset: requirements.asset,
      from: payer,
      to: requirements.payTo,
      timeoutMs: parameters.receiptTimeoutMs,
    })
  } catch {
    return undefined
  }
}

/**
 * What the settlement transaction the payee names moved, only if it is the transaction that
 * used this payment's signed transfer: its nonce unspent after the block before and spent
 * after the block the transaction landed in. `undefined` otherwise (another transaction, no
 * receipt in time, a payload the chain cannot be asked about): a payee that names a smaller
 * transfer of its own cannot free budget its signed transfer may still take.
 */
export async function settlementMovedByPayment(parameters: Omit<SettledAmountParameters, 'reserved'>): Promise<bigint | undefined> {
  const question = chainQuestion(parameters)
  if (!question) return undefined
  const receipt = await settlementReceipt(parameters)
  if (!receipt || receipt.blockNumber === 0n) return undefined
  try {
    const usedAfter = (blockNumber: bigint) => nonceSpent(question.client, question.token, question.authorization, blockNumber)
    const [before, after] = await Promise.all([usedAfter(receipt.blockNumber - 1n), usedAfter(receipt.blockNumber)])
    return !before && after ? receipt.moved : undefined
  } catch {
    return undefined
  }
}

/**
 * The amount a successful settlement moved, and how it is known (see {@link SettledAmountSource}).
 * The payer authorized at most the hold's amount, and for `exact` exactly the signed value: a
 * claim or receipt above that is not believed (the payee cannot take more than was signed, and
 * a larger figure would charge the budget for money that never left). For `exact`, a smaller
 * one is not believed either: the signed authorization stays good until it expires, and a payee
 * could otherwise free budget it has been paid. An amount of 0 means the evidence says nothing
 * moved (a reverted transaction, or no matching transfer in it); never for `exact`. For other
 * schemes, with a `publicClient` and a transaction, the receipt decides rather than the payee's
 * reported amount, if that transaction is the one that used the payment's signed transfer
 * (see {@link settlementMovedByPayment}); otherwise the hold's amount counts.
 *
 * @example
 * import { settledAmount } from 'spendguard'
 *
 * const { amount, source } = await settledAmount({ settlement, payload, requirements, reserved: 10_000n })
 */
export async function settledAmount(parameters: SettledAmountParameters): Promise<SettledAmount> {
  const { settlement, payload, requirements, reserved } = parameters
  const reported = parseAtomicAmount(settlement.amount)
  const signed = exactSignedValue(requirements, payload)
  if (signed !== undefined) {
    // `exact` moves what was signed or nothing, and this settlement succeeded.
    if (reported === signed) return { amount: signed, source: 'response' }
    // The receipt only names the source here, so it is read once, never waited for: a payee
    // naming a transaction that never lands cannot hold the answer back.
    if (reported === undefined && (await settlementReceiptAmount({ ...parameters, receiptTimeoutMs: 0 })) === signed)
      return { amount: signed, source: 'receipt' }
    return { amount: signed, source: 'authorization' }
  }
  if (parameters.publicClient !== undefined && settlement.transaction) {
    // Where the chain can be asked, the payee's own figure is not taken: what the transaction
    // that used the payment's signed transfer moved counts, and when that cannot be shown,
    // the most that may have left.
    const moved = await settlementMovedByPayment(parameters)
    return moved !== undefined ? atMostReserved(moved, 'receipt', reserved) : { amount: reserved, source: 'reserved' }
  }
  if (reported !== undefined) return atMostReserved(reported, 'response', reserved)
  return { amount: reserved, source: 'reserved' }
}
