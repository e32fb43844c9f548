import { budgets, entries as entryCodec, holds as holdCodec, journal as journalCodec } from './store/codec.ts'
import type { Kysely, Selectable } from 'kysely'
import type { Database } from './store/schema.ts'
import type { BudgetRow, Store } from './store/types.ts'

export type VerifyResult = { ok: boolean; problems: string[] }

type Replayed = {
  total: bigint
  spent: bigint
  reserved: bigint
  closed: boolean
  /** Holds by id: amount, how the replay leaves them, and what a capture spent. */
  holds: Map<string, ReplayedHold>
  /** Spends recorded without a hold, by entry id: their amounts. */
  records: Map<string, bigint>
}

/** `ended`: released or expired by a reversal of its capture, which the journal does not tell apart. */
type ReplayedHold = {
  amount: bigint
  state: 'open' | 'captured' | 'released' | 'expired' | 'ended'
  captured: bigint | null
  /** The entry its capture wrote. */
  entryId: string | null
}

const pageSize = 10_000
const problemsMax = 1_000

/**
 * Recomputes every budget from the journal alone and compares the result with the
 * journal's own `after` columns, the budgets, the holds and the entries, all read from one
 * snapshot: writes committing meanwhile (in any process) are either all in it or all out.
 */
export function verifyStore(store: Store): Promise<VerifyResult> {
  return store.snapshot(verifySnapshot)
}

async function verifySnapshot(db: Kysely<Database>): Promise<VerifyResult> {
  const problems: string[] = []
  const report = (line: string) => {
    if (problems.length < problemsMax) problems.push(line)
  }
  const replay = new Map<string, Replayed>()

  let afterSeq = -1n
  let lastSeq = -1n
  for (;;) {
    const page = await db
      .selectFrom('journal')
      .selectAll()
      .where('seq', '>', afterSeq.toString())
      .orderBy('seq')
      .limit(pageSize)
      .execute()
    for (const raw of page) {
      const j = journalCodec.decodeWithSeq(raw)
      if (j.seq <= lastSeq) report(`journal: seq ${j.seq} after ${lastSeq} is not increasing`)
      lastSeq = j.seq
      const where = `journal #${j.seq} (${j.kind} on ${j.taskId})`
      let s = replay.get(j.taskId)
      if (j.kind === 'allocate') {
        if (s) report(`${where}: allocated twice`)
        s = { total: j.amount ?? 0n, spent: 0n, reserved: 0n, closed: false, holds: new Map(), records: new Map() }
        replay.set(j.taskId, s)
      } else if (!s) {
        report(`${where}: no allocation before it`)
        continue
      } else {
        const amount = j.amount ?? 0n
        const hold = j.holdId === null ? undefined : s.holds.get(j.holdId)
        switch (j.kind) {
          case 'reserve':
            if (j.holdId === null || hold) report(`${where}: hold missing or reserved twice`)
            s.reserved += amount
            if (j.holdId !== null) s.holds.set(j.holdId, { amount, state: 'open', captured: null, entryId: null })
            break
          case 'capture':
            if (!hold || hold.state !== 'open') report(`${where}: captures hold ${j.holdId} that is not open`)
            else {
              s.reserved -= hold.amount
              hold.state = 'captured'
              hold.captured = amount
              hold.entryId = j.entryId
            }
            s.spent += amount
            break
          case 'release':
          case 'expire':
            if (!hold || hold.state !== 'open' || hold.amount !== amount)
              report(`${where}: ends hold ${j.holdId} that is not open with amount ${amount}`)
            else hold.state = j.kind === 'release' ? 'released' : 'expired'
            s.reserved -= amount
            break
          case 'record':
            if (j.entryId !== null) s.records.set(j.entryId, amount)
            s.spent += amount
            break
          case 'reconcile':
            s.spent += amount
            break
          case 'revert':
            s.spent -= amount
            if (hold) {
              if (hold.state !== 'captured') report(`${where}: reverts hold ${j.holdId} that was not captured`)
              // The hold opens again, or ends if its time or budget is over.
              const reopened = j.reservedAfter === s.reserved + hold.amount
              if (reopened) s.reserved += hold.amount
              hold.state = reopened ? 'open' : 'ended'
              hold.captured = null
              hold.entryId = null
            }
            break
          case 'close':
            s.closed = true
            break
          case 'progress':
            break
          default:
            report(`${where}: unknown kind`)
        }
      }
      if (s.spent !== j.spentAfter || s.reserved !== j.reservedAfter)
        report(
          `${where}: replay gives spent ${s.spent}, reserved ${s.reserved}; journal says spent ${j.spentAfter}, reserved ${j.reservedAfter}`,
        )
    }
    if (page.length < pageSize) break
    afterSeq = lastSeq
  }

  const rows = (await db.selectFrom('budgets').selectAll().execute()).map((raw) => budgets.decode(raw))
  const openHolds = await groupHolds(db, replay, report)
  const liveEntries = await groupEntries(db, replay, report)
  for (const b of rows) checkBudget(b, replay.get(b.taskId), openHolds.get(b.taskId), liveEntries.get(b.taskId), report)
  const known = new Set(rows.map((b) => b.taskId))
  for (const taskId of replay.keys()) if (!known.has(taskId)) report(`${taskId}: in the journal but has no budget`)
  return { ok: problems.length === 0, problems }
}

