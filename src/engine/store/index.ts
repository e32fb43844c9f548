import { InvalidArgumentError } from '../errors.ts'
import type { Store } from './types.ts'

export type { Store, StoreDialect, StoreTx } from './types.ts'

/** The store used when neither `db` nor `SPENDGUARD_DB` names one. */
export const defaultDbUrl = 'sqlite:./spendguard.db'

/**
 * Opens the store a URL names and brings its schema to the latest migration:
 * `sqlite:./path.db` (optionally `?synchronous=NORMAL`) or `postgres://user@host:port/db`.
 * `lostCommitWaitMs` applies to PostgreSQL (a SQLite commit's answer cannot be lost).
 */
export async function openStore(url: string, options: { lostCommitWaitMs?: number | undefined } = {}): Promise<Store> {
  if (typeof url !== 'string' || url.length === 0)
    throw new InvalidArgumentError({ argument: 'db', value: url, reason: 'a store URL such as sqlite:./spendguard.db' })
  if (url.startsWith('sqlite:')) {
    const [path = '', query = ''] = url.slice('sqlite:'.length).split('?')
    if (path === '' || path === ':memory:')
      throw new InvalidArgumentError({ argument: 'db', value: url, reason: 'a file path (several connections share it)' })
    const params = new URLSearchParams(query)
    const synchronous = (params.get('synchronous') ?? 'FULL').toUpperCase()
    if (!['FULL', 'NORMAL', 'EXTRA', 'OFF'].includes(synchronous))
      throw new InvalidArgumentError({ argument: 'synchronous', value: synchronous, reason: 'FULL, EXTRA, NORMAL or OFF' })
    const { createSqliteStore } = await import('./sqlite.ts')
    return createSqliteStore({
      path: path.startsWith('//') ? path.slice(2) : path,
      synchronous: synchronous as 'FULL',
    })
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const { createPostgresStore } = await import('./postgres.ts')
    return createPostgresStore({ connectionString: url, lostCommitWaitMs: options.lostCommitWaitMs })
  }
  throw new InvalidArgumentError({ argument: 'db', value: url, reason: 'sqlite:PATH or postgres://…' })
}
