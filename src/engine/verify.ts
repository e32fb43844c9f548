import { budgets, entries as entryCodec, holds as holdCodec, journal as journalCodec } from './store/codec.ts'
import type { Kysely } from 'kysely'
import type { Database } from './store/schema.ts'
import type { BudgetRow, Store } from './store/types.ts'

export type VerifyResult = { ok: boolean; problems: string[] }

type Replayed = {
  total: bigint
  spent: bigint
  reserved: bigint
  closed: boolean
  /** Holds by id: amount and whether the replay has them open. */
  holds: Map<string, { amount: bigint; state: 'open' | 'captured' | 'ended' }>
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
        s = { total: j.amount ?? 0n, spent: 0n, reserved: 0n, closed: false, holds: new Map() }
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
            if (j.holdId !== null) s.holds.set(j.holdId, { amount, state: 'open' })
            break
          case 'capture':
            if (!hold || hold.state !== 'open') report(`${where}: captures hold ${j.holdId} that is not open`)
            else {
              s.reserved -= hold.amount
              hold.state = 'captured'
            }
            s.spent += amount
            break
          case 'release':
          case 'expire':
            if (!hold || hold.state !== 'open' || hold.amount !== amount)
              report(`${where}: ends hold ${j.holdId} that is not open with amount ${amount}`)
            else hold.state = 'ended'
            s.reserved -= amount
            break
          case 'record':
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
  const openHolds = await groupHolds(db)
  const liveEntries = await groupEntries(db)
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

async function groupHolds(db: Kysely<Database>) {
  const out = new Map<string, { count: number; sum: bigint }>()
  const rows = await db.selectFrom('holds').selectAll().where('status', '=', 'open').execute()
  for (const raw of rows) {
    const h = holdCodec.decode(raw)
    const g = out.get(h.taskId) ?? { count: 0, sum: 0n }
    g.count++
    g.sum += h.amount
    out.set(h.taskId, g)
  }
  return out
}

async function groupEntries(db: Kysely<Database>) {
  const out = new Map<string, { count: number; sum: bigint }>()
  let afterId = ''
  for (;;) {
    const rows = await db
      .selectFrom('entries')
      .selectAll()
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(pageSize)
      .execute()
    for (const raw of rows) {
      const e = entryCodec.decode(raw)
      if (e.reverted) continue
      const g = out.get(e.taskId) ?? { count: 0, sum: 0n }
      g.count++
      g.sum += e.amount
      out.set(e.taskId, g)
    }
    if (rows.length < pageSize) return out
    afterId = (rows[rows.length - 1] as { id: string }).id
  }
}