function checkBudget(
  b: BudgetRow,
  r: Replayed | undefined,
  holds: { count: number; sum: bigint } | undefined,
  entries: { count: number; sum: bigint } | undefined,
  report: (line: string) => void,
): void {
  const t = b.taskId
  if (!r) return report(`${t}: budget has no allocation in the journal`)
  if (r.total !== b.total) report(`${t}: total ${b.total}, journal allocated ${r.total}`)
  if (r.spent !== b.spent) report(`${t}: spent ${b.spent}, journal replay gives ${r.spent}`)
  if (r.reserved !== b.reserved) report(`${t}: reserved ${b.reserved}, journal replay gives ${r.reserved}`)
  if (r.closed !== b.closed) report(`${t}: closed is ${b.closed}, journal says ${r.closed}`)
  const openCount = holds?.count ?? 0
  const openSum = holds?.sum ?? 0n
  if (openCount !== b.openHolds) report(`${t}: openHolds ${b.openHolds}, holds table has ${openCount} open`)
  if (openSum !== b.reserved) report(`${t}: reserved ${b.reserved}, open holds add up to ${openSum}`)
  const replayOpen = [...r.holds.values()].filter((h) => h.state === 'open')
  if (replayOpen.length !== openCount) report(`${t}: journal leaves ${replayOpen.length} holds open, table ${openCount}`)
  const entryCount = entries?.count ?? 0
  const entrySum = entries?.sum ?? 0n
  if (entryCount !== b.entryCount) report(`${t}: entryCount ${b.entryCount}, entries table has ${entryCount} live`)
  if (entrySum !== b.spent) report(`${t}: spent ${b.spent}, live entries add up to ${entrySum}`)
  if (b.spent < 0n || b.reserved < 0n) report(`${t}: negative balance`)
}

/**
 * Every hold, paged by id: each must be the journal's, in the state and with the amounts the
 * replay leaves it in. Resolves with the open ones' count and sum per task.
 */
