import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import PQueue from 'p-queue'
import { type Address, type EIP1193RequestFn, type PublicClient, createPublicClient, custom, http, numberToHex } from 'viem'
import { bindAccount, createGuard, createTracker, spendRecordedTopic, spendingHookAbi } from '../../src/index.ts'
import { entries as entryCodec } from '../../src/engine/store/codec.ts'
import type { EntryRow } from '../../src/engine/store/types.ts'
import { type RpcLog, type SpendLog, decodeSpendLog } from '../../src/onchain/decode.ts'
import * as reconcile from '../../src/onchain/reconcile.ts'
import { sized } from '../lib/config.ts'
import { type ChainFixture, createChainFixture } from '../lib/chain.ts'
import { removeSqlite, sqlitePath } from '../lib/files.ts'
import { checkLedger } from '../lib/ledger-check.ts'
import { type Row, compare, correctness, mib, rate } from '../lib/report.ts'
import { startWorker } from '../lib/workers.ts'

/**
 * D (ingest) and F (memory) share one anvil and one deployed stack: logs are created as
 * needed, 100 SpendRecorded logs per transaction, and each measurement takes the newest
 * N logs (fromBlock = the first block of those).
 */
export type ChainSections = { ingest(): Promise<Row[]>; memory(): Promise<Row[]>; stop(): Promise<void> }

/** The tracker's default: getLogs requests in flight. The baselines use the same. */
const rpcConcurrency = 4
const reorgDepthMax = 4
const confirmations = 4

type Page = { from: bigint; to: bigint }

export async function createChainSections(): Promise<ChainSections> {
  const fixture = await createChainFixture({ transfersPerTx: 100 })
  return {
    ingest: () => sectionD(fixture),
    memory: () => sectionF(fixture),
    stop: () => fixture.stop(),
  }
}

/**
 * The client the tracker builds for an RPC URL (http, no transport retries, 10 s timeout),
 * wrapped to note each eth_getLogs range it asked for and whether the answer came back (a
 * request by block hash counts as that one block): the baselines replay exactly the ranges
 * that returned logs.
 */
function recordingClient(rpcUrl: string, ranges: (Page & { ok: boolean })[]): PublicClient {
  const inner = http(rpcUrl, { retryCount: 0, timeout: 10_000 })({ retryCount: 0 })
  const request = inner.request as unknown as (args: { method: string; params?: unknown }) => Promise<unknown>
  const transport = custom(
    {
      async request({ method, params }: { method: string; params?: unknown }) {
        if (method !== 'eth_getLogs') return request({ method, params })
        const [filter] = params as [{ fromBlock?: `0x${string}`; toBlock?: `0x${string}`; blockHash?: `0x${string}` }]
        if (filter.blockHash !== undefined) {
          // The unfinalized blocks are read one by one, by hash: noted as a one-block range.
          const result = (await request({ method, params })) as { blockNumber: `0x${string}` }[]
          const first = result[0]
          if (first) ranges.push({ from: BigInt(first.blockNumber), to: BigInt(first.blockNumber), ok: true })
          return result
        }
        const range = { from: BigInt(filter.fromBlock as string), to: BigInt(filter.toBlock as string) }
        try {
          const result = await request({ method, params })
          ranges.push({ ...range, ok: true })
          return result
        } catch (error) {
          ranges.push({ ...range, ok: false })
          throw error
        }
      },
    } as { request: EIP1193RequestFn },
    { retryCount: 0 },
  )
  return createPublicClient({ transport }) as PublicClient
}

