import { type BudgetChange, budgetChanges } from './codec.ts'
import { andThen } from './statements.ts'
import type { BudgetRow, HoldRow, StoreTx } from './types.ts'

const changed = Object.keys(budgetChanges) as BudgetChange[]

/**
 * Budgets and holds as one writer connection last committed or read them, kept across its
 * transactions. The store that owns it must call {@link RowCache.clear} whenever another
 * connection may have committed since (SQLite: `PRAGMA data_version` moved); it then serves
 * exactly what the database holds, without a primary-key read per operation.
 *
 * A transaction's own writes reach the cache only when it commits; a rollback leaves the
 * cache as it was. Rows go in as frozen copies and come out as they are: no caller can
 * change a cached row (strict-mode code that tries throws).
 */
export type RowCache = {
  clear(): void
  /** `tx`, reading budgets and holds through the cache; `commit()` after the database commits. */
  wrap(tx: StoreTx): { tx: StoreTx; commit(): void }
}

type View = {
  inner: StoreTx
  budgetsNow: Map<string, BudgetRow | null>
  holdsNow: Map<string, HoldRow | null>
  handle: { tx: StoreTx; commit(): void }
}

/** Rows kept, at most; past it the cache starts again empty. */
const rowsMax = 100_000

export function createRowCache(): RowCache {
  const budgets = new Map<string, BudgetRow>()
  const holds = new Map<string, HoldRow>()
  let view: View | undefined

  return {
    clear() {
      budgets.clear()
      holds.clear()
    },
    wrap(inner) {
      // One transaction runs at a time: the view over the store's one StoreTx is built once
      // and starts each transaction empty.
      if (view?.inner !== inner) view = createView(inner)
      view.budgetsNow.clear()
      view.holdsNow.clear()
      return view.handle
    },
  }

  function createView(inner: StoreTx): View {
    // This transaction's view: a row, or null where the cache no longer knows the row.
    const budgetsNow = new Map<string, BudgetRow | null>()
    const holdsNow = new Map<string, HoldRow | null>()
    const knownBudget = (taskId: string) => (budgetsNow.has(taskId) ? budgetsNow.get(taskId) : budgets.get(taskId))
    const knownHold = (id: string) => (holdsNow.has(id) ? holdsNow.get(id) : holds.get(id))

    const tx: StoreTx = {
      ...inner,
      budget(taskId) {
        const row = knownBudget(taskId)
        if (row) return row
        return andThen(inner.budget(taskId), (read) => {
          if (read) budgetsNow.set(taskId, Object.freeze({ ...read }))
          return read
        })
      },
      insertBudget(row) {
        return andThen(inner.insertBudget(row), () => {
          budgetsNow.set(row.taskId, Object.freeze({ ...row }))
        })
      },
      updateBudget(row) {
        return andThen(inner.updateBudget(row), () => {
          // Exactly the fields the statement writes; the rest stay as read.
          const was = knownBudget(row.taskId)
          if (!was) {
            budgetsNow.set(row.taskId, null)
            return
          }
          const now: Record<string, unknown> = { ...was }
          for (const key of changed) now[key] = row[key]
          budgetsNow.set(row.taskId, Object.freeze(now as BudgetRow))
        })
      },
      hold(id) {
        const row = knownHold(id)
        if (row) return row
        return andThen(inner.hold(id), (read) => {
          if (read) holdsNow.set(id, Object.freeze({ ...read }))
          return read
        })
      },
      insertHold(row) {
        return andThen(inner.insertHold(row), () => {
          holdsNow.set(row.id, Object.freeze({ ...row }))
        })
      },
      // A settled or reopened hold is read again from the database the next time.
      settleHold(row) {
        holdsNow.set(row.id, null)
        return inner.settleHold(row)
      },
      reopenHold(id) {
        holdsNow.set(id, null)
        return inner.reopenHold(id)
      },
    }

    const handle = {
      tx,
      commit() {
        if (budgets.size + holds.size + budgetsNow.size + holdsNow.size > rowsMax) {
          budgets.clear()
          holds.clear()
        }
        for (const [taskId, row] of budgetsNow) row ? budgets.set(taskId, row) : budgets.delete(taskId)
        for (const [id, row] of holdsNow) row ? holds.set(id, row) : holds.delete(id)
      },
    }
    return { inner, budgetsNow, holdsNow, handle }
  }
}
