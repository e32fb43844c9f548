import { CommitUnknownError, GuardDestroyedError, isDomainError } from './errors.ts'
import { type RuleContext, createBudgetCache, flushBudgets } from './rules.ts'
import type { OutboxRow, Store } from './store/types.ts'

/**
 * The group-commit writer. Operations submitted while a transaction is running wait
 * in a bounded queue and then share the next transaction: one commit (one fsync) for
 * all of them. Each caller still gets its own result or its own error:
 *
 * - a domain error (over budget, unknown hold…) is thrown before the operation writes
 *   anything, so the operation fails alone and the others commit;
 * - any other error rolls the whole batch back, and its operations run again one per
 *   transaction, so that only the faulty one fails;
 * - a commit whose outcome the store cannot learn (`CommitUnknownError`) fails every
 *   operation of the batch: it may have landed, so none of them runs again.
 */
export type Operation<T> = (ctx: RuleContext) => Promise<T>

export type WriterOptions = {
  store: Store
  clock: () => number
  /** Lease for new outbox rows of a kind this process delivers, else null. */
  leaseFor(kind: string): number | null
  /** Called after each commit with the outbox rows it stored. */
  onCommit(rows: OutboxRow[]): void
  /** Operations in one transaction, at most. */
  batchMax?: number
  /** Operations waiting, at most; further submitters wait for room. */
  queueMax?: number
}

type Pending = {
  op: Operation<unknown>
  /** The budget the operation changes, when known before it runs. */
  taskId: string | undefined
  resolve(value: unknown): void
  reject(error: unknown): void
  outcome: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined
}

export type Writer = {
  /** Runs `op` in the next batch; `taskId` names the budget it changes, when known. */
  submit<T>(op: Operation<T>, taskId?: string): Promise<T>
  /** As `submit`, also after {@link Writer.refuseNew}: the end of work begun before it. */
  submitAdmitted<T>(op: Operation<T>, taskId?: string): Promise<T>
  /** From now on `submit` refuses (`GuardDestroyedError`); what is queued still runs. */
  refuseNew(): void
  /** Resolves when everything submitted so far is committed or failed. */
  drain(): Promise<void>
  close(): Promise<void>
  stats(): { batches: number; operations: number; largestBatch: number }
}

export function createWriter(options: WriterOptions): Writer {
  const { store, clock } = options
  const batchMax = options.batchMax ?? 1024
  const queueMax = options.queueMax ?? 100_000
  let queue: Pending[] = []
  let running = false
  let closed = false
  let refusing = false
  let idle: Promise<void> = Promise.resolve()
  let settleIdle: (() => void) | undefined
  const roomWaiters: (() => void)[] = []
  const stats = { batches: 0, operations: 0, largestBatch: 0 }

  async function runBatch(batch: Pending[]): Promise<void> {
    const rows: OutboxRow[] = []
    try {
      await store.transaction(async (tx) => {
        const now = clock()
        rows.length = 0
        const budgets = createBudgetCache()
        if (tx.rowLocks) {
          // Take every known budget's lock up front, in one order for every process: batches
          // that share budgets queue behind each other instead of deadlocking.
          const taskIds = [...new Set(batch.map((p) => p.taskId).filter((t) => t !== undefined))]
          if (taskIds.length > 0) for (const row of await tx.lockBudgets(taskIds)) budgets.rows.set(row.taskId, row)
        }
        for (const pending of batch) {
          const ctx: RuleContext = { tx, now, outbox: [], leaseFor: options.leaseFor, budgets }
          try {
            pending.outcome = { ok: true, value: await pending.op(ctx) }
          } catch (error) {
            if (!isDomainError(error)) throw error
            pending.outcome = { ok: false, error }
          }
          // Rows raised before a domain error belong to writes the engine made on its own
          // (expired holds), which commit with the batch.
          for (const row of ctx.outbox) {
            await tx.insertOutbox(row)
            rows.push(row)
          }
        }
        await flushBudgets(tx, budgets)
      })
    } catch (error) {
      if (error instanceof CommitUnknownError) {
        // It may have committed: running its operations again could apply them twice.
        for (const pending of batch) pending.reject(error)
        return
      }
      if (batch.length > 1) {
        for (const pending of batch) await runBatch([pending])
        return
      }
      ;(batch[0] as Pending).reject(error)
      return
    }
    stats.batches++
    stats.operations += batch.length
    stats.largestBatch = Math.max(stats.largestBatch, batch.length)
    for (const pending of batch) {
      const outcome = pending.outcome
      if (outcome?.ok) pending.resolve(outcome.value)
      else pending.reject(outcome?.error)
    }
    if (rows.length) options.onCommit(rows)
  }

  async function loop(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.length <= batchMax ? queue : queue.slice(0, batchMax)
      queue = queue.length <= batchMax ? [] : queue.slice(batchMax)
      while (roomWaiters.length > 0 && queue.length < queueMax) roomWaiters.shift()?.()
      await runBatch(batch)
    }
    running = false
    settleIdle?.()
  }

  function schedule(): void {
    if (running) return
    running = true
    idle = new Promise((resolve) => {
      settleIdle = resolve
    })
    // Callers of the same synchronous run join the first batch; later ones queue behind it
    // and share the next. An idle writer starts at once rather than a turn of the event loop later.
    queueMicrotask(() => void loop())
  }

  async function enqueue<T>(op: Operation<T>, taskId: string | undefined, admitted: boolean): Promise<T> {
    if (closed || (refusing && !admitted)) throw new GuardDestroyedError()
    while (queue.length >= queueMax) await new Promise<void>((resolve) => roomWaiters.push(resolve))
    return new Promise<T>((resolve, reject) => {
      queue.push({ op, taskId, resolve: resolve as (v: unknown) => void, reject, outcome: undefined })
      schedule()
    })
  }

  const writer: Writer = {
    submit: (op, taskId) => enqueue(op, taskId, false),
    submitAdmitted: (op, taskId) => enqueue(op, taskId, true),
    refuseNew() {
      refusing = true
    },
    async drain() {
      while (running || queue.length > 0) await idle
    },
    close() {
      closed = true
      return writer.drain()
    },
    stats: () => ({ ...stats }),
  }
  return writer
}