/** One tracker backfill, end to end, into a fresh SQLite ledger. */
async function trackerRun(fixture: ChainFixture, fromBlock: bigint, name: string) {
  const path = sqlitePath(name)
  const { stack } = fixture
  const ranges: (Page & { ok: boolean })[] = []
  const client = recordingClient(fixture.anvil.rpcUrl, ranges)
  const t0 = performance.now()
  const guard = await createGuard({ db: `sqlite:${path}`, expirySweepMs: 3_600_000 })
  try {
    await guard.allocate('agent', { total: 10n ** 30n, asset: 'tUSD', decimals: 6 })
    const tracker = createTracker({ guard, client, chainId: stack.chainId, hook: stack.hook, fromBlock, reorgDepthMax, confirmations })
    await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
    const result = await tracker.syncOnce()
    const elapsedMs = performance.now() - t0
    const pages = ranges.filter((r) => r.ok).sort((a, b) => (a.from < b.from ? -1 : 1))
    const refused = ranges.filter((r) => !r.ok).length
    const budget = await guard.get('agent')
    return { result, elapsedMs, pages, refused, guard, path, budget }
  } catch (error) {
    await guard.destroy()
    throw error
  }
}

/** One eth_getLogs request by plain fetch + JSON.parse. */
async function fetchLogs(rpcUrl: string, hook: Address, p: Page, id: number): Promise<unknown[]> {
  const response = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id,
      method: 'eth_getLogs',
      params: [{ address: hook, topics: [spendRecordedTopic], fromBlock: numberToHex(p.from), toBlock: numberToHex(p.to) }],
    }),
  })
  const body = JSON.parse(await response.text()) as { result?: unknown[]; error?: unknown }
  if (!body.result) throw new Error(`eth_getLogs failed: ${JSON.stringify(body.error)}`)
  return body.result
}

/** Plain fetch + JSON.parse of eth_getLogs over the pages, `rpcConcurrency` in flight. */
async function rawGetLogs(rpcUrl: string, hook: Address, pages: Page[]) {
  const queue = new PQueue({ concurrency: rpcConcurrency })
  const t0 = performance.now()
  let id = 0
  const counts = await Promise.all(
    pages.map((p) => queue.add(async () => (await fetchLogs(rpcUrl, hook, p, ++id)).length) as Promise<number>),
  )
  return { logs: counts.reduce((s, n) => s + n, 0), elapsedMs: performance.now() - t0 }
}

/**
 * SQLite's share of D alone: raw better-sqlite3 inserting the entry rows the tracker
 * writes for the same logs (the engine's own row encoding, multi-row statements of 64
 * rows, one transaction per tracker page, WAL, synchronous=FULL) into a fresh file of
 * spendguard's schema. The logs are fetched and the rows built before the clock starts.
 */
async function rawEntryInserts(fixture: ChainFixture, pages: Page[], name: string) {
  const { anvil, stack } = fixture
  const path = sqlitePath(name)
  const guard = await createGuard({ db: `sqlite:${path}`, expirySweepMs: 3_600_000 })
  await guard.allocate('agent', { total: 10n ** 30n, asset: 'tUSD', decimals: 6 })
  await guard.destroy()
  const hook = stack.hook.toLowerCase()
  const now = Date.now()
  const batches: (string | number | null)[][][] = []
  for (const [i, p] of pages.entries()) {
    const rows: (string | number | null)[][] = []
    for (const raw of await fetchLogs(anvil.rpcUrl, stack.hook, p, i + 1)) {
      const log = decodeSpendLog(raw as RpcLog, stack.hook)
      if (!log) continue
      const entry: EntryRow = {
        id: `chain_${stack.chainId}_${log.blockHash}_${log.logIndex}`,
        taskId: 'agent',
        holdId: null,
        amount: log.amount,
        peer: log.to,
        tool: null,
        reason: null,
        at: now,
        source: 'onchain',
        chainId: stack.chainId,
        hook,
        blockNumber: log.blockNumber,
        blockHash: log.blockHash,
        txHash: log.txHash,
        logIndex: log.logIndex,
        confirmed: true,
        reverted: false,
        sig: '{"source":"onchain"}',
      }
      rows.push(entryCodec.encode(entry) as (string | number | null)[])
    }
    batches.push(rows)
  }
  const db = new Database(path)
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    const tuple = `(${entryCodec.columns.map(() => '?').join(', ')})`
    const statements = new Map<number, Database.Statement>()
    const insert = (n: number) => {
      let statement = statements.get(n)
      if (!statement) {
        statement = db.prepare(`insert into entries (${entryCodec.columns.join(', ')}) values ${Array(n).fill(tuple).join(', ')}`)
        statements.set(n, statement)
      }
      return statement
    }
    const begin = db.prepare('begin immediate')
    const commit = db.prepare('commit')
    let rowsWritten = 0
    const t0 = performance.now()
    for (const rows of batches) {
      begin.run()
      for (let k = 0; k < rows.length; k += 64) {
        const chunk = rows.slice(k, k + 64)
        insert(chunk.length).run(chunk.flat())
        rowsWritten += chunk.length
      }
      commit.run()
    }
    return { rows: rowsWritten, elapsedMs: performance.now() - t0 }
  } finally {
    db.close()
    removeSqlite(path)
  }
}

