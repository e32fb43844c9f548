import { formatUnits, toFraction } from '../engine/amount.ts'
import { SpendguardError } from '../engine/errors.ts'
import type { TaskBudget } from '../engine/types.ts'

/** Human output of the command line: amounts in whole units, tables, bars. */

export function amount(value: bigint, decimals: number, asset?: string): string {
  const text = formatUnits(value, decimals, { minFractionDigits: Math.min(2, decimals) })
  return asset ? `${text} ${asset}` : text
}

export function table(rows: Record<string, string>[], columns?: string[]): string {
  if (rows.length === 0) return '(none)'
  const cols = columns ?? Object.keys(rows[0] as Record<string, string>)
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? '').length)))
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i] as number)).join('  ').trimEnd()
  return [line(cols), line(widths.map((w) => '─'.repeat(w))), ...rows.map((r) => line(cols.map((c) => r[c] ?? '')))].join(
    '\n',
  )
}

const barWidth = 40

/** A bar of `width` cells: spent ▇, reserved ▒, remaining ·, over the total ! */
export function bar(b: Pick<TaskBudget, 'total' | 'spent' | 'reserved' | 'overspent'>, width = barWidth): string {
  const scale = b.total + b.overspent
  if (scale === 0n) return `[${'·'.repeat(width)}]`
  const cells = (v: bigint) => Number((v * BigInt(width)) / scale)
  const spent = Math.min(width, cells(b.spent))
  const reserved = Math.min(width - spent, cells(b.reserved))
  const rest = width - spent - reserved
  const over = b.overspent > 0n ? '!' : ''
  return `[${'▇'.repeat(spent)}${'▒'.repeat(reserved)}${'·'.repeat(rest)}]${over}`
}

export function percent(part: bigint, whole: bigint): string {
  if (whole === 0n) return part === 0n ? '0%' : '∞'
  return `${(Number((part * 10_000n) / whole) / 100).toFixed(1)}%`
}

/** A threshold fraction as a percentage, exactly as written: 0.07 → `7`, 0.955 → `95.5` (never `7.000000000000001`). */
export function thresholdPercent(fraction: number): string {
  // toFraction reads the number's shortest decimal form; its denominator is a power of ten.
  const { numerator, denominator } = toFraction(fraction)
  return formatUnits(numerator * 100n, denominator.toString().length - 1)
}

export function budgetLine(b: TaskBudget): Record<string, string> {
  return {
    task: b.taskId,
    status: b.status,
    total: amount(b.total, b.decimals, b.asset),
    spent: amount(b.spent, b.decimals),
    reserved: amount(b.reserved, b.decimals),
    remaining: amount(b.remaining, b.decimals),
    used: percent(b.spent, b.total),
    bar: bar(b, 20),
  }
}

/** `JSON.stringify` replacer writing bigints as decimal strings. */
export function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value
}

/** JSON with bigints as decimal strings. */
export function json(value: unknown): string {
  return JSON.stringify(value, bigintReplacer, 2)
}

/** JSON on one line, bigints as decimal strings: one document of a stream (NDJSON). */
export function jsonLine(value: unknown): string {
  return JSON.stringify(value, bigintReplacer)
}

/** Exit codes of `spendguard`. */
export const exitCodes = {
  ok: 0,
  internal: 1,
  badInput: 2,
  denied: 3,
  notFound: 4,
  verifyFailed: 5,
} as const

export function exitCodeOf(error: unknown): number {
  const name = (error as Error)?.name
  switch (name) {
    case 'BudgetExceededError':
    case 'RiskDeniedError':
    case 'BudgetClosedError':
    case 'HoldNotOpenError':
      return exitCodes.denied
    case 'BudgetNotFoundError':
    case 'HoldNotFoundError':
      return exitCodes.notFound
    case 'InvalidAmountError':
    case 'InvalidArgumentError':
    case 'IdempotencyConflictError':
    case 'BudgetExistsError':
      return exitCodes.badInput
    default:
      return exitCodes.internal
  }
}

/** One line naming the problem and its numbers, in the asset's units when known. */
export function errorLine(error: unknown, units?: { decimals: number; asset: string }): string {
  const e = error as Record<string, unknown> & Error
  const fmt = (v: unknown) => (typeof v === 'bigint' && units ? amount(v, units.decimals, units.asset) : String(v))
  switch (e?.name) {
    case 'BudgetExceededError':
      return `budget exceeded: task ${e.taskId} requested ${fmt(e.requested)}, ${fmt(e.remaining)} remaining`
    case 'RiskDeniedError':
      return `denied by the risk assessor: task ${e.taskId} requested ${fmt(e.requested)}: ${e.reason}`
    case 'BudgetClosedError':
      return `budget closed: task ${e.taskId}`
    case 'BudgetNotFoundError':
      return `no budget for task ${e.taskId}`
    case 'HoldNotFoundError':
      return `no hold ${e.holdId}`
    case 'HoldNotOpenError':
      return `hold ${e.holdId} is not open (${e.status})`
    default:
      if (error instanceof SpendguardError) return error.shortMessage.replace(/\.$/, '')
      return `error: ${e?.message ?? String(error)}`
  }
}
