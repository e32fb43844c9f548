import { randomBytes } from 'node:crypto'
import { mkdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'

/**
 * The stores every ledger test runs against. SQLite always; PostgreSQL when the test
 * runner started a server and passed its URL in SPENDGUARD_TEST_PG_URL.
 */
export type StoreTarget = {
  name: 'sqlite' | 'postgres'
  /** A fresh, empty database; `cleanup` removes it. */
  fresh(): Promise<{ url: string; cleanup(): Promise<void> }>
}

const pgUrl = process.env.SPENDGUARD_TEST_PG_URL

export const sqliteTarget: StoreTarget = {
  name: 'sqlite',
  async fresh() {
    const dir = join(tmpdir(), 'spendguard-test')
    mkdirSync(dir, { recursive: true })
    const path = join(dir, `${randomBytes(8).toString('hex')}.db`)
    return {
      url: `sqlite:${path}`,
      async cleanup() {
        for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true })
      },
    }
  },
}

export const postgresTarget: StoreTarget = {
  name: 'postgres',
  async fresh() {
    if (!pgUrl) throw new Error('SPENDGUARD_TEST_PG_URL is not set')
    // A schema per test: isolated like a database, created in milliseconds.
    const schema = `t_${randomBytes(6).toString('hex')}`
    const admin = new pg.Client({ connectionString: pgUrl })
    await admin.connect()
    await admin.query(`create schema ${schema}`)
    await admin.end()
    const url = new URL(pgUrl)
    url.searchParams.set('options', `-c search_path=${schema}`)
    return {
      url: url.toString(),
      async cleanup() {
        const client = new pg.Client({ connectionString: pgUrl })
        await client.connect()
        await client.query(`drop schema ${schema} cascade`)
        await client.end()
      },
    }
  },
}

/** The stores to run a ledger suite against: SQLite, and PostgreSQL when a server is up. */
export const storeTargets: StoreTarget[] = pgUrl ? [sqliteTarget, postgresTarget] : [sqliteTarget]