/**
 * spendguard's ledger path alone: the same logs, fetched and decoded before the clock
 * starts, applied page by page through the engine's writer exactly as the tracker applies
 * them (reconcile.applyBatch: binding lookup, idempotency check, entries, journal, outbox,
 * cursor, confirmation), one transaction per page, into a fresh ledger. What the tracker
 * would reach if fetching and decoding cost its thread nothing.
 */
async function ledgerPathAlone(fixture: ChainFixture, pages: Page[], name: string) {
  const { anvil, stack } = fixture
  const path = sqlitePath(name)
  const decoded: SpendLog[][] = []
  for (const [i, p] of pages.entries()) {
    const logs: SpendLog[] = []
    for (const raw of await fetchLogs(anvil.rpcUrl, stack.hook, p, i + 1)) {
      const log = decodeSpendLog(raw as RpcLog, stack.hook)
      if (log) logs.push(log)
    }
    if (logs.length > 0) decoded.push(logs)
  }
  const head = (decoded.at(-1)?.at(-1) as SpendLog).blockNumber
  const guard = await createGuard({ db: `sqlite:${path}`, expirySweepMs: 3_600_000 })
  await guard.allocate('agent', { total: 10n ** 30n, asset: 'tUSD', decimals: 6 })
  const tracker = createTracker({ guard, rpcUrl: anvil.rpcUrl, chainId: stack.chainId, hook: stack.hook })
  await tracker.bind({ account: stack.account, taskId: 'agent', token: stack.token })
  const scope = { chainId: stack.chainId, hook: stack.hook.toLowerCase() }
  let cursor: reconcile.Cursor | null = null
  let applied = 0
  const t0 = performance.now()
  for (const logs of decoded) {
    const last = logs[logs.length - 1] as SpendLog
    const to = { number: last.blockNumber, hash: last.blockHash }
    const from: reconcile.Cursor | null = cursor
    const result = await guard.internal.submit((ctx) =>
      reconcile.applyBatch(ctx, { ...scope, logs, blocks: [], from, to, confirmedUpTo: head - BigInt(confirmations), pruneBelow: 0n }),
    )
    applied += result.applied
    cursor = to
  }
  return { applied, elapsedMs: performance.now() - t0, guard, path }
}

/**
 * A ceiling for any ingest that stores each log durably on one thread: the tracker's pages
 * fetched `rpcConcurrency` in flight (plain fetch + JSON.parse), decoded by the specialized
 * decoder, and written as they arrive, in block order, into one bare table clustered by chain
 * position (`WITHOUT ROWID`, hashes and addresses as blobs, no secondary index, none of the
 * ledger's logic: no budget, journal, cursor or idempotency check), one transaction per page,
 * WAL, synchronous=FULL. Timed end to end, as the tracker is.
 */
