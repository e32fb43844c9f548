import { setTimeout as sleep } from 'node:timers/promises'
import PQueue from 'p-queue'
import type { OutboxRow, Store } from './store/types.ts'
import type { GuardEventName, GuardEvents } from './types.ts'

/**
 * Delivers the outbox: alerts written in the same transaction as the change that raised
 * them reach `guard.on(…)` listeners at least once, with their stable id, even when the
 * process that wrote them died before delivering.
 *
 * Rows written by a process that listens for their kind carry a lease; that process
 * delivers them right after its commit. Rows nobody delivered (the writer crashed, every
 * retry of a handler failed) are claimed again once their lease runs out, by any process
 * that listens. Handlers run in a bounded p-queue, never on the write path.
 */
export type Handler<E extends GuardEventName> = (event: GuardEvents[E]) => unknown

export type DispatcherOptions = {
  store: Store
  clock: () => number
  /** How long a process holds an undelivered row before another may claim it. */
  leaseMs?: number
  /** Handlers running at once, at most. */
  concurrency?: number
  /**
   * Attempts per handler in one delivery of an event. A row some handler still failed stays
   * undelivered and is delivered again (to every listener) once its lease runs out: at least
   * once, for as long as a handler fails.
   */
  attemptsMax?: number
  /** How often undelivered rows are looked for. */
  sweepIntervalMs?: number
  /** Reports a handler that failed every attempt of one delivery. */
  onHandlerError?: (error: unknown, event: { kind: string; id: string }) => void
}

export type Dispatcher = {
  on<E extends GuardEventName>(kind: E, handler: Handler<E>): () => void
  /** Lease for a new row of `kind`, when this process will deliver it. */
  leaseFor(kind: string): number | null
  /** Delivers rows this process just committed. */
  committed(rows: OutboxRow[]): void
  /** Resolves when no delivery is pending. */
  idle(): Promise<void>
  close(): Promise<void>
}

const sweepBatchMax = 256
/** First retry delay of a failing handler; doubles per attempt. */
const retryDelayMs = 50

export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const { store, clock } = options
  const leaseMs = options.leaseMs ?? 10_000
  const attemptsMax = options.attemptsMax ?? 5
  const queue = new PQueue({ concurrency: options.concurrency ?? 8 })
  const handlers = new Map<string, Set<(event: unknown) => unknown>>()
  const delivered: string[] = []
  let flushing: Promise<void> | undefined
  let closed = false
  let sweepTimer: NodeJS.Timeout | undefined
  let sweeping: Promise<number> | undefined

  const kinds = () => [...handlers.entries()].filter(([, set]) => set.size > 0).map(([kind]) => kind)

  function deliver(row: OutboxRow): void {
    const listeners = [...(handlers.get(row.kind) ?? [])]
    if (listeners.length === 0) return
    const event = decode(row)
    void queue.add(async () => {
      let ok = true
      for (const handler of listeners) {
        for (let attempt = 1; ; attempt++) {
          try {
            await handler(event)
            break
          } catch (error) {
            if (attempt >= attemptsMax || closed) {
              ok = false
              options.onHandlerError?.(error, { kind: row.kind, id: row.id })
              break
            }
            await sleep(retryDelayMs * 2 ** (attempt - 1))
          }
        }
      }
      // A failed row stays undelivered; it is claimed again when its lease runs out.
      if (ok) markDelivered(row.id)
    })
  }

  function markDelivered(id: string): void {
    delivered.push(id)
    flushing ??= (async () => {
      // Let deliveries of the same turn share one write.
      await sleep(0)
      while (delivered.length > 0) {
        const ids = delivered.splice(0, delivered.length)
        await store.markDelivered(ids, clock()).catch(() => {
          // Not marked: the row will be delivered again after its lease (at least once).
        })
      }
      flushing = undefined
    })()
  }

  async function sweep(): Promise<number> {
    if (sweeping) return sweeping
    sweeping = (async () => {
      const wanted = kinds()
      if (wanted.length === 0 || closed) return 0
      const rows = await store.claimOutbox(wanted, clock(), leaseMs, sweepBatchMax)
      for (const row of rows) deliver(row)
      return rows.length
    })().finally(() => {
      sweeping = undefined
    })
    return sweeping
  }

  function ensureSweeping(): void {
    if (sweepTimer || closed) return
    sweepTimer = setInterval(() => void sweep().catch(() => {}), options.sweepIntervalMs ?? 1_000)
    sweepTimer.unref()
    setImmediate(() => void sweep().catch(() => {}))
  }

  async function idle(): Promise<void> {
    await queue.onIdle()
    while (flushing) await flushing
  }

  return {
    on(kind, handler) {
      let set = handlers.get(kind)
      if (!set) {
        set = new Set()
        handlers.set(kind, set)
      }
      const h = handler as (event: unknown) => unknown
      set.add(h)
      ensureSweeping()
      return () => void set.delete(h)
    },
    leaseFor(kind) {
      return (handlers.get(kind)?.size ?? 0) > 0 ? clock() + leaseMs : null
    },
    committed(rows) {
      for (const row of rows) if (row.leaseUntil !== null) deliver(row)
    },
    idle,
    async close() {
      if (sweepTimer) clearInterval(sweepTimer)
      await sweeping?.catch(() => {})
      await idle()
      closed = true
    },
  }
}

/** Turns a stored outbox row into the event its listeners receive. */
function decode(row: OutboxRow): unknown {
  const raw = JSON.parse(row.payload) as Record<string, unknown>
  const amounts = ['spent', 'total', 'reserved', 'overspent', 'amount']
  for (const key of amounts) if (typeof raw[key] === 'string') raw[key] = BigInt(raw[key] as string)
  return raw
}
