import type { Kysely } from 'kysely'
import * as codec from './codec.ts'
import type { Database } from './schema.ts'
import type { ChainReads } from './types.ts'

/** The tracker's reads, through kysely, the same for both dialects. */
export function createChainReads(db: Kysely<Database>): ChainReads {
  return {
    async status(chainId, hook) {
      const rows = await db
        .selectFrom('chain_logs')
        .select(['disposition', 'confirmed', (eb) => eb.fn.countAll<number | string>().as('n')])
        .where('chain_id', '=', chainId)
        .where('hook', '=', hook)
        .groupBy(['disposition', 'confirmed'])
        .execute()
      const out = { confirmed: 0, unconfirmed: 0, unbound: 0, foreign: 0 }
      const entries = await db
        .selectFrom('entries')
        .select(['confirmed', (eb) => eb.fn.countAll<number | string>().as('n')])
        .where('chain_id', '=', chainId)
        .where('hook', '=', hook)
        .where('reverted', '=', 0)
        .groupBy('confirmed')
        .execute()
      for (const r of entries) {
        if (Number(r.confirmed) === 1) out.confirmed += Number(r.n)
        else out.unconfirmed += Number(r.n)
      }
      for (const r of rows) {
        const n = Number(r.n)
        if (Number(r.confirmed) === 1) out.confirmed += n
        else out.unconfirmed += n
        if (r.disposition === 'unbound') out.unbound += n
        if (r.disposition === 'foreign') out.foreign += n
      }
      return out
    },
    async unassigned(chainId, hook, limit) {
      const rows = await db
        .selectFrom('chain_logs')
        .selectAll()
        .where('chain_id', '=', chainId)
        .where('hook', '=', hook)
        .where('disposition', 'in', ['unbound', 'foreign'])
        .orderBy('block_number', 'desc')
        .orderBy('log_index', 'desc')
        .limit(limit)
        .execute()
      return rows.map(codec.chainLogs.decode)
    },
    async bindings(chainId, hook) {
      const rows = await db
        .selectFrom('bindings')
        .selectAll()
        .where('chain_id', '=', chainId)
        .where('hook', '=', hook)
        .orderBy('account')
        .orderBy('sender')
        .execute()
      return rows.map(codec.bindings.decode)
    },
    async blocks(chainId, hook, fromNumber) {
      const rows = await db
        .selectFrom('chain_blocks')
        .selectAll()
        .where('chain_id', '=', chainId)
        .where('hook', '=', hook)
        .where('number', '>=', fromNumber.toString())
        .orderBy('number', 'desc')
        .execute()
      return rows.map(codec.chainBlocks.decode)
    },
    async cursor(chainId, hook) {
      const row = await db
        .selectFrom('chain_cursors')
        .selectAll()
        .where('chain_id', '=', chainId)
        .where('hook', '=', hook)
        .executeTakeFirst()
      return row === undefined ? undefined : codec.chainCursors.decode(row)
    },
  }
}
