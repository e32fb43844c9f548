import { assertAmount, assertDecimals, assertTotal, maxAmount as amountMax, toFraction } from './amount.ts'
import { type Dispatcher, type Handler, createDispatcher } from './alerts.ts'
import {
  BudgetNotFoundError,
  GuardDestroyedError,
  HoldNotFoundError,
  HoldNotOpenError,
  InvalidArgumentError,
  PaymentUnsettledError,
  RiskDeniedError,
} from './errors.ts'
import { sql } from 'kysely'
import * as rules from './rules.ts'
import { budgets, entries as entryCodec, holds as holdCodec, journal as journalCodec } from './store/codec.ts'
import { defaultDbUrl, openStore } from './store/index.ts'
import type { BudgetRow, EntryRow, HoldRow, JournalRow, Store } from './store/types.ts'
import type {
  BudgetReport,
  BudgetStatus,
  CheckResult,
  Clock,
  GuardEventName,
  Hold,
  JournalEntry,
  RiskAssessor,
  SpendEntry,
  TaskBudget,
} from './types.ts'
import * as v from './validate.ts'
import { type VerifyResult, verifyStore } from './verify.ts'
import { type Operation, type Writer, createWriter } from './writer.ts'

export type CreateGuardParameters = {
  /** Store URL: `sqlite:./spendguard.db` (default, or env `SPENDGUARD_DB`) or `postgres://…`. */
  db?: string | undefined
  /** Default alert thresholds, fractions of `total` (default `[0.5, 0.8, 0.95]`). */
  thresholds?: number[] | undefined
  /** Default for new budgets: refuse operations past the total (default `true`). */
  hardLimit?: boolean | undefined
  /** Milliseconds since the epoch; injectable for tests. */
  clock?: Clock | { now(): number } | undefined
  riskAssessor?: RiskAssessor | undefined
  /** Tuning of the outbox delivery of alerts. */
  alerts?: { leaseMs?: number; concurrency?: number; attemptsMax?: number; sweepIntervalMs?: number } | undefined
  /** Group commit: operations per transaction, at most (default 1024). */
  batchMax?: number | undefined
  /** How often holds of every budget are checked for expiry (default 1000 ms). */
  expirySweepMs?: number | undefined
  /**
   * PostgreSQL: how long to keep asking the server whether a commit whose answer was lost with
   * the connection landed (default 30,000 ms); past it, that transaction's callers get
   * `CommitUnknownError`.
   */
  lostCommitWaitMs?: number | undefined
  /** Reports an alert handler that failed every attempt of one delivery (the event is delivered again after its lease). */
  onHandlerError?: ((error: unknown, event: { kind: string; id: string }) => void) | undefined
}

export type AllocateParameters = {
  total: bigint
  asset: string
  decimals: number
  thresholds?: number[] | undefined
  hardLimit?: boolean | undefined
  metadata?: Record<string, unknown> | undefined
}

export type ReserveOptions = { key?: string | undefined; ttlMs?: number | undefined; ref?: `0x${string}` | undefined }

export type EntryDetails = {
  id?: string | undefined
  peer?: string | undefined
  tool?: string | undefined
  reason?: string | undefined
  at?: number | undefined
}

export type RecordParameters = EntryDetails & { amount: bigint }

export type PayContext = { hold: Hold }
/** What a payment function reports: the settled amount (≤ or > the hold) and entry details. */
export type PayResult = { settled: bigint } & Omit<EntryDetails, 'id'>

export type Guard = {
  allocate(taskId: string, parameters: AllocateParameters): Promise<TaskBudget>
  check(taskId: string, amount: bigint): Promise<CheckResult>
  reserve(taskId: string, amount: bigint, options?: ReserveOptions): Promise<Hold>
  capture(holdId: string, amount: bigint, entry?: EntryDetails): Promise<SpendEntry>
  release(holdId: string): Promise<Hold>
  record(taskId: string, parameters: RecordParameters): Promise<SpendEntry>
  close(taskId: string): Promise<BudgetReport>
  get(taskId: string): Promise<TaskBudget>
  list(options?: { status?: BudgetStatus | undefined }): Promise<TaskBudget[]>
  entries(taskId: string): Promise<SpendEntry[]>
  holds(taskId: string): Promise<Hold[]>
  /** One hold by id. */
  hold(holdId: string): Promise<Hold>
  journal(options?: { taskId?: string; afterSeq?: bigint; limit?: number }): Promise<JournalEntry[]>
  verify(): Promise<VerifyResult>
  setProgress(taskId: string, progress: number): Promise<TaskBudget>
  burnRate(taskId: string): Promise<bigint>
  forecast(taskId: string): Promise<{ projected: bigint | null; exceedsTotal: boolean }>
  /**
   * `onchain`: `fn` pays on chain through the SpendingHook, carrying `hold.ref`; the log the
   * tracker applies and what `fn` settled are then one payment, counted once (the larger).
   */
  pay(
    taskId: string,
    maxAmount: bigint,
    fn: (context: PayContext) => Promise<PayResult>,
    options?: { key?: string; onchain?: boolean },
  ): Promise<SpendEntry>
  on<E extends GuardEventName>(event: E, handler: Handler<E>): () => void
  /** Expires every hold whose time has come now; resolves with how many expired. */
  expireHolds(): Promise<number>
  /** Resolves when every alert delivery under way has finished. */
  flushAlerts(): Promise<void>
  /**
   * Lets what was submitted commit, refusing new writes; waits for every `pay` whose function
   * is running, and every x402 `wrapFetch` request under way, to settle; then closes the store.
   * Later calls get `GuardDestroyedError`.
   */
  destroy(): Promise<void>
  /** The store and writer, for spendguard's own modules (the chain tracker). */
  readonly internal: GuardInternal
}

