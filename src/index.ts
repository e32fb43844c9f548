/**
 * spendguard: a spending guard for AI agents that pay. Every task gets a budget; every
 * payment is checked, reserved and settled against it; on-chain spending is followed
 * through viem and reconciled into the same ledger.
 */
export { createGuard, toBudget, toEntry, toHold, toJournal } from './engine/guard.ts'
export type {
  AllocateParameters,
  CreateGuardParameters,
  EntryDetails,
  Guard,
  PayContext,
  PayResult,
  RecordParameters,
  ReserveOptions,
} from './engine/guard.ts'
export { assertAmount, formatUnits, maxAmount, parseUnits } from './engine/amount.ts'
export * from './engine/errors.ts'
export type * from './engine/types.ts'
export type { VerifyResult } from './engine/verify.ts'
export { defaultDbUrl } from './engine/store/index.ts'
export { createTracker } from './onchain/tracker.ts'
export { bindAccount, listBindings, unbindAccount } from './onchain/bindings.ts'
export type { ChainScope } from './onchain/bindings.ts'
export { startAnvil } from './onchain/anvil.ts'
export type { AnvilInstance, StartAnvilOptions } from './onchain/anvil.ts'
export { deployLocalStack } from './onchain/local.ts'
export type { LocalStack, Payment } from './onchain/local.ts'
export type { BindParameters, CreateTrackerParameters, SyncProgress, SyncResult, Tracker, TrackerStatus } from './onchain/tracker.ts'
export { ChainMismatchError, NodeBehindWindowError, ReorgTooDeepError, RpcFailedError, RpcInconsistentError } from './onchain/errors.ts'
export { decodeSpendLog, spendRecordedTopic } from './onchain/decode.ts'
export type { RpcLog, SpendLog } from './onchain/decode.ts'
export {
  minimalAccountAbi,
  minimalAccountBytecode,
  mockErc20Abi,
  mockErc20Bytecode,
  spendingHookAbi,
  spendingHookBytecode,
} from './onchain/abi.generated.ts'
export { testUsdcAbi, testUsdcBytecode } from './onchain/abi.generated.ts'
export {
  X402AssetNotAllowedError,
  X402ValidityTooLongError,
  X402VersionNotSupportedError,
  authorizationOutcome,
  createX402Guard,
  parseAtomicAmount,
  receiptTransferAmount,
  settledAmount,
  signedAuthorization,
  wrapFetchWithSpendguard,
} from './x402/index.ts'
export type {
  AuthorizationOutcome,
  CreateX402GuardParameters,
  FetchLike,
  ReceiptTransferParameters,
  SettledAmount,
  SettledAmountParameters,
  SettledAmountSource,
  X402Asset,
  X402Guard,
  X402PaymentEvent,
} from './x402/index.ts'
