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