async function bareIngest(fixture: ChainFixture, pages: Page[], name: string) {
  const { anvil, stack } = fixture
  const path = sqlitePath(name)
  const db = new Database(path)
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    db.exec(`create table logs (
      block_number integer not null, log_index integer not null, block_hash blob not null,
      tx_hash blob not null, account blob not null, token blob not null, sender blob not null,
      to_address blob not null, amount text not null, ref blob not null,
      primary key (block_number, log_index, block_hash)) without rowid`)
    const width = 10
    const tuple = `(${Array(width).fill('?').join(', ')})`
    const many = db.prepare(`insert into logs values ${Array(64).fill(tuple).join(', ')}`)
    const one = db.prepare(`insert into logs values ${tuple}`)
    const begin = db.prepare('begin immediate')
    const commit = db.prepare('commit')
    const blob = (hex: string) => Buffer.from(hex.slice(2), 'hex')
    const queue = new PQueue({ concurrency: rpcConcurrency })
    let written = 0
    const t0 = performance.now()
    const fetched = pages.map((p, i) => queue.add(() => fetchLogs(anvil.rpcUrl, stack.hook, p, i + 1)) as Promise<unknown[]>)
    for (const page of fetched) {
      const values: unknown[] = []
      for (const raw of await page) {
        const log = decodeSpendLog(raw as RpcLog, stack.hook)
        if (!log) continue
        values.push(Number(log.blockNumber), log.logIndex, blob(log.blockHash), blob(log.txHash), blob(log.account))
        values.push(blob(log.token), blob(log.sender), blob(log.to), log.amount.toString(), blob(log.ref))
      }
      begin.run()
      const full = values.length - (values.length % (64 * width))
      for (let k = 0; k < full; k += 64 * width) many.run(values.slice(k, k + 64 * width))
      for (let k = full; k < values.length; k += width) one.run(values.slice(k, k + width))
      commit.run()
      written += values.length / width
    }
    return { rows: written, elapsedMs: performance.now() - t0 }
  } finally {
    db.close()
    removeSqlite(path)
  }
}

/** viem's getContractEvents (fetch and decode) over the pages, `rpcConcurrency` in flight. */
async function viemEvents(rpcUrl: string, hook: Address, pages: Page[]) {
  const client = createPublicClient({ transport: http(rpcUrl, { retryCount: 0, timeout: 60_000 }) })
  const queue = new PQueue({ concurrency: rpcConcurrency })
  const t0 = performance.now()
  const counts = await Promise.all(
    pages.map((p) =>
      queue.add(async () => {
        const events = await client.getContractEvents({
          address: hook,
          abi: spendingHookAbi,
          eventName: 'SpendRecorded',
          fromBlock: p.from,
          toBlock: p.to,
        })
        return events.length
      }) as Promise<number>,
    ),
  )
  return { logs: counts.reduce((s, n) => s + n, 0), elapsedMs: performance.now() - t0 }
}

/**
 * D. The tracker backfilling ≥ 20,000 logs into a fresh SQLite ledger (createGuard,
 * createTracker, bind, syncOnce), beside raw eth_getLogs and viem getContractEvents over
 * the same block ranges. Two rounds in alternating order, summed.
 */
