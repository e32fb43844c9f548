import { afterEach } from 'vitest'
import { type CreateGuardParameters, type Guard, createGuard } from '../../src/index.ts'
import type { StoreTarget } from './stores.ts'

/** A clock the test moves by hand. */
export function manualClock(start = 1_800_000_000_000) {
  let now = start
  const clock = () => now
  clock.advance = (ms: number) => {
    now += ms
  }
  return clock
}

/**
 * Opens guards on fresh databases of `target` and destroys them (and the databases)
 * after each test.
 */
export function useGuards(target: StoreTarget) {
  const open: { guard: Guard; cleanup(): Promise<void> }[] = []
  afterEach(async () => {
    for (const { guard, cleanup } of open.splice(0)) {
      await guard.destroy().catch(() => {})
      await cleanup()
    }
  })
  return {
    async guard(parameters: Omit<CreateGuardParameters, 'db'> = {}) {
      const { url, cleanup } = await target.fresh()
      const guard = await createGuard({ ...parameters, db: url })
      open.push({ guard, cleanup })
      return guard
    },
    /** A fresh database URL; the caller opens and destroys its own guards on it. */
    async url() {
      const { url, cleanup } = await target.fresh()
      open.push({ guard: { destroy: async () => {} } as Guard, cleanup })
      return url
    },
  }
}
