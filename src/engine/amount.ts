import { InvalidAmountError, InvalidArgumentError } from './errors.ts'

/** The largest amount spendguard accepts: 2^256 − 1, the range of a uint256. */
export const maxAmount = 2n ** 256n - 1n

/** The largest number of decimals an asset may have. */
export const decimalsMax = 36

/**
 * Asserts that `value` is an operation amount: a bigint in 1 … 2^256−1.
 *
 * @example
 * import { assertAmount } from 'spendguard'
 * assertAmount(1_000_000n) // ok
 */
export function assertAmount(value: unknown): asserts value is bigint {
  if (typeof value !== 'bigint') throw new InvalidAmountError({ value, reason: 'amounts are bigint' })
  if (value < 1n) throw new InvalidAmountError({ value, reason: 'an amount is at least 1' })
  if (value > maxAmount) throw new InvalidAmountError({ value, reason: 'an amount is at most 2^256-1' })
}

/** Asserts that `value` is a budget total: a bigint in 0 … 2^256−1. */
export function assertTotal(value: unknown): asserts value is bigint {
  if (typeof value !== 'bigint') throw new InvalidAmountError({ value, reason: 'a total is a bigint' })
  if (value < 0n) throw new InvalidAmountError({ value, reason: 'a total is at least 0' })
  if (value > maxAmount) throw new InvalidAmountError({ value, reason: 'a total is at most 2^256-1' })
}

/**
 * Parses a decimal string in whole units into the asset's smallest unit, exactly.
 * More fractional digits than `decimals` is an error, never a rounding.
 *
 * @example
 * import { parseUnits } from 'spendguard'
 * parseUnits('12.5', 6) // 12500000n
 */
export function parseUnits(text: string, decimals: number): bigint {
  assertDecimals(decimals)
  assertDecimalText(text)
  const [whole = '0', fraction = ''] = text.trim().split('.')
  if (fraction.length > decimals)
    throw new InvalidAmountError({
      value: text,
      reason: `at most ${decimals} fractional digit${decimals === 1 ? '' : 's'} for this asset`,
    })
  const value = BigInt(whole + fraction.padEnd(decimals, '0'))
  if (value > maxAmount) throw new InvalidAmountError({ value: text, reason: 'above 2^256-1' })
  return value
}

/** Checks that `text` reads as an amount in whole units (`12.5`), whatever the asset's decimals. */
export function assertDecimalText(text: unknown): asserts text is string {
  if (typeof text !== 'string' || !/^\d+(\.\d+)?$/.test(text.trim()))
    throw new InvalidAmountError({ value: text, reason: 'expected a non-negative decimal such as "12.5"' })
}

/**
 * Formats an amount in the asset's smallest unit as a decimal string in whole units.
 *
 * @example
 * import { formatUnits } from 'spendguard'
 * formatUnits(12500000n, 6) // '12.5'
 */
export function formatUnits(value: bigint, decimals: number, { minFractionDigits = 0 } = {}): string {
  const negative = value < 0n
  const digits = (negative ? -value : value).toString().padStart(decimals + 1, '0')
  const whole = digits.slice(0, digits.length - decimals)
  let fraction = decimals > 0 ? digits.slice(-decimals).replace(/0+$/, '') : ''
  if (fraction.length < minFractionDigits) fraction = fraction.padEnd(Math.min(minFractionDigits, decimals), '0')
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`
}

export function assertDecimals(decimals: unknown): asserts decimals is number {
  if (typeof decimals !== 'number' || !Number.isInteger(decimals) || decimals < 0 || decimals > decimalsMax)
    throw new InvalidArgumentError({ argument: 'decimals', value: decimals, reason: `an integer in 0…${decimalsMax}` })
}

/** A threshold as an exact fraction `numerator / denominator`, taken from its decimal form. */
export type Fraction = { numerator: bigint; denominator: bigint }

export function toFraction(value: number): Fraction {
  // Number#toString gives the shortest decimal that round-trips; exponents appear for tiny values.
  const text = value.toString()
  const match = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(text)
  if (!match) throw new InvalidArgumentError({ argument: 'threshold', value, reason: 'a fraction in 0…1' })
  const fraction = match[2] ?? ''
  const exponent = Number(match[3] ?? 0) - fraction.length
  let numerator = BigInt((match[1] ?? '0') + fraction)
  let denominator = 1n
  if (exponent >= 0) numerator *= 10n ** BigInt(exponent)
  else denominator = 10n ** BigInt(-exponent)
  return { numerator, denominator }
}

/** `amount ≥ fraction × total`, exactly. */
export function reaches(amount: bigint, total: bigint, fraction: Fraction): boolean {
  return amount * fraction.denominator >= fraction.numerator * total
}