async function sectionD(fixture: ChainFixture): Promise<Row[]> {
  const logs = Math.max(100, Math.round(sized(20_000, 1_000) / 100) * 100)
  const setupBefore = fixture.setupMs
  await fixture.ensureLogs(logs)
  const setupMs = fixture.setupMs - setupBefore
  const range = fixture.lastLogs(logs)
  const { anvil, stack } = fixture
  const rows: Row[] = []
  const problems: string[] = []

  // Untimed: one pass so every run meets the same warm node.
  const head = await stack.publicClient.getBlockNumber()
  await rawGetLogs(anvil.rpcUrl, stack.hook, [{ from: range.fromBlock, to: head }])

  const tracker = { logs: 0, ms: 0 }
  const raw = { logs: 0, ms: 0 }
  const viem = { logs: 0, ms: 0 }
  const floor = { logs: 0, ms: 0 }
  const ledger = { logs: 0, ms: 0 }
  const bare = { logs: 0, ms: 0 }
  const pageCounts: number[] = []
  const refusedCounts: number[] = []
  const rounds = 2
  for (let round = 0; round < rounds; round++) {
    const t = await trackerRun(fixture, range.fromBlock, `d-ingest-${round}`)
    try {
      tracker.logs += t.result.applied
      tracker.ms += t.elapsedMs
      pageCounts.push(t.pages.length)
      refusedCounts.push(t.refused)
      if (t.result.applied !== range.logs) problems.push(`tracker applied ${t.result.applied} logs, ${range.logs} exist`)
      const check = await checkLedger(t.guard, { spent: range.amount, reserved: 0n, entries: range.logs, openHolds: 0 })
      problems.push(...check.problems)
      const runs = round % 2 === 0 ? (['raw', 'viem'] as const) : (['viem', 'raw'] as const)
      for (const which of runs) {
        const r = which === 'raw' ? await rawGetLogs(anvil.rpcUrl, stack.hook, t.pages) : await viemEvents(anvil.rpcUrl, stack.hook, t.pages)
        if (r.logs !== range.logs) problems.push(`${which} baseline read ${r.logs} logs, ${range.logs} exist`)
        const into = which === 'raw' ? raw : viem
        into.logs += r.logs
        into.ms += r.elapsedMs
      }
      const f = await rawEntryInserts(fixture, t.pages, `d-floor-${round}`)
      if (f.rows !== range.logs) problems.push(`raw entry inserts wrote ${f.rows} rows, ${range.logs} logs exist`)
      floor.logs += f.rows
      floor.ms += f.elapsedMs
      const b = await bareIngest(fixture, t.pages, `d-bare-${round}`)
      if (b.rows !== range.logs) problems.push(`bare ingest wrote ${b.rows} rows, ${range.logs} logs exist`)
      bare.logs += b.rows
      bare.ms += b.elapsedMs
      const l = await ledgerPathAlone(fixture, t.pages, `d-ledger-${round}`)
      try {
        if (l.applied !== range.logs) problems.push(`ledger path applied ${l.applied} logs, ${range.logs} exist`)
        problems.push(...(await checkLedger(l.guard, { spent: range.amount, reserved: 0n, entries: range.logs, openHolds: 0 })).problems)
        ledger.logs += l.applied
        ledger.ms += l.elapsedMs
      } finally {
        await l.guard.destroy()
        removeSqlite(l.path)
      }
    } finally {
      await t.guard.destroy()
      removeSqlite(t.path)
    }
  }
  const trackerRate = (tracker.logs / tracker.ms) * 1000
  const rawRate = (raw.logs / raw.ms) * 1000
  const viemRate = (viem.logs / viem.ms) * 1000
  const floorRate = (floor.logs / floor.ms) * 1000
  const ledgerRate = (ledger.logs / ledger.ms) * 1000
  const bareRate = (bare.logs / bare.ms) * 1000
  const detail = { logs: range.logs, fromBlock: range.fromBlock, pagesPerRun: pageCounts, refusedRequestsPerRun: refusedCounts, rounds, tracker, raw, viem, floor, ledger, bare, setupMs, rpcConcurrency, reorgDepthMax }
  rows.push(
    compare({
      section: 'D',
      measure: `ingest ${range.logs.toLocaleString('en-US')} logs into a fresh SQLite ledger: logs/s`,
      value: trackerRate,
      show: (n) => rate(n),
      baseline: rawRate,
      baselineLabel: 'raw eth_getLogs (fetch+parse)',
      target: { kind: 'ratio-min', value: 0.5 },
      detail,
    }),
    compare({
      section: 'D',
      measure: '  same, beside viem getContractEvents (fetch+decode)',
      value: trackerRate,
      show: (n) => rate(n),
      baseline: viemRate,
      baselineLabel: 'viem getContractEvents',
    }),
    compare({
      section: 'D',
      measure: '  same, beside raw better-sqlite3 writing its entry rows alone (no RPC, rows prebuilt)',
      value: trackerRate,
      show: (n) => rate(n),
      baseline: floorRate,
      baselineLabel: 'raw entry inserts, 1 tx per page',
    }),
    compare({
      section: 'D',
      measure: "  spendguard's ledger path alone (same logs fetched and decoded beforehand), beside raw eth_getLogs",
      value: ledgerRate,
      show: (n) => rate(n),
      baseline: rawRate,
      baselineLabel: 'raw eth_getLogs (fetch+parse)',
    }),
    compare({
      section: 'D',
      measure: '  floor: those raw entry inserts alone, beside raw eth_getLogs',
      value: floorRate,
      show: (n) => rate(n),
      baseline: rawRate,
      baselineLabel: 'raw eth_getLogs (fetch+parse)',
    }),
    compare({
      section: 'D',
      measure: '  ceiling: fetch + decode + one bare clustered table (no ledger logic), end to end, beside raw eth_getLogs',
      value: bareRate,
      show: (n) => rate(n),
      baseline: rawRate,
      baselineLabel: 'raw eth_getLogs (fetch+parse)',
    }),
  )
  rows.push(
    correctness(
      'D',
      problems.length === 0,
      problems.length === 0 ? `ok: ${rounds} × ${range.logs} logs applied once, spent ${range.amount} each` : problems.slice(0, 3).join('; '),
      { problems, setupSeconds: setupMs / 1000 },
    ),
  )
  return rows
}

