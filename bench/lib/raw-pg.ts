import pg from 'pg'
import { holdSig, holdRef, rowId, settleSig } from './ids.ts'
import { type PairsJob, type PairsResult, runPairs } from './pairs.ts'

/**
 * The raw PostgreSQL baseline: `pg` alone, one connection per caller, named prepared
 * statements, on spendguard's schema, one reserve → capture as two transactions:
 *
 *   reserve: conditional budget update (… where total - spent - reserved >= amount
 *            returning spent, reserved), hold insert, journal insert
 *   capture: hold update (… where status = 'open'), budget update, entry insert,
 *            journal insert
 */
export type RawPg = {
  run(job: Omit<PairsJob, 'callers'>): Promise<PairsResult>
  close(): Promise<void>
}

const q = {
  reserveBudget: {
    name: 'b_reserve',
    text:
      'update budgets set reserved = reserved + $1, open_holds = open_holds + 1, updated_at = $2 ' +
      'where task_id = $3 and total - spent - reserved >= $1 returning spent, reserved',
  },
  insertHold: {
    name: 'b_hold',
    text:
      'insert into holds (id, task_id, ref, key, amount, status, expires_at, created_at, settled_at, captured_amount, entry_id, settle_sig, sig) ' +
      "values ($1, $2, $3, null, $4, 'open', null, $5, null, null, null, null, $6)",
  },
  insertJournal: {
    name: 'b_journal',
    text:
      'insert into journal (task_id, kind, amount, hold_id, entry_id, source, chain, spent_after, reserved_after, at) ' +
      "values ($1, $2, $3, $4, $5, 'offchain', null, $6, $7, $8)",
  },
  settleHold: {
    name: 'b_settle',
    text: "update holds set status = 'captured', settled_at = $1, captured_amount = $2, entry_id = $3, settle_sig = $4 where id = $5 and status = 'open'",
  },
  captureBudget: {
    name: 'b_capture',
    text:
      'update budgets set spent = spent + $1, reserved = reserved - $2, open_holds = open_holds - 1, entry_count = entry_count + 1, updated_at = $3 ' +
      'where task_id = $4 returning spent, reserved',
  },
  insertEntry: {
    name: 'b_entry',
    text:
      'insert into entries (id, task_id, hold_id, amount, peer, tool, reason, at, source, chain_id, block_number, block_hash, tx_hash, log_index, confirmed, reverted, sig) ' +
      "values ($1, $2, $3, $4, null, null, null, $5, 'offchain', null, null, null, null, null, 0, 0, $6)",
  },
}

export async function openRawPg({ url, connections }: { url: string; connections: number }): Promise<RawPg> {
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const client = new pg.Client({ connectionString: url })
      client.on('error', () => {})
      await client.connect()
      return client
    }),
  )
  const tx = async (client: pg.Client, body: () => Promise<void>) => {
    await client.query('begin')
    try {
      await body()
      await client.query('commit')
    } catch (error) {
      await client.query('rollback').catch(() => {})
      throw error
    }
  }
  return {
    async run(job) {
      const reserve = job.reserveAmount.toString()
      const capture = job.captureAmount.toString()
      return runPairs({ ...job, callers: connections }, async (taskId, onReserved, caller) => {
        const client = clients[caller] as pg.Client
        const holdId = rowId('hold')
        await tx(client, async () => {
          const now = Date.now()
          const { rows } = await client.query({ ...q.reserveBudget, values: [reserve, now, taskId] })
          const after = rows[0] as { spent: string; reserved: string } | undefined
          if (!after) throw new Error(`raw baseline: budget ${taskId} denied a reserve`)
          await client.query({ ...q.insertHold, values: [holdId, taskId, holdRef(), reserve, now, holdSig(job.reserveAmount)] })
          await client.query({ ...q.insertJournal, values: [taskId, 'reserve', reserve, holdId, null, after.spent, after.reserved, now] })
        })
        onReserved()
        await tx(client, async () => {
          const now = Date.now()
          const entryId = rowId('entry')
          const settled = await client.query({ ...q.settleHold, values: [now, capture, entryId, settleSig(job.captureAmount), holdId] })
          if (settled.rowCount !== 1) throw new Error('raw baseline: hold not open')
          const { rows } = await client.query({ ...q.captureBudget, values: [capture, reserve, now, taskId] })
          const after = rows[0] as { spent: string; reserved: string }
          await client.query({ ...q.insertEntry, values: [entryId, taskId, holdId, capture, now, settleSig(job.captureAmount)] })
          await client.query({ ...q.insertJournal, values: [taskId, 'capture', capture, holdId, entryId, after.spent, after.reserved, now] })
        })
      })
    },
    async close() {
      await Promise.all(clients.map((c) => c.end().catch(() => {})))
    },
  }
}