export type GuardInternal = {
  store: Store
  clock: Clock
  /** Runs a ledger operation in the next batch; `taskId` names the budget it changes, when known. */
  submit<T>(op: Operation<T>, taskId?: string): Promise<T>
  writerStats(): ReturnType<Writer['stats']>
  /**
   * Records a spend that already happened (money that left, found late): like `record`, but
   * whatever the limit or the budget's state, and not put to the risk assessor, as on-chain
   * facts are. Past a hard limit it shows as `overspent`.
   */
  recordFact(taskId: string, parameters: RecordParameters): Promise<SpendEntry>
  /**
   * A payment under way in one of spendguard's adapters (an x402 request): destroy() waits for
   * `run` to settle, as for a running `pay`. Resolves or rejects with it.
   */
  underWay<T>(run: Promise<T>): Promise<T>
  /** `capture`, taken also while destroy() waits for payments under way: a payment's own settlement. */
  settleCapture(holdId: string, amount: bigint, entry?: EntryDetails): Promise<SpendEntry>
  /** `release`, taken also while destroy() waits for payments under way. */
  settleRelease(holdId: string): Promise<Hold>
}

const defaultThresholds = [0.5, 0.8, 0.95]
/** The keys each options object is read by (see `v.options`). */
const guardKeys = {
  db: true,
  thresholds: true,
  hardLimit: true,
  clock: true,
  riskAssessor: true,
  alerts: true,
  batchMax: true,
  expirySweepMs: true,
  lostCommitWaitMs: true,
  onHandlerError: true,
} as const
const alertKeys = { leaseMs: true, concurrency: true, attemptsMax: true, sweepIntervalMs: true } as const
const allocateKeys = { total: true, asset: true, decimals: true, thresholds: true, hardLimit: true, metadata: true } as const
const entryKeys = { id: true, peer: true, tool: true, reason: true, at: true } as const
const recordKeys = { ...entryKeys, amount: true } as const
const reserveKeys = { key: true, ttlMs: true, ref: true } as const
const expirySweepTasksMax = 256

/**
 * Creates a guard: a task-budget engine over the store `db` names.
 *
 * @example
 * import { createGuard } from 'spendguard'
 *
 * const guard = await createGuard({ db: 'sqlite:./spendguard.db' })
 * await guard.allocate('task-1', { total: 10_000_000n, asset: 'USDC', decimals: 6 })
 * const hold = await guard.reserve('task-1', 2_000_000n)
 * await guard.capture(hold.id, 1_500_000n, { peer: 'api.example.com' })
 * console.log((await guard.get('task-1')).remaining) // 8500000n
 * await guard.destroy()
 */
