/**
 * The error hierarchy of spendguard. Every error has a stable `name` and `code`
 * and carries the numbers that explain it.
 *
 * @example
 * import { BudgetExceededError } from 'spendguard'
 * try {
 *   await guard.reserve('task-1', 5_000_000n)
 * } catch (error) {
 *   if (error instanceof BudgetExceededError) console.log(error.remaining)
 * }
 */
export type BaseErrorParameters = {
  details?: string | undefined
  metaMessages?: string[] | undefined
  cause?: unknown
}

/** Root of every error spendguard throws on purpose. */
export class SpendguardError extends Error {
  override name = 'SpendguardError'
  readonly code: string = 'SPENDGUARD_ERROR'
  /** The message without details or meta messages. */
  readonly shortMessage: string
  readonly details: string | undefined
  readonly metaMessages: string[] | undefined

  constructor(shortMessage: string, parameters: BaseErrorParameters = {}) {
    const lines = [shortMessage]
    if (parameters.metaMessages?.length) lines.push('', ...parameters.metaMessages)
    if (parameters.details) lines.push('', `Details: ${parameters.details}`)
    super(lines.join('\n'), parameters.cause === undefined ? undefined : { cause: parameters.cause })
    this.shortMessage = shortMessage
    this.details = parameters.details
    this.metaMessages = parameters.metaMessages
  }
}

export type BudgetNotFoundErrorType = BudgetNotFoundError
export class BudgetNotFoundError extends SpendguardError {
  override name = 'BudgetNotFoundError'
  override readonly code = 'BUDGET_NOT_FOUND'
  readonly taskId: string
  constructor({ taskId }: { taskId: string }) {
    super(`Budget for task "${taskId}" not found.`)
    this.taskId = taskId
  }
}

export type BudgetExistsErrorType = BudgetExistsError
export class BudgetExistsError extends SpendguardError {
  override name = 'BudgetExistsError'
  override readonly code = 'BUDGET_EXISTS'
  readonly taskId: string
  readonly differences: string[]
  constructor({ taskId, differences }: { taskId: string; differences: string[] }) {
    super(`Budget for task "${taskId}" already exists with different parameters.`, {
      metaMessages: differences,
    })
    this.taskId = taskId
    this.differences = differences
  }
}

export type BudgetClosedErrorType = BudgetClosedError
export class BudgetClosedError extends SpendguardError {
  override name = 'BudgetClosedError'
  override readonly code = 'BUDGET_CLOSED'
  readonly taskId: string
  readonly closedAt: number | undefined
  constructor({ taskId, closedAt }: { taskId: string; closedAt?: number | undefined }) {
    super(`Budget for task "${taskId}" is closed.`)
    this.taskId = taskId
    this.closedAt = closedAt
  }
}

export type BudgetExceededErrorType = BudgetExceededError
export class BudgetExceededError extends SpendguardError {
  override name = 'BudgetExceededError'
  override readonly code = 'BUDGET_EXCEEDED'
  readonly taskId: string
  readonly requested: bigint
  readonly remaining: bigint
  constructor({ taskId, requested, remaining }: { taskId: string; requested: bigint; remaining: bigint }) {
    super(`Budget exceeded: task "${taskId}" requested ${requested}, ${remaining} remaining.`)
    this.taskId = taskId
    this.requested = requested
    this.remaining = remaining
  }
}

export type HoldNotFoundErrorType = HoldNotFoundError
export class HoldNotFoundError extends SpendguardError {
  override name = 'HoldNotFoundError'
  override readonly code = 'HOLD_NOT_FOUND'
  readonly holdId: string
  constructor({ holdId }: { holdId: string }) {
    super(`Hold "${holdId}" not found.`)
    this.holdId = holdId
  }
}

export type HoldNotOpenErrorType = HoldNotOpenError
export class HoldNotOpenError extends SpendguardError {
  override name = 'HoldNotOpenError'
  override readonly code = 'HOLD_NOT_OPEN'
  readonly holdId: string
  readonly status: string
  /** `reason`: why, where the hold alone does not tell (a payment's key whose payment ended unpaid). */
  constructor({ holdId, status, reason }: { holdId: string; status: string; reason?: string | undefined }) {
    super(`Hold "${holdId}" is not open (status: ${status})${reason ? `: ${reason}` : ''}.`)
    this.holdId = holdId
    this.status = status
  }
}

export type InvalidAmountErrorType = InvalidAmountError
export class InvalidAmountError extends SpendguardError {
  override name = 'InvalidAmountError'
  override readonly code = 'INVALID_AMOUNT'
  readonly value: unknown
  constructor({ value, reason }: { value: unknown; reason: string }) {
    super(`Invalid amount ${describe(value)}: ${reason}.`)
    this.value = value
  }
}

