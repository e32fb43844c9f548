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
    async loggedBlock(chainId, hook, atMost) {
      // Each through its position index; reverted entries name blocks a reorg removed.
      const entry = await db
        .selectFrom('entries')
        .select(['block_number', 'block_hash'])
        .where('chain_id', '=', chainId)
        .where('hook', '=', hook)
        .where('chain_id', 'is not', null)
        .where('block_number', '<=', atMost.toString())
        .where('reverted', '=', 0)
        .orderBy('block_number', 'desc')
        .limit(1)
        .executeTakeFirst()
      const kept = await db
        .selectFrom('chain_logs')
        .select(['block_number', 'block_hash'])
        .where('chain_id', '=', chainId)
        .where('hook', '=', hook)
        .where('block_number', '<=', atMost.toString())
        .orderBy('block_number', 'desc')
        .limit(1)
        .executeTakeFirst()
      const found = [entry, kept]
        .filter((row) => row?.block_number != null && row.block_hash != null)
        .map((row) => ({ number: BigInt(row?.block_number as string | number), hash: row?.block_hash as string }))
      return found.sort((a, b) => (a.number > b.number ? -1 : a.number < b.number ? 1 : 0))[0]
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
