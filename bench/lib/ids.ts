import { randomBytes } from 'node:crypto'

/**
 * Ids and refs shaped like the engine's (time, counter, random bits; 32-byte refs), so the
 * raw baselines write rows of the same size into the same indexes.
 */
let counter = 0
export function rowId(prefix: string): string {
  counter = (counter + 1) % 0x1000000
  return `${prefix}_${Date.now().toString(16).padStart(12, '0')}${counter.toString(16).padStart(6, '0')}${randomBytes(8).toString('hex')}`
}

export const randomRef = () => `0x${randomBytes(32).toString('hex')}`

/** The canonical parameter strings the engine stores with holds and entries. */
export const holdSig = (amount: bigint) => `{"amount":"${amount}"}`
export const settleSig = (amount: bigint) => `{"amount":"${amount}"}`
