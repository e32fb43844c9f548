import Database from 'better-sqlite3'
import pg from 'pg'
import { describe, expect, test } from 'vitest'
import { createGuard } from '../src/index.ts'
import { statements } from '../src/engine/store/statements.ts'
import { sqliteTarget, storeTargets } from './helpers/stores.ts'

/** Index names of a freshly migrated database, whichever the store. */
async function indexNames(url: string): Promise<string[]> {
  if (url.startsWith('sqlite:')) {
    const db = new Database(url.slice('sqlite:'.length), { readonly: true })
    try {
      return (db.prepare("select name from sqlite_master where type = 'index'").all() as { name: string }[]).map((r) => r.name)
    } finally {
      db.close()
    }
  }
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ indexname: string }>('select indexname from pg_indexes where schemaname = current_schema()')
    return rows.map((r) => r.indexname)
  } finally {
    await client.end()
  }
}

describe.each(storeTargets)('store schema ($name)', (target) => {
  test('behavior: opening a database runs every migration, the unconfirmed-row indexes among them', async () => {
    const { url, cleanup } = await target.fresh()
    try {
      const guard = await createGuard({ db: url })
      await guard.destroy()
      const names = await indexNames(url)
      expect(names).toEqual(expect.arrayContaining(['entries_chain', 'entries_unconfirmed', 'chain_logs_unconfirmed']))
    } finally {
      await cleanup()
    }
  })
})

describe('store query plans (sqlite)', () => {
  test('behavior: confirming on-chain rows searches only the unconfirmed ones, not every entry of the hook', async () => {
    const { url, cleanup } = await sqliteTarget.fresh()
    try {
      const guard = await createGuard({ db: url })
      await guard.destroy()
      const db = new Database(url.slice('sqlite:'.length), { readonly: true })
      try {
        const q = statements('sqlite')
        const plan = (text: string) =>
          (db.prepare(`explain query plan ${text}`).all(31337, '0xhook', '100') as { detail: string }[]).map((r) => r.detail).join('\n')
        expect(plan(q.confirmEntriesUpTo)).toMatch(/USING INDEX entries_unconfirmed /)
        expect(plan(q.confirmLogsUpTo)).toMatch(/USING INDEX chain_logs_unconfirmed /)
      } finally {
        db.close()
      }
    } finally {
      await cleanup()
    }
  })
})