export async function createGuard(parameters: CreateGuardParameters = {}): Promise<Guard> {
  const p = v.options<CreateGuardParameters>('createGuard parameters', parameters, guardKeys)
  const clockOption = p.clock
  if (
    clockOption !== undefined &&
    typeof clockOption !== 'function' &&
    typeof (clockOption as { now?: unknown } | null)?.now !== 'function'
  )
    throw new InvalidArgumentError({ argument: 'clock', value: clockOption, reason: 'a function or an object with now(), in milliseconds' })
  const clock: Clock =
    clockOption === undefined ? Date.now : typeof clockOption === 'function' ? clockOption : () => clockOption.now()
  // Tuning is checked before the store is opened: bad input creates nothing.
  const batchMax = v.optionalCount('batchMax', p.batchMax, 1_000_000)
  const expirySweepMs = v.optionalCount('expirySweepMs', p.expirySweepMs, 86_400_000)
  const lostCommitWaitMs = v.optionalCount('lostCommitWaitMs', p.lostCommitWaitMs, 86_400_000)
  const alerts = v.options<NonNullable<CreateGuardParameters['alerts']>>('alerts', p.alerts, alertKeys)
  const alertTuning = {
    leaseMs: v.optionalCount('alerts.leaseMs', alerts.leaseMs, 86_400_000),
    concurrency: v.optionalCount('alerts.concurrency', alerts.concurrency, 10_000),
    attemptsMax: v.optionalCount('alerts.attemptsMax', alerts.attemptsMax, 1_000),
    sweepIntervalMs: v.optionalCount('alerts.sweepIntervalMs', alerts.sweepIntervalMs, 86_400_000),
  }
  if (p.onHandlerError !== undefined && typeof p.onHandlerError !== 'function')
    throw new InvalidArgumentError({ argument: 'onHandlerError', value: p.onHandlerError, reason: 'a function' })
  const guardThresholds = v.thresholds(p.thresholds ?? defaultThresholds)
  const guardHardLimit = p.hardLimit ?? true
  v.assertBoolean('hardLimit', guardHardLimit)
  const riskAssessor = p.riskAssessor
  if (riskAssessor !== undefined && typeof riskAssessor !== 'function')
    throw new InvalidArgumentError({ argument: 'riskAssessor', value: riskAssessor, reason: 'a function' })

  const store = await openStore(p.db ?? process.env.SPENDGUARD_DB ?? defaultDbUrl, { lostCommitWaitMs })
  const dispatcher: Dispatcher = createDispatcher({
    store,
    clock,
    ...alertTuning,
    onHandlerError: p.onHandlerError,
  })
  const writer = createWriter({
    store,
    clock,
    batchMax,
    leaseFor: dispatcher.leaseFor,
    onCommit: dispatcher.committed,
  })
  const submit = writer.submit
  /**
   * What a payment whose function ran writes (its capture, its record, its release): taken
   * also while destroy() waits for it, when every other write is refused.
   */
  const settle = writer.submitAdmitted

  // Holds expire without anybody's help: a timer sweeps the store for due holds.
  let expiryRunning: Promise<number> | undefined
  let expiryNext: Promise<number> | undefined
  async function expireHolds(): Promise<number> {
    // A sweep under way read the clock before this call: one more runs after it, which every
    // call made meanwhile shares, so each call sees every hold due when it was made.
    if (expiryRunning) {
      const running = expiryRunning
      expiryNext ??= running
        .catch(() => 0)
        .then(() => {
          expiryNext = undefined
          return expireHolds()
        })
      return expiryNext
    }
    expiryRunning = (async () => {
      let expired = 0
      for (;;) {
        const tasks = await store.tasksWithDueHolds(clock(), expirySweepTasksMax)
        // Submitted together, the tasks' expiries share the writer's transactions.
        const counts = await Promise.all(tasks.map((taskId) => submit((ctx) => rules.expireTask(ctx, taskId), taskId)))
        for (const n of counts) expired += n
        if (tasks.length < expirySweepTasksMax) return expired
      }
    })().finally(() => {
      expiryRunning = undefined
    })
    return expiryRunning
  }
  const expiryTimer = setInterval(() => void expireHolds().catch(() => {}), expirySweepMs ?? 1_000)
  expiryTimer.unref()

  /**
   * The budget a hold belongs to, where the store locks rows (a hold's task never changes,
   * so reading it before the transaction is safe); SQLite needs no hint.
   */
  async function lockHint(holdId: string): Promise<string | undefined> {
    if (store.dialect !== 'postgres') return undefined
    const row = await store.db.selectFrom('holds').select('task_id').where('id', '=', holdId).executeTakeFirst()
    return row?.task_id
  }

  /** A budget as of now: holds past their time are expired first. */
  async function current(taskId: string): Promise<BudgetRow> {
    v.assertId('taskId', taskId)
    let row = await store.readBudget(taskId)
    if (!row) throw new BudgetNotFoundError({ taskId })
    if (row.nextExpiryAt !== null && row.nextExpiryAt <= clock()) {
      await submit((ctx) => rules.expireTask(ctx, taskId), taskId)
      row = (await store.readBudget(taskId)) as BudgetRow
    }
    return row
  }

  async function assess(
    operation: 'check' | 'reserve' | 'record',
    taskId: string,
    amount: bigint,
    extra: { peer?: string | null; tool?: string | null } = {},
    row?: BudgetRow,
  ): Promise<{ allow: true } | { allow: false; reason: string }> {
    if (!riskAssessor) return { allow: true }
    const budget = toBudget(row ?? (await current(taskId)))
    const decision = await riskAssessor({
      operation,
      taskId,
      amount,
      budget,
      peer: extra.peer ?? undefined,
      tool: extra.tool ?? undefined,
    })
    if (!decision || typeof decision.allow !== 'boolean')
      throw new InvalidArgumentError({ argument: 'risk decision', value: decision, reason: '{ allow: boolean, reason? }' })
    if (decision.allow) return decision
    return { allow: false, reason: String(decision.reason ?? 'denied') }
  }

  /**
   * Reserves through the assessor; a key that already has its hold is a retry, answered by
   * the rule with the original hold (or a conflict) whatever the assessor says now.
   */
  function reserveOnce(input: rules.ReserveInput): Promise<{ hold: HoldRow; created: boolean }> {
    // Without an assessor, straight to the writer: the hot path of every payment.
    if (riskAssessor === undefined) return submit((ctx) => rules.reserveOnce(ctx, input), input.taskId)
    return assessedReserve(input)
  }

  async function assessedReserve(input: rules.ReserveInput): Promise<{ hold: HoldRow; created: boolean }> {
    const { taskId, amount, key } = input
    const known =
      key !== null &&
      (await store.db.selectFrom('holds').select('id').where('task_id', '=', taskId).where('key', '=', key).executeTakeFirst())
    if (!known) {
      const risk = await assess('reserve', taskId, amount)
      if (!risk.allow) throw new RiskDeniedError({ taskId, requested: amount, reason: risk.reason })
    }
    return submit((ctx) => rules.reserveOnce(ctx, input), taskId)
  }

  /** Keyed payments running in this process: a second call with the key shares the first's outcome. */
  const paying = new Map<string, { run: Promise<SpendEntry>; maxAmount: bigint }>()
  /** Every payment running in this process (`pay`, an adapter's request): destroy() waits for them to settle. */
  const payments = new Set<Promise<unknown>>()
  function underWay<T>(run: Promise<T>): Promise<T> {
    payments.add(run)
    const done = () => void payments.delete(run)
    run.then(done, done)
    return run
  }

  /** The live on-chain entry that paid for a hold, read through the partial index entries_chain_hold. */
  function chainEntryOfHold(holdId: string) {
    return store.db
      .selectFrom('entries')
      .selectAll()
      .where('hold_id', '=', holdId)
      // The index's own predicate, as a literal: a generic plan on PostgreSQL cannot prove
      // from a parameter that the partial index covers the query.
      .where('source', '=', sql.lit('onchain'))
      .where('hold_id', 'is not', null)
      .where('reverted', '=', 0)
      .orderBy('id')
      .executeTakeFirst()
  }

  async function payOnce(taskId: string, maxAmount: bigint, fn: (context: PayContext) => Promise<PayResult>, key: string | null, onchain: boolean) {
    const { hold: row, created } = await reserveOnce({ taskId, amount: maxAmount, key, ttlMs: null, ref: null })
    const hold = toHold(row)
    if (hold.status === 'captured' && hold.entryId) {
      // A retry of a payment that already settled: answer with its entry, pay nothing.
      const prior = await store.db.selectFrom('entries').selectAll().where('id', '=', hold.entryId).executeTakeFirst()
      if (prior) return toEntry(entryCodec.decode(prior))
    }
    // The id of what `pay` records when it cannot capture: the hold ended, or the chain captured it.
    const factId = onchain ? rules.paidOnChain(hold.id) : rules.paidAfterHoldEnded(hold.id)
    if (hold.status === 'released' || hold.status === 'expired') {
      // A retry of a payment that settled after its hold had ended: answer with its entry, or
      // with the chain's, when a log carrying the hold's `ref` was that payment.
      const prior =
        (onchain ? await chainEntryOfHold(hold.id) : undefined) ??
        (await store.db.selectFrom('entries').selectAll().where('id', '=', factId).executeTakeFirst())
      if (prior) return toEntry(entryCodec.decode(prior))
    }
    if (hold.status === 'released' || hold.status === 'expired')
      // An earlier call with the key ended without paying (its function threw, or settled
      // nothing) and released the hold. The key named that payment: running `fn` again could
      // pay a second time for a payment that in truth went through.
      throw new HoldNotOpenError({
        holdId: hold.id,
        status: hold.status,
        reason: `the payment with key "${key}" ended without a payment recorded; a new payment needs a new key`,
      })
    if (hold.status !== 'open') throw new HoldNotOpenError({ holdId: hold.id, status: hold.status })
    if (!created) {
      // The key's hold is open, and no call of this process is paying with it: another process
      // is, or one was cut off between paying and settling. Paying again could pay twice.
      throw new PaymentUnsettledError({
        taskId,
        holdId: hold.id,
        key: key ?? undefined,
        reason: 'a payment with this key is running elsewhere or its outcome is unknown',
      })
    }
    // The payment moved nothing: its hold goes back, also while destroy() waits for it.
    const releaseHold = () => settle((ctx) => rules.release(ctx, hold.id), taskId)
    let result: PayResult
    try {
      result = await fn({ hold })
    } catch (error) {
      await releaseHold().catch(() => {})
      throw error
    }
    const settled = (result as PayResult | undefined)?.settled
    if (typeof settled !== 'bigint' || settled < 0n || settled > amountMax) {
      // The payment ran and nothing says what it moved: the hold keeps the money reserved.
      throw new PaymentUnsettledError({
        taskId,
        holdId: hold.id,
        key: key ?? undefined,
        reason: `the payment function resolved ${typeof settled === 'bigint' ? `settled ${settled}` : `a settled ${typeof settled}`}, not 0 ≤ settled < 2^256 as a bigint`,
      })
    }
    if (settled === 0n) {
      await releaseHold()
      throw new InvalidArgumentError({ argument: 'settled', value: 0n, reason: 'nothing was settled; the hold was released' })
    }
    // From here on the money has moved: whatever stops the capture leaves the hold reserved
    // and says so with PaymentUnsettledError, never with an error that means "nothing happened".
    const unsettled = async (reason: string, cause: unknown) => {
      // Says whether the hold still reserves the money, as far as the ledger can still tell.
      const now = await guard.hold(hold.id).catch(() => undefined)
      const holdEnded = now !== undefined && now.status !== 'open'
      return new PaymentUnsettledError({ taskId, holdId: hold.id, key: key ?? undefined, reason, cause, holdEnded })
    }
    let details: { peer: string | null; tool: string | null; reason: string | null; at: number | null }
    try {
      details = {
        peer: v.optionalText('peer', result.peer),
        tool: v.optionalText('tool', result.tool),
        reason: v.optionalText('reason', result.reason),
        at: v.optionalTimestamp('at', result.at),
      }
    } catch (error) {
      throw await unsettled(`the payment function settled ${settled} with entry details that cannot be stored`, error)
    }
    // Declared paid on chain: the capture's id tells the tracker that the log carrying the
    // hold's ref is this very payment, not one of its own.
    const input: rules.CaptureInput = { holdId: hold.id, amount: settled, entryId: onchain ? factId : null, ...details, fact: true }
    const fact: rules.RecordInput = { taskId, id: factId, amount: settled, ...details, fact: true }
    try {
      const { entry } = await settle((ctx) => rules.capture(ctx, input), taskId)
      return toEntry(entry)
    } catch (error) {
      if (error instanceof HoldNotOpenError && (error.status === 'released' || error.status === 'expired')) {
        // The hold ended while the payment ran (close, release, expiry); the spend is recorded
        // once all the same, keyed by the hold, as a fact (past a hard limit it shows as overspent).
        // Paid on chain, and the tracker applied the log first: only what `fn` settled beyond it.
        try {
          return toEntry(await settle((ctx) => (onchain ? rules.settleBesideChain(ctx, hold.id, fact, 'rest') : rules.record(ctx, fact)), taskId))
        } catch (recordError) {
          throw await unsettled(`the payment settled ${settled} after its hold ended, and recording it failed`, recordError)
        }
      }
      if (error instanceof HoldNotOpenError && error.status === 'captured') {
        // Captured meanwhile by the chain: the tracker matched the payment's `ref` and recorded
        // what the chain moved; that entry answers. What `fn` settled is not dropped: declared
        // paid on chain, what it settled beyond the log is recorded (the payment counts the
        // larger); not declared, the log may be another payment, and what it settled is
        // recorded whole, as a log naming a settled hold counts whole.
        const captured = await guard.hold(hold.id)
        const raw = captured.entryId && (await store.db.selectFrom('entries').selectAll().where('id', '=', captured.entryId).executeTakeFirst())
        if (raw) {
          const prior = entryCodec.decode(raw)
          if (prior.source !== 'onchain') return toEntry(prior)
          try {
            return toEntry(await settle((ctx) => rules.settleBesideChain(ctx, hold.id, fact, onchain ? 'rest' : 'whole'), taskId))
          } catch (recordError) {
            throw await unsettled(`the payment settled ${settled}, the chain's capture counted ${prior.amount}, and recording the rest failed`, recordError)
          }
        }
      }
      throw await unsettled(`the payment settled ${settled}, and capturing it failed`, error)
    }
  }

  async function captureWith(write: Writer['submit'], holdId: string, amount: bigint, entry: EntryDetails | undefined): Promise<SpendEntry> {
    v.assertId('holdId', holdId)
    assertAmount(amount)
    const e = v.options<EntryDetails>('entry', entry, entryKeys)
    const input: rules.CaptureInput = {
      holdId,
      amount,
      entryId: v.optionalEntryId('entry.id', e.id),
      peer: v.optionalText('entry.peer', e.peer),
      tool: v.optionalText('entry.tool', e.tool),
      reason: v.optionalText('entry.reason', e.reason),
      at: v.optionalTimestamp('entry.at', e.at),
    }
    const { entry: row } = await write((ctx) => rules.capture(ctx, input), await lockHint(holdId))
    return toEntry(row)
  }

  async function releaseWith(write: Writer['submit'], holdId: string): Promise<Hold> {
    v.assertId('holdId', holdId)
    return toHold(await write((ctx) => rules.release(ctx, holdId), await lockHint(holdId)))
  }

  /** `internal`: an id of spendguard's own parts (the x402 adapter's facts), which callers may not take. */
  function recordInput(taskId: string, params: RecordParameters, fact: boolean, internal = false): rules.RecordInput {
    v.assertId('taskId', taskId)
    const o = v.options<RecordParameters>('record parameters', params, recordKeys)
    assertAmount(o.amount)
    return {
      taskId,
      id: internal ? v.optionalId('id', o.id) : v.optionalEntryId('id', o.id),
      amount: o.amount as bigint,
      peer: v.optionalText('peer', o.peer),
      tool: v.optionalText('tool', o.tool),
      reason: v.optionalText('reason', o.reason),
      at: v.optionalTimestamp('at', o.at),
      fact,
    }
  }

  const guard: Guard = {
    async allocate(taskId, params) {
      v.assertId('taskId', taskId)
      const o = v.options<AllocateParameters>('allocate parameters', params, allocateKeys)
      assertTotal(o.total)
      v.assertAsset(o.asset)
      assertDecimals(o.decimals)
      const input: rules.AllocateInput = {
        taskId,
        total: o.total,
        asset: o.asset,
        decimals: o.decimals,
        thresholds: v.thresholds(o.thresholds ?? guardThresholds),
        hardLimit: o.hardLimit ?? guardHardLimit,
        metadata: v.metadata(o.metadata),
      }
      v.assertBoolean('hardLimit', input.hardLimit)
      return toBudget(await submit((ctx) => rules.allocate(ctx, input), taskId))
    },

    async check(taskId, amount) {
      assertAmount(amount)
      const b = await current(taskId)
      const { remaining } = rules.balance(b)
      if (b.closed) return { allowed: false, reason: 'closed', remaining }
      if (b.hardLimit && amount > remaining)
        return { allowed: false, reason: remaining === 0n ? 'exhausted' : 'exceeded', remaining }
      const risk = await assess('check', taskId, amount, {}, b)
      if (!risk.allow) return { allowed: false, reason: 'risk', detail: risk.reason, remaining }
      return { allowed: true, remaining }
    },

    async reserve(taskId, amount, options) {
      v.assertId('taskId', taskId)
      assertAmount(amount)
      const o = v.options<ReserveOptions>('reserve options', options, reserveKeys)
      const input: rules.ReserveInput = {
        taskId,
        amount,
        key: v.optionalId('key', o.key),
        ttlMs: v.optionalTtlMs(o.ttlMs),
        ref: v.optionalRef(o.ref),
      }
      return toHold((await reserveOnce(input)).hold)
    },

    capture: (holdId, amount, entry) => captureWith(submit, holdId, amount, entry),

    release: (holdId) => releaseWith(submit, holdId),

    async record(taskId, params) {
      const input = recordInput(taskId, params, false)
      // A retry of a recorded id returns the original entry whatever the assessor says now.
      const known =
        riskAssessor !== undefined &&
        input.id !== null &&
        (await store.db.selectFrom('entries').select('id').where('id', '=', input.id).executeTakeFirst())
      if (!known) {
        const risk = await assess('record', taskId, input.amount, input)
        if (!risk.allow) throw new RiskDeniedError({ taskId, requested: input.amount, reason: risk.reason })
      }
      return toEntry(await submit((ctx) => rules.record(ctx, input), taskId))
    },

    async close(taskId) {
      v.assertId('taskId', taskId)
      return submit((ctx) => rules.close(ctx, taskId), taskId)
    },

    async get(taskId) {
      return toBudget(await current(taskId))
    },

    async list(options) {
      const status = v.options<{ status: BudgetStatus }>('list options', options, { status: true }).status
      if (status !== undefined && !['active', 'exhausted', 'closed'].includes(status))
        throw new InvalidArgumentError({ argument: 'status', value: status, reason: 'active, exhausted or closed' })
      await expireHolds()
      let query = store.db.selectFrom('budgets').selectAll().orderBy('created_at').orderBy('task_id')
      if (status === 'closed') query = query.where('closed', '=', 1)
      if (status === 'active') query = query.where('closed', '=', 0).where('exhausted', '=', 0)
      if (status === 'exhausted') query = query.where('closed', '=', 0).where('exhausted', '=', 1)
      return (await query.execute()).map((raw) => toBudget(budgets.decode(raw)))
    },

    async entries(taskId) {
      await current(taskId)
      const rows = await store.db
        .selectFrom('entries')
        .selectAll()
        .where('task_id', '=', taskId)
        .orderBy('at')
        .orderBy('id')
        .execute()
      return rows.map((raw) => toEntry(entryCodec.decode(raw)))
    },

    async holds(taskId) {
      await current(taskId)
      const rows = await store.db
        .selectFrom('holds')
        .selectAll()
        .where('task_id', '=', taskId)
        .orderBy('created_at')
        .orderBy('id')
        .execute()
      return rows.map((raw) => toHold(holdCodec.decode(raw)))
    },

    async hold(holdId) {
      v.assertId('holdId', holdId)
      const raw = await store.db.selectFrom('holds').selectAll().where('id', '=', holdId).executeTakeFirst()
      if (!raw) throw new HoldNotFoundError({ holdId })
      const hold = holdCodec.decode(raw)
      // As of now: a hold past its time is expired first.
      if (hold.status === 'open' && hold.expiresAt !== null && hold.expiresAt <= clock()) {
        await current(hold.taskId)
        return guard.hold(holdId)
      }
      return toHold(hold)
    },

    async journal(options) {
      const o = v.options<{ taskId: string; afterSeq: bigint; limit: number }>('journal options', options, { taskId: true, afterSeq: true, limit: true })
      if (o.taskId !== undefined) v.assertId('taskId', o.taskId)
      if (o.afterSeq !== undefined && (typeof o.afterSeq !== 'bigint' || o.afterSeq < 0n || o.afterSeq > v.seqMax))
        throw new InvalidArgumentError({ argument: 'afterSeq', value: o.afterSeq, reason: 'a bigint in 0…2^63-1' })
      const limit = o.limit ?? 1000
      if (!Number.isInteger(limit) || limit < 1 || limit > 100_000)
        throw new InvalidArgumentError({ argument: 'limit', value: limit, reason: 'an integer in 1…100000' })
      let query = store.db.selectFrom('journal').selectAll().orderBy('seq').limit(limit)
      if (o.taskId !== undefined) query = query.where('task_id', '=', o.taskId)
      if (o.afterSeq !== undefined) query = query.where('seq', '>', o.afterSeq.toString())
      return (await query.execute()).map((raw) => toJournal(journalCodec.decodeWithSeq(raw)))
    },

    async verify() {
      await writer.drain()
      return verifyStore(store)
    },

    async setProgress(taskId, progress) {
      v.assertId('taskId', taskId)
      const value = v.progress(progress)
      return toBudget(await submit((ctx) => rules.setProgress(ctx, taskId, value), taskId))
    },

    async burnRate(taskId) {
      const b = await current(taskId)
      const elapsedMs = BigInt(Math.max(1, (b.closedAt ?? clock()) - b.createdAt))
      return (b.spent * 60_000n) / elapsedMs
    },

    async forecast(taskId) {
      const b = await current(taskId)
      if (b.progress === 0) return { projected: null, exceedsTotal: false }
      const f = toFraction(b.progress)
      const projected = (b.spent * f.denominator) / f.numerator
      return { projected, exceedsTotal: projected > b.total }
    },

    async pay(taskId, maxAmount, fn, options) {
      v.assertId('taskId', taskId)
      assertAmount(maxAmount)
      if (typeof fn !== 'function') throw new InvalidArgumentError({ argument: 'fn', value: fn, reason: 'a function' })
      const o = v.options<{ key: string; onchain: boolean }>('pay options', options, { key: true, onchain: true })
      const key = v.optionalId('key', o.key)
      if (o.onchain !== undefined && typeof o.onchain !== 'boolean')
        throw new InvalidArgumentError({ argument: 'onchain', value: o.onchain, reason: 'a boolean' })
      const onchain = o.onchain === true
      if (key === null) return underWay(payOnce(taskId, maxAmount, fn, null, onchain))
      const slot = `${taskId}\u0000${key}`
      for (let running = paying.get(slot); running; running = paying.get(slot)) {
        // The same payment: its entry, or its error. Other parameters: after it, the key's
        // hold answers (an idempotency conflict).
        if (running.maxAmount === maxAmount) return running.run
        await running.run.catch(() => {})
      }
      const run = underWay(payOnce(taskId, maxAmount, fn, key, onchain))
      paying.set(slot, { run, maxAmount })
      try {
        return await run
      } finally {
        if (paying.get(slot)?.run === run) paying.delete(slot)
      }
    },

    on(event, handler) {
      if (!['alert', 'exhausted', 'overspent', 'unreserved_spend'].includes(event))
        throw new InvalidArgumentError({ argument: 'event', value: event, reason: 'alert, exhausted, overspent or unreserved_spend' })
      if (typeof handler !== 'function')
        throw new InvalidArgumentError({ argument: 'handler', value: handler, reason: 'a function' })
      return dispatcher.on(event, handler)
    },

    expireHolds,
    flushAlerts: () => dispatcher.idle(),

    destroy() {
      destroying ??= (async () => {
        clearInterval(expiryTimer)
        // Sweeps under way (and one queued behind them) finish while the writer still takes them.
        while (expiryRunning || expiryNext) await (expiryNext ?? expiryRunning)?.catch(() => {})
        // Then new writes are refused, a payment that has not reserved yet included. A payment
        // whose function may already have moved money settles first: what it paid is recorded
        // (or its hold released) before the store closes, however long its function takes.
        writer.refuseNew()
        while (payments.size > 0) await Promise.allSettled([...payments])
        await writer.close()
        await dispatcher.close()
        await store.destroy()
        destroyed = true
      })()
      return destroying
    },

    internal: {
      store,
      clock,
      submit,
      writerStats: writer.stats,
      // Money that already left: taken also while destroy() waits for payments under way.
      recordFact: whileOpen(async (taskId, params) => {
        const input = recordInput(taskId, params, true, true)
        return toEntry(await settle((ctx) => rules.record(ctx, input), taskId))
      }),
      underWay,
      settleCapture: whileOpen((holdId, amount, entry) => captureWith(settle, holdId, amount, entry)),
      settleRelease: whileOpen((holdId) => releaseWith(settle, holdId)),
    },
  }
  /**
   * `fn`, refused with GuardDestroyedError once the store is closed, as every public call is
   * (a capture would first read the closed store).
   */
  function whileOpen<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
    return async (...args) => {
      if (destroyed) throw new GuardDestroyedError()
      return fn(...args)
    }
  }
  // While destroy() drains, writes are refused (the writer is closed) and reads still answer,
  // so that what was submitted before, and alert handlers delivered meanwhile, finish. Once it
  // has closed the store, every method refuses with GuardDestroyedError.
  let destroying: Promise<void> | undefined
  let destroyed = false
  for (const name of Object.keys(guard) as (keyof Guard)[]) {
    if (name === 'destroy' || name === 'internal') continue
    const method = guard[name] as (...args: unknown[]) => unknown
    ;(guard as Record<string, unknown>)[name] = (...args: unknown[]) => {
      if (!destroyed) return method.apply(guard, args)
      if (name === 'on') throw new GuardDestroyedError()
      return Promise.reject(new GuardDestroyedError())
    }
  }
  return guard
}