export type InvalidArgumentErrorType = InvalidArgumentError
export class InvalidArgumentError extends SpendguardError {
  override name = 'InvalidArgumentError'
  override readonly code = 'INVALID_ARGUMENT'
  readonly argument: string
  readonly value: unknown
  constructor({ argument, value, reason }: { argument: string; value: unknown; reason: string }) {
    super(`Invalid ${argument} ${describe(value)}: ${reason}.`)
    this.argument = argument
    this.value = value
  }
}

export type IdempotencyConflictErrorType = IdempotencyConflictError
export class IdempotencyConflictError extends SpendguardError {
  override name = 'IdempotencyConflictError'
  override readonly code = 'IDEMPOTENCY_CONFLICT'
  readonly key: string
  readonly differences: string[]
  constructor({ key, differences }: { key: string; differences: string[] }) {
    super(`Idempotency key "${key}" was already used with different parameters.`, {
      metaMessages: differences,
    })
    this.key = key
    this.differences = differences
  }
}

export type RiskDeniedErrorType = RiskDeniedError
export class RiskDeniedError extends SpendguardError {
  override name = 'RiskDeniedError'
  override readonly code = 'RISK_DENIED'
  readonly taskId: string
  readonly requested: bigint
  readonly reason: string
  constructor({ taskId, requested, reason }: { taskId: string; requested: bigint; reason: string }) {
    super(`Risk assessor denied ${requested} for task "${taskId}": ${reason}.`)
    this.taskId = taskId
    this.requested = requested
    this.reason = reason
  }
}

export type PaymentUnsettledErrorType = PaymentUnsettledError
/**
 * `pay` could not settle a payment, so its hold stays open and keeps the money reserved:
 * the payment with this key is running elsewhere or its outcome was lost (nothing was paid
 * by the call that threw this), or the payment function ran and resolved something other
 * than a settled amount with valid entry details, or its capture failed (`cause`). Capture
 * what was paid or release the hold.
 */
export class PaymentUnsettledError extends SpendguardError {
  override name = 'PaymentUnsettledError'
  override readonly code = 'PAYMENT_UNSETTLED'
  readonly taskId: string
  readonly holdId: string
  readonly key: string | undefined
  readonly reason: string
  constructor({
    taskId,
    holdId,
    key,
    reason,
    cause,
    holdEnded = false,
  }: { taskId: string; holdId: string; key?: string | undefined; reason: string; cause?: unknown; holdEnded?: boolean }) {
    super(
      `Payment on task "${taskId}" is unsettled: ${reason}; ${holdEnded ? `hold "${holdId}" had ended, nothing is reserved for it` : `hold "${holdId}" stays open`}.`,
      {
        metaMessages: [holdEnded ? 'Record what was paid.' : 'Capture what was paid or release the hold.'],
        cause,
      },
    )
    this.taskId = taskId
    this.holdId = holdId
    this.key = key
    this.reason = reason
  }
}

export type CommitUnknownErrorType = CommitUnknownError
/**
 * The connection to PostgreSQL was lost while a transaction committed, and the server could
 * not be asked in time whether it did. The operations of that transaction may have taken
 * effect: retry them with their idempotency keys or ids, which answer from what landed.
 */
export class CommitUnknownError extends SpendguardError {
  override name = 'CommitUnknownError'
  override readonly code = 'COMMIT_UNKNOWN'
  constructor({ cause }: { cause?: unknown } = {}) {
    super('The connection was lost while committing; whether the operation took effect is unknown.', {
      cause,
      metaMessages: ['Retry it with its idempotency key or id, which answers from what landed.'],
    })
  }
}

/** A broken internal invariant: a bug or a corrupted store, never an operating condition. */
export class InvariantViolationError extends SpendguardError {
  override name = 'InvariantViolationError'
  override readonly code = 'INVARIANT_VIOLATION'
  constructor(message: string) {
    super(`Invariant violated: ${message}.`)
  }
}

/** The guard was destroyed; no further operations are accepted. */
export class GuardDestroyedError extends SpendguardError {
  override name = 'GuardDestroyedError'
  override readonly code = 'GUARD_DESTROYED'
  constructor() {
    super('The guard was destroyed.')
  }
}

/** Errors that describe the caller's request; they never leave partial writes behind. */
export function isDomainError(error: unknown): error is SpendguardError {
  return (
    error instanceof SpendguardError &&
    !(error instanceof InvariantViolationError) &&
    !(error instanceof GuardDestroyedError)
  )
}

export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantViolationError(message)
}

function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'string') return JSON.stringify(value)
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (typeof value === 'number') return String(value)
  if (Array.isArray(value)) return `(array of ${value.length})`
  return `(${typeof value})`
}
