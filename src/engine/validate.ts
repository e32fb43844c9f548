import { InvalidArgumentError } from './errors.ts'

/** Checks of caller input. Each throws `InvalidArgumentError` naming the argument. */

export const idLengthMax = 256
export const textLengthMax = 1024
export const thresholdsMax = 16
/** The last journal sequence number: seq is a 64-bit signed integer in both stores. */
export const seqMax = 2n ** 63n - 1n
/** A hold lives at most a year. */
export const ttlMsMax = 365 * 24 * 3600 * 1000

/**
 * A NUL or a lone UTF-16 surrogate has no place in stored text: PostgreSQL refuses the first
 * and turns every lone surrogate into one replacement character (so two ids would become
 * one), while SQLite keeps them as they are.
 */
const unstorable = /[\0\p{Cs}]/u
/** Any NUL or surrogate code unit at all: most text has none, and then needs no closer look. */
const suspect = /[\0\uD800-\uDFFF]/
const storable = (text: string) => !suspect.test(text) || !unstorable.test(text)

export function assertId(argument: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > idLengthMax || !storable(value))
    throw new InvalidArgumentError({
      argument,
      value,
      reason: `a non-empty string of at most ${idLengthMax} characters, well-formed Unicode without NUL`,
    })
}

export function optionalText(argument: string, value: unknown): string | null {
  if (value === undefined || value === null) return null
  if (typeof value !== 'string' || value.length > textLengthMax || !storable(value))
    throw new InvalidArgumentError({
      argument,
      value,
      reason: `a string of at most ${textLengthMax} characters, well-formed Unicode without NUL`,
    })
  return value
}

export function optionalId(argument: string, value: unknown): string | null {
  if (value === undefined || value === null) return null
  assertId(argument, value)
  return value
}

/** Prefixes of the entry ids spendguard makes itself. */
const enginePrefixes = ['chain_', 'entry_', 'x402_']

/**
 * An entry id a caller chooses. Ids of on-chain entries (`chain_…`) are the ledger's own: an
 * off-chain entry under one would pass for the on-chain spend and keep it from being counted.
 * Those the engine makes when none is given (`entry_…`) and the x402 adapter's facts
 * (`x402_<hold id>`) are guessable: a caller's id taking one first would fail that write, or
 * answer it with the caller's entry.
 */
export function optionalEntryId(argument: string, value: unknown): string | null {
  const id = optionalId(argument, value)
  if (id !== null && enginePrefixes.some((prefix) => id.startsWith(prefix)))
    throw new InvalidArgumentError({
      argument,
      value,
      reason: 'an id not starting with "chain_", "entry_" or "x402_", which the ids spendguard makes begin with',
    })
  return id
}

export function assertAsset(value: unknown): asserts value is string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/.test(value))
    throw new InvalidArgumentError({ argument: 'asset', value, reason: 'a short name such as "USDC"' })
}

export function thresholds(value: unknown): number[] {
  // Copied before it is checked (what is checked is what is kept); a long one is refused first.
  const list: unknown[] | undefined = Array.isArray(value) && value.length <= thresholdsMax ? [...value] : undefined
  if (list === undefined || list.length > thresholdsMax)
    throw new InvalidArgumentError({ argument: 'thresholds', value, reason: `an array of at most ${thresholdsMax} fractions` })
  for (const t of list)
    if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0 || t > 1)
      throw new InvalidArgumentError({ argument: 'thresholds', value: t, reason: 'each threshold is a fraction in (0, 1]' })
  return [...new Set(list as number[])].sort((a, b) => a - b)
}

export function assertBoolean(argument: string, value: unknown): asserts value is boolean {
  if (typeof value !== 'boolean') throw new InvalidArgumentError({ argument, value, reason: 'true or false' })
}

/** An optional whole number in 1…`max` (a size, a count, milliseconds). */
export function optionalCount(argument: string, value: unknown, max: number): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max)
    throw new InvalidArgumentError({ argument, value, reason: `an integer in 1…${max}` })
  return value
}

export function optionalTtlMs(value: unknown): number | null {
  if (value === undefined || value === null) return null
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > ttlMsMax)
    throw new InvalidArgumentError({ argument: 'ttlMs', value, reason: `an integer number of milliseconds in 1…${ttlMsMax}` })
  return value
}

export function optionalRef(value: unknown): string | null {
  if (value === undefined || value === null) return null
  if (typeof value !== 'string' || !/^0x[0-9a-fA-F]{64}$/.test(value))
    throw new InvalidArgumentError({ argument: 'ref', value, reason: 'a 32-byte hex string (0x + 64 hex digits)' })
  return value.toLowerCase()
}

export function optionalTimestamp(argument: string, value: unknown): number | null {
  if (value === undefined || value === null) return null
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new InvalidArgumentError({ argument, value, reason: 'milliseconds since the epoch' })
  return value
}

export function progress(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1)
    throw new InvalidArgumentError({ argument: 'progress', value, reason: 'a number in 0…1' })
  return value
}

/** Metadata as canonical JSON (keys sorted), so equal metadata compares equal. */
export function metadata(value: unknown): string | null {
  if (value === undefined || value === null) return null
  // Through JSON first: values with toJSON (Date, URL) are kept as JSON writes them, and what
  // is left must be a plain object.
  let json: unknown
  try {
    json = JSON.parse(JSON.stringify(value) ?? 'null')
  } catch {
    throw new InvalidArgumentError({ argument: 'metadata', value, reason: 'JSON-serializable and at most 64 KiB' })
  }
  if (typeof value !== 'object' || json === null || typeof json !== 'object' || Array.isArray(json))
    throw new InvalidArgumentError({ argument: 'metadata', value, reason: 'a plain object' })
  const text = JSON.stringify(sortKeys(json))
  if (text.length > 64 * 1024)
    throw new InvalidArgumentError({ argument: 'metadata', value, reason: 'JSON-serializable and at most 64 KiB' })
  return text
}

/** Parsed JSON with every object's keys in order. */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    )
  return value
}

/**
 * An options object, read once: each of `keys` is copied out of it, so that a getter or a
 * Proxy cannot show validation one value and the write another. A key not among `keys` is
 * refused.
 */
export function options<T extends object>(argument: string, value: unknown, keys: { [K in keyof Required<T>]: true }): Partial<T> {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new InvalidArgumentError({ argument, value, reason: 'an options object' })
  // A misspelt option (`ttl` for `ttlMs`) would otherwise be dropped without a word.
  for (const key in value)
    if (Object.hasOwn(value, key) && !Object.hasOwn(keys, key))
      throw new InvalidArgumentError({ argument: `${argument}.${key}`, value: (value as Record<string, unknown>)[key], reason: `an option of ${Object.keys(keys).join(', ')}` })
  const snapshot: Partial<T> = {}
  for (const key in keys) snapshot[key as keyof T] = (value as T)[key as keyof T]
  return snapshot
}