export function toBudget(b: BudgetRow): TaskBudget {
  const { remaining, overspent } = rules.balance(b)
  return {
    taskId: b.taskId,
    asset: b.asset,
    decimals: b.decimals,
    total: b.total,
    spent: b.spent,
    reserved: b.reserved,
    remaining,
    overspent,
    status: b.closed ? 'closed' : rules.isExhausted(b) ? 'exhausted' : 'active',
    progress: b.progress,
    thresholds: b.thresholds,
    hardLimit: b.hardLimit,
    metadata: b.metadata === null ? undefined : (JSON.parse(b.metadata) as Record<string, unknown>),
    createdAt: b.createdAt,
    updatedAt: b.updatedAt,
    closedAt: b.closedAt ?? undefined,
    entryCount: b.entryCount,
    openHolds: b.openHolds,
  }
}

export function toHold(h: HoldRow): Hold {
  return {
    id: h.id,
    ref: h.ref as `0x${string}`,
    taskId: h.taskId,
    amount: h.amount,
    status: h.status,
    key: h.key ?? undefined,
    expiresAt: h.expiresAt ?? undefined,
    createdAt: h.createdAt,
    settledAt: h.settledAt ?? undefined,
    capturedAmount: h.capturedAmount ?? undefined,
    entryId: h.entryId ?? undefined,
  }
}

export function toEntry(e: EntryRow): SpendEntry {
  return {
    id: e.id,
    taskId: e.taskId,
    holdId: e.holdId ?? undefined,
    amount: e.amount,
    peer: e.peer ?? undefined,
    tool: e.tool ?? undefined,
    reason: e.reason ?? undefined,
    at: e.at,
    source: e.source,
    chain: rules.positionOf(e) ?? undefined,
    reverted: e.source === 'onchain' ? e.reverted : undefined,
  }
}

export function toJournal(j: JournalRow): JournalEntry {
  let chain: JournalEntry['chain']
  if (j.chain !== null) {
    const raw = JSON.parse(j.chain) as Record<string, unknown>
    chain = { ...(raw as JournalEntry['chain'] & object), blockNumber: BigInt(raw.blockNumber as string) }
  }
  return {
    seq: j.seq,
    taskId: j.taskId,
    kind: j.kind,
    amount: j.amount ?? undefined,
    holdId: j.holdId ?? undefined,
    entryId: j.entryId ?? undefined,
    source: j.source,
    chain,
    after: { spent: j.spentAfter, reserved: j.reservedAfter },
    at: j.at,
  }
}