async function groupHolds(db: Kysely<Database>, replay: Map<string, Replayed>, report: (line: string) => void) {
  const out = new Map<string, { count: number; sum: bigint }>()
  let seen = 0
  await paged(db, 'holds', (raw) => {
    const h = holdCodec.decode(raw)
    const r = replay.get(h.taskId)?.holds.get(h.id)
    seen++
    if (!r) return report(`hold ${h.id} (${h.taskId}): not reserved in the journal`)
    const status = r.state === 'ended' ? (h.status === 'released' || h.status === 'expired' ? h.status : 'released or expired') : r.state
    if (h.status !== status) report(`hold ${h.id} (${h.taskId}): ${h.status}, the journal leaves it ${status}`)
    if (h.amount !== r.amount) report(`hold ${h.id} (${h.taskId}): amount ${h.amount}, the journal reserved ${r.amount}`)
    if (r.state === 'captured' && h.capturedAmount !== r.captured)
      report(`hold ${h.id} (${h.taskId}): captured ${h.capturedAmount}, the journal captured ${r.captured}`)
    if (h.status !== 'open') return
    const g = out.get(h.taskId) ?? { count: 0, sum: 0n }
    g.count++
    g.sum += h.amount
    out.set(h.taskId, g)
  })
  let reserved = 0
  for (const s of replay.values()) reserved += s.holds.size
  if (seen !== reserved) report(`holds: the table has ${seen}, the journal reserved ${reserved}`)
  return out
}

/**
 * Every entry, paged by id: a capture's must spend what the journal captured of its hold, a
 * record's what the journal recorded. Resolves with the live ones' count and sum per task.
 */
async function groupEntries(db: Kysely<Database>, replay: Map<string, Replayed>, report: (line: string) => void) {
  const out = new Map<string, { count: number; sum: bigint }>()
  /** Live on-chain entries that paid for a hold they did not capture, by hold. */
  const paying = new Map<string, string>()
  await paged(db, 'entries', (raw) => {
    const e = entryCodec.decode(raw)
    if (e.reverted) return
    const r = replay.get(e.taskId)
    const hold = e.holdId === null ? undefined : r?.holds.get(e.holdId)
    // An on-chain entry may name a hold it did not capture (it paid for the hold after it had
    // ended or been settled off the chain): a `reconcile` row journaled its amount, in a sum.
    const capture = e.holdId !== null && (e.source === 'offchain' || hold?.entryId === e.id)
    if (e.holdId !== null && !hold) report(`entry ${e.id} (${e.taskId}): names hold ${e.holdId}, which the journal never reserved`)
    else if (e.holdId !== null && !capture) {
      // An on-chain payment of a hold that had ended or was settled: never of an open hold, and
      // one log at most is a hold's payment.
      if (hold?.state === 'open') report(`entry ${e.id} (${e.taskId}): pays hold ${e.holdId}, which the journal leaves open`)
      if (paying.has(e.holdId)) report(`entry ${e.id} (${e.taskId}): pays hold ${e.holdId}, as entry ${paying.get(e.holdId)} does`)
      paying.set(e.holdId, e.id)
    } else if (capture || e.source === 'offchain') {
      const journaled = capture ? (hold?.entryId === e.id ? hold.captured : undefined) : r?.records.get(e.id)
      if (journaled === undefined || journaled === null) report(`entry ${e.id} (${e.taskId}): no ${capture ? 'capture' : 'record'} of it in the journal`)
      else if (journaled !== e.amount) report(`entry ${e.id} (${e.taskId}): amount ${e.amount}, the journal says ${journaled}`)
    }
    const g = out.get(e.taskId) ?? { count: 0, sum: 0n }
    g.count++
    g.sum += e.amount
    out.set(e.taskId, g)
  })
  return out
}

/** Calls `row` with every row of `table`, read in pages in the order of its primary key `id`. */
async function paged<T extends 'holds' | 'entries'>(db: Kysely<Database>, table: T, row: (raw: Selectable<Database[T]>) => void): Promise<void> {
  let afterId = ''
  for (;;) {
    const rows = (await db
      .selectFrom(table as 'holds' | 'entries')
      .selectAll()
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(pageSize)
      .execute()) as Selectable<Database[T]>[]
    for (const raw of rows) row(raw)
    if (rows.length < pageSize) return
    afterId = (rows[rows.length - 1] as { id: string }).id
  }
}