type IngestAnswer = {
  logs: number
  applied: number
  elapsedMs: number
  spent: string
  entryCount: number
  rssStart: number
  rssReady: number
  rssPeakSampled: number
  heapPeak: number
  heapAfterGc?: number
  peakRssBytes: number
  maxRssBytes: number
}

/** What section F notes of one sync process. */
type MemoryRun = { applied: number; elapsedMs: number; peakRssBytes: number; heapPeak: number; heapAfterGc?: number | undefined }

const binPath = fileURLToPath(new URL('../../bin/spendguard.js', import.meta.url))
const probePath = fileURLToPath(new URL('../lib/memory-probe.mjs', import.meta.url))

/**
 * One `spendguard sync --once` process, as a user runs it, over the ledger at `db` (the
 * task allocated and the account bound beforehand, by this process): what it applied (its
 * JSON summary) and its memory (bench/lib/memory-probe.mjs, loaded into it).
 */
async function syncProcess(fixture: ChainFixture, db: string, fromBlock: bigint): Promise<MemoryRun> {
  const { anvil, stack } = fixture
  const args = [
    '--expose-gc',
    '--import',
    probePath,
    binPath,
    'sync',
    '--db',
    db,
    '--rpc',
    anvil.rpcUrl,
    '--chain-id',
    String(stack.chainId),
    '--hook',
    stack.hook,
    '--from-block',
    fromBlock.toString(),
    '--confirmations',
    String(confirmations),
    '--reorg-depth',
    String(reorgDepthMax),
    '--once',
    '--json',
  ]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  const probe = /^memory-probe (.+)$/m.exec(stderr)?.[1]
  if (code !== 0 || probe === undefined) throw new Error(`spendguard sync exited ${code}: ${stderr.trim().slice(-2000)}`)
  const memory = JSON.parse(probe) as { peakRssBytes: number | null; heapPeak: number; heapAfterGc: number | null; elapsedMs: number }
  if (memory.peakRssBytes === null) throw new Error('no VmHWM in /proc/self/status: section F needs Linux')
  const summary = JSON.parse(stdout) as { applied: number }
  return {
    applied: summary.applied,
    elapsedMs: memory.elapsedMs,
    peakRssBytes: memory.peakRssBytes,
    heapPeak: memory.heapPeak,
    heapAfterGc: memory.heapAfterGc ?? undefined,
  }
}

/** A fresh ledger at `path` with the task allocated and the stack's account bound to it. */
async function prepareLedger(fixture: ChainFixture, path: string): Promise<void> {
  const g = await createGuard({ db: `sqlite:${path}`, expirySweepMs: 3_600_000 })
  try {
    await g.allocate('agent', { total: 10n ** 30n, asset: 'tUSD', decimals: 6 })
    const { stack } = fixture
    await bindAccount(g, { chainId: stack.chainId, hook: stack.hook }, { account: stack.account, taskId: 'agent', token: stack.token })
  } finally {
    await g.destroy()
  }
}

/**
 * F. Peak RSS of the sync process (`spendguard sync --once`, a fresh process per figure)
 * backfilling the newest 10,000 and the newest 100,000 logs: flat within 20%. A diagnosis
 * row runs the same 100,000 through the library's tracker in a bench worker, where V8's
 * allocation-site pretenuring stays on (the sync command turns it off).
 */
