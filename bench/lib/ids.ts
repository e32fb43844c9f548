import { randomBytes } from 'node:crypto'

/**
 * Ids and refs shaped like the engine's (time, counter, random bits; 32-byte refs), so the
 * raw baselines write rows of the same size into the same indexes.
 */
let counter = 0
const processTag = randomBytes(6).toString('hex')
export function rowId(prefix: string): string {
  counter = (counter + 1) % 0x1000000
  return `${prefix}_${Date.now().toString(16).padStart(12, '0')}${counter.toString(16).padStart(6, '0')}${processTag}`
}

/** The engine's own ref maker: time and counter, then random bytes. */
export { newRef as holdRef } from '../../src/engine/rules.ts'

/** The canonical parameter strings the engine stores with holds and entries. */
export const holdSig = (amount: bigint) => `{"amount":"${amount}"}`
export const settleSig = (amount: bigint) => `{"amount":"${amount}"}`
