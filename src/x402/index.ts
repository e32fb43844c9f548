/**
 * The x402 adapter: plugs a guard into the x402 TypeScript client (`@x402/core`, `@x402/fetch`,
 * `@x402/evm`). Reserve before a payment is signed, capture the settled amount from the payment
 * response, release when the settlement fails.
 */
export { createX402Guard, wrapFetchWithSpendguard } from './guard.ts'
export type { CreateX402GuardParameters, FetchLike, X402Asset, X402Guard, X402PaymentEvent } from './guard.ts'
export { X402AssetNotAllowedError, X402ValidityTooLongError, X402VersionNotSupportedError } from './errors.ts'
export { authorizationOutcome, parseAtomicAmount, receiptTransferAmount, settledAmount, signedAuthorization } from './settled.ts'
export type { AuthorizationOutcome, ReceiptTransferParameters, SettledAmount, SettledAmountParameters, SettledAmountSource } from './settled.ts'