async function sectionF(fixture: ChainFixture): Promise<Row[]> {
  const small = Math.max(100, Math.round(sized(10_000, 1_000) / 100) * 100)
  const large = Math.max(small * 10, Math.round(sized(100_000, 10_000) / 100) * 100)
  const setupBefore = fixture.setupMs
  const t0 = performance.now()
  await fixture.ensureLogs(large)
  const setupMs = fixture.setupMs - setupBefore
  const setupWallMs = performance.now() - t0
  const { anvil, stack } = fixture
  const problems: string[] = []
  const runs = [
    { name: 'small', logs: small, process: 'cli' },
    { name: 'large', logs: large, process: 'cli' },
    { name: 'library', logs: large, process: 'worker' },
  ] as const
  const measured: Record<string, MemoryRun> = {}
  for (const run of runs) {
    const n = run.logs
    const range = fixture.lastLogs(n)
    const path = sqlitePath(`f-rss-${run.name}`)
    if (run.process === 'cli') {
      await prepareLedger(fixture, path)
      measured[run.name] = await syncProcess(fixture, `sqlite:${path}`, range.fromBlock)
    } else {
      const worker = await startWorker(['--expose-gc'])
      try {
        measured[run.name] = await worker.call<IngestAnswer>({
          cmd: 'ingest',
          db: `sqlite:${path}`,
          rpcUrl: anvil.rpcUrl,
          chainId: stack.chainId,
          hook: stack.hook,
          account: stack.account,
          token: stack.token,
          fromBlock: range.fromBlock.toString(),
          sampleMs: 10,
        })
      } finally {
        await worker.close()
      }
    }
    const m = measured[run.name] as MemoryRun
    if (m.applied !== n) problems.push(`${run.name}: the tracker applied ${m.applied} logs of ${n}`)
    const guard = await createGuard({ db: `sqlite:${path}`, expirySweepMs: 3_600_000 })
    try {
      const check = await checkLedger(guard, { spent: range.amount, reserved: 0n, entries: n, openHolds: 0 })
      problems.push(...check.problems.map((p) => `${run.name}: ${p}`))
    } finally {
      await guard.destroy()
      removeSqlite(path)
    }
  }
  const a = measured.small as MemoryRun
  const b = measured.large as MemoryRun
  const c = measured.library as MemoryRun
  const perSec = (m: MemoryRun) => ((m.applied / m.elapsedMs) * 1000).toFixed(0)
  const live = (m: MemoryRun) => (m.heapAfterGc === undefined ? '?' : mib(m.heapAfterGc))
  return [
    compare({
      section: 'F',
      measure: `spendguard sync peak RSS after ${large.toLocaleString('en-US')} logs (${perSec(b)} logs/s over the process's life; heap peak ${mib(b.heapPeak)} vs ${mib(a.heapPeak)}, live after GC ${live(b)} vs ${live(a)})`,
      value: b.peakRssBytes,
      show: mib,
      baseline: a.peakRssBytes,
      baselineLabel: `after ${small.toLocaleString('en-US')} logs`,
      target: { kind: 'ratio-max', value: 1.2 },
      detail: { small: a, large: b, setupSeconds: setupMs / 1000, setupWallSeconds: setupWallMs / 1000, setupTotalSeconds: fixture.setupMs / 1000 },
    }),
    compare({
      section: 'F',
      measure: `  diagnosis: same ${large.toLocaleString('en-US')} logs, library tracker in a bench worker, V8 pretenuring on (heap peak ${mib(c.heapPeak)}, live after GC ${live(c)})`,
      value: c.peakRssBytes,
      show: mib,
      baseline: a.peakRssBytes,
      baselineLabel: `sync after ${small.toLocaleString('en-US')} logs`,
      detail: { library: c },
    }),
    correctness(
      'F',
      problems.length === 0,
      problems.length === 0
        ? `ok: ${small} and ${large} logs applied once; creating ${fixture.batches.length * fixture.transfersPerTx} logs on anvil took ${(fixture.setupMs / 1000).toFixed(1)} s`
        : problems.slice(0, 3).join('; '),
      { problems },
    ),
  ]
}
