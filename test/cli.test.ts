import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { deployLocalStack } from '../src/index.ts'
import { rpcChainId } from '../src/onchain/anvil.ts'
import { type AnvilInstance, startAnvil } from './helpers/anvil.ts'
import { useGuards } from './helpers/guard.ts'
import { storeTargets } from './helpers/stores.ts'

const bin = fileURLToPath(new URL('../bin/spendguard.js', import.meta.url))

function cli(args: string[], env: Record<string, string> = {}, cwd?: string) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    // A command that never ends is killed: the assertion on its outcome then fails instead of the test timing out.
    execFile(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, cwd, timeout: 30_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      const { code, signal } = (error ?? {}) as { code?: number | null; signal?: string | null }
      // No documented outcome exits 1 or dies by a signal: show why, so a failing assertion names the cause.
      if (error && (code === 1 || signal)) console.error(`spendguard ${args[0]} exited ${code ?? signal}:\n${stderr}`)
      resolve({ code: error ? (code ?? 1) : 0, stdout, stderr })
    })
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The CLI as a long-running child, collecting its output. It leads a process group of its own,
 * so `kill` also ends anything it started and left behind.
 */
function startCli(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const io = { stdout: '', stderr: '' }
  child.stdout.setEncoding('utf8').on('data', (d: string) => (io.stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (io.stderr += d))
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  return {
    io,
    signal: (signal: NodeJS.Signals) => child.kill(signal),
    /** Waits until `ready` holds of the output; false if it does not within `ms` or the process ended first. */
    async until(ready: () => boolean, ms: number): Promise<boolean> {
      const deadline = Date.now() + ms
      while (!ready()) {
        if (Date.now() > deadline || child.exitCode !== null || child.signalCode !== null) return ready()
        await sleep(25)
      }
      return true
    },
    /** How the process ended, or `timeout` if it still runs after `ms`. */
    exited: (ms: number) => Promise.race([closed, sleep(ms).then(() => 'timeout' as const)]),
    kill() {
      try {
        process.kill(-(child.pid as number), 'SIGKILL')
      } catch {}
    },
  }
}

/**
 * A JSON-RPC node (chain 31337) of `head` + 1 empty blocks that answers each getLogs over a
 * range after `delayMs`: the tracker's backfill is then a stream of pages arriving at that pace.
 */
async function startSlowChain({ head, delayMs }: { head: number; delayMs: number }) {
  const hex = (n: number) => `0x${n.toString(16)}`
  const hash = (n: number) => `0x${(n + 1).toString(16).padStart(64, '0')}`
  const block = (n: number) => (n < 0 || n > head ? null : { number: hex(n), hash: hash(n), parentHash: n === 0 ? `0x${'0'.repeat(64)}` : hash(n - 1) })
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    let body = ''
    for await (const chunk of req) body += chunk
    const call = JSON.parse(body) as { id: number; method: string; params?: unknown[] }
    const first = call.params?.[0]
    let answer: { result: unknown } | { error: { code: number; message: string } }
    if (call.method === 'eth_chainId') answer = { result: hex(31337) }
    else if (call.method === 'eth_blockNumber') answer = { result: hex(head) }
    else if (call.method === 'eth_getBlockByNumber') answer = { result: block(first === 'latest' ? head : Number(first)) }
    else if (call.method === 'eth_getLogs') {
      if (typeof first === 'object' && first !== null && 'fromBlock' in first) await sleep(delayMs)
      answer = { result: [] }
    } else answer = { error: { code: -32601, message: `no method ${call.method}` } }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: call.id, ...answer }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    rpcUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

describe.each(storeTargets)('cli on $name', (target) => {
  const guards = useGuards(target)

  test('default: a budget through its whole life, in whole units', async () => {
    const db = await guards.url()
    const run = (...args: string[]) => cli([...args, '--db', db])
    expect((await run('allocate', 't1', '--total', '10', '--asset', 'USDC', '--decimals', '6')).code).toBe(0)
    const reserved = await run('reserve', 't1', '2.5', '--key', 'k1', '--json')
    expect(reserved.code).toBe(0)
    const hold = JSON.parse(reserved.stdout) as { id: string; amount: string }
    expect(hold.amount).toBe('2500000')
    const captured = await run('capture', hold.id, '1.75', '--peer', 'api.example.com')
    expect(captured).toMatchObject({ code: 0 })
    expect(captured.stdout).toContain('captured 1.75 USDC on t1')
    const recorded = await run('record', 't1', '0.25', '--id', 'inv-1')
    expect(recorded.stdout).toContain('recorded 0.25 USDC on t1')
    const status = await run('status', 't1')
    expect(status.stdout).toContain('spent     2.00 USDC')
    expect(status.stdout).toContain('remaining 8.00 USDC')
    expect(status.stdout).toMatch(/\[▇+·+\]/)
    const all = await run('status', '--json')
    expect(JSON.parse(all.stdout)[0]).toMatchObject({ taskId: 't1', spent: '2000000', remaining: '8000000' })
    const journal = await run('journal', '--task', 't1', '--json')
    expect((JSON.parse(journal.stdout) as { kind: string }[]).map((j) => j.kind)).toEqual(['allocate', 'reserve', 'capture', 'record'])
    expect((await run('verify')).stdout).toContain('verify: ok')
    const closed = await run('close', 't1')
    expect(closed.stdout).toContain('closed t1: spent 2.00 USDC of 10.00 USDC')
  })

  test('behavior: errors print one line with the numbers and exit with the documented code', async () => {
    const db = await guards.url()
    const run = (...args: string[]) => cli([...args, '--db', db])
    await run('allocate', 't1', '--total', '15.5', '--asset', 'USDC', '--decimals', '6')
    await run('record', 't1', '12')
    const denied = await run('reserve', 't1', '12')
    expect(denied.code).toBe(3)
    expect(denied.stderr.trim()).toBe('spendguard: budget exceeded: task t1 requested 12.00 USDC, 3.50 USDC remaining')
    const missing = await run('status', 'nope')
    expect(missing.code).toBe(4)
    expect(missing.stderr.trim()).toBe('spendguard: no budget for task nope')
    const precise = await run('record', 't1', '0.0000001')
    expect(precise.code).toBe(2)
    expect(precise.stderr).toContain('at most 6 fractional digits')
    const usage = await run('reserve', 't1')
    expect(usage.code).toBe(2)
    const thresholds = await run('allocate', 't2', '--total', '1', '--asset', 'USDC', '--decimals', '6', '--thresholds', '0.5,abc')
    expect(thresholds.code).toBe(2)
    expect(thresholds.stderr.trim()).toBe('spendguard: Invalid thresholds "0.5,abc": fractions separated by commas, e.g. 0.5,0.8,0.95')
    // An amount of zero is refused as typed, not as the smallest-unit value it would be.
    const zero = await run('reserve', 't1', '0.00')
    expect(zero.code).toBe(2)
    expect(zero.stderr).toBe('spendguard: Invalid amount "0.00": an amount is more than 0\n')
    // Nothing refused changed the ledger: the journal holds the allocation and the one record.
    const journal = JSON.parse((await run('journal', '--json')).stdout) as { kind: string }[]
    expect(journal.map((j) => j.kind)).toEqual(['allocate', 'record'])
  })

  test('behavior: status shows thresholds as the percentages they were written as', async () => {
    const db = await guards.url()
    const run = (...args: string[]) => cli([...args, '--db', db])
    // 0.07 * 100 is 7.000000000000001 and 0.57 * 100 is 56.99999999999999 in floating point.
    expect((await run('allocate', 't1', '--total', '100', '--asset', 'USDC', '--decimals', '6', '--thresholds', ' 0.07, 0.57,0.955')).code).toBe(0)
    await run('record', 't1', '10')
    const status = await run('status', 't1')
    expect(status.code).toBe(0)
    expect(status.stdout).toContain('  thresholds 7% ✓  57%  95.5%\n')
  })

  test('behavior: unbind removes what bind made, once; a second unbind exits 4', async () => {
    const db = await guards.url()
    const run = (...args: string[]) => cli([...args, '--db', db])
    const scope = ['--chain-id', '31337', '--hook', '0x5FbDB2315678afecb367f032d93F642f64180aa3']
    const account = '0x00000000000000000000000000000000000000A1'
    await run('allocate', 'agent', '--total', '5', '--asset', 'USDC', '--decimals', '6')
    expect((await run('bind', 'agent', ...scope, '--account', account)).code).toBe(0)
    const removed = await run('unbind', ...scope, '--account', account)
    expect(removed).toMatchObject({ code: 0, stdout: 'unbound 0x00000000000000000000000000000000000000a1 on chain 31337\n' })
    const again = await run('unbind', ...scope, '--account', account, '--json')
    expect(again.code).toBe(4)
    expect(JSON.parse(again.stdout)).toEqual({ removed: false })
    const bad = await run('unbind', ...scope, '--account', '0x12')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('account')
  })

  test('behavior: without --db, env SPENDGUARD_DB selects the store; --db still wins over it', async () => {
    const db = await guards.url()
    const other = await guards.url()
    // Run from an empty directory, so a command that ignored the env would leave ./spendguard.db here.
    const cwd = mkdtempSync(join(tmpdir(), 'spendguard-cli-'))
    try {
      const env = { SPENDGUARD_DB: db }
      expect((await cli(['allocate', 'from-env', '--total', '3', '--asset', 'USDC', '--decimals', '6'], env, cwd)).code).toBe(0)
      const listed = await cli(['status', '--json'], env, cwd)
      expect(listed.code).toBe(0)
      expect((JSON.parse(listed.stdout) as { taskId: string }[]).map((b) => b.taskId)).toEqual(['from-env'])
      // The budget is in the env's store, read back through --db.
      const direct = await cli(['status', 'from-env', '--json', '--db', db], {}, cwd)
      expect(direct.code).toBe(0)
      expect(JSON.parse(direct.stdout).budget).toMatchObject({ taskId: 'from-env', total: '3000000' })
      expect(existsSync(join(cwd, 'spendguard.db'))).toBe(false)
      // An explicit --db overrides the env.
      expect((await cli(['allocate', 'from-flag', '--total', '1', '--asset', 'USDC', '--decimals', '6', '--db', other], env, cwd)).code).toBe(0)
      const inOther = JSON.parse((await cli(['status', '--json', '--db', other], {}, cwd)).stdout) as { taskId: string }[]
      expect(inOther.map((b) => b.taskId)).toEqual(['from-flag'])
      const inEnv = JSON.parse((await cli(['status', '--json'], env, cwd)).stdout) as { taskId: string }[]
      expect(inEnv.map((b) => b.taskId)).toEqual(['from-env'])
    } finally {
      rmSync(cwd, { recursive: true, force: true })
    }
  })

  test('behavior: release returns a hold to the budget and journals it once; a capture after it exits 3', async () => {
    const db = await guards.url()
    const run = (...args: string[]) => cli([...args, '--db', db])
    await run('allocate', 't1', '--total', '10', '--asset', 'USDC', '--decimals', '6')
    const hold = JSON.parse((await run('reserve', 't1', '2.5', '--json')).stdout) as { id: string }
    const held = JSON.parse((await run('status', '--json')).stdout)[0]
    expect(held).toMatchObject({ reserved: '2500000', remaining: '7500000' })
    const released = await run('release', hold.id)
    expect(released).toMatchObject({ code: 0, stdout: 'released 2.50 USDC on t1\n' })
    const after = JSON.parse((await run('status', '--json')).stdout)[0]
    expect(after).toMatchObject({ spent: '0', reserved: '0', remaining: '10000000', openHolds: 0 })
    // A retry returns the same result and journals nothing more; a capture after it is refused.
    expect(await run('release', hold.id)).toMatchObject({ code: 0, stdout: 'released 2.50 USDC on t1\n' })
    const late = await run('capture', hold.id, '1')
    expect(late.code).toBe(3)
    expect(late.stderr.trim()).toBe(`spendguard: hold ${hold.id} is not open (released)`)
    const journal = JSON.parse((await run('journal', '--task', 't1', '--json')).stdout) as { kind: string; holdId?: string; amount?: string }[]
    expect(journal.map((j) => j.kind)).toEqual(['allocate', 'reserve', 'release'])
    expect(journal[2]).toMatchObject({ holdId: hold.id, amount: '2500000' })
    expect((await run('verify')).code).toBe(0)
  })

  test('behavior: verify exits 5 and names the problem when a budget no longer matches its journal', async () => {
    const db = await guards.url()
    const run = (...args: string[]) => cli([...args, '--db', db])
    await run('allocate', 't1', '--total', '100', '--asset', 'USDC', '--decimals', '6')
    await run('record', 't1', '10')
    expect(await run('verify')).toMatchObject({ code: 0, stdout: 'verify: ok, every budget matches its journal\n' })
    // Tamper with the stored budget behind the engine's back.
    const tamper = "update budgets set spent = '11' where task_id = 't1'"
    if (target.name === 'sqlite') {
      const raw = new Database(db.slice('sqlite:'.length))
      raw.prepare(tamper).run()
      raw.close()
    } else {
      const raw = new pg.Client({ connectionString: db })
      await raw.connect()
      await raw.query(tamper)
      await raw.end()
    }
    const failed = await run('verify')
    expect(failed.code).toBe(5)
    expect(failed.stdout).toContain('verify: FAILED\n')
    expect(failed.stdout).toContain('  t1: spent 11, journal replay gives 10000000\n')
    const asJson = await run('verify', '--json')
    expect(asJson.code).toBe(5)
    expect(JSON.parse(asJson.stdout)).toMatchObject({ ok: false, problems: expect.arrayContaining(['t1: spent 11, journal replay gives 10000000']) })
  })
})

describe('cli --json', () => {
  const guards = useGuards(storeTargets[0] as (typeof storeTargets)[0])

  test('behavior: every command that changes the ledger prints one JSON document of what it did', async () => {
    const db = await guards.url()
    const run = async (...args: string[]) => {
      const result = await cli([...args, '--json', '--db', db])
      expect(result, args[0]).toMatchObject({ code: 0, stderr: '' })
      return JSON.parse(result.stdout)
    }
    expect(await run('allocate', 't1', '--total', '10', '--asset', 'USDC', '--decimals', '6', '--thresholds', '0.5,0.9')).toMatchObject({
      taskId: 't1',
      total: '10000000',
      spent: '0',
      remaining: '10000000',
      thresholds: [0.5, 0.9],
      status: 'active',
    })
    const first = await run('reserve', 't1', '3')
    expect(first).toMatchObject({ taskId: 't1', amount: '3000000', status: 'open' })
    expect(first.ref).toMatch(/^0x[0-9a-f]{64}$/)
    const captured = await run('capture', first.id, '2.5', '--peer', 'api.example.com')
    expect(captured).toMatchObject({ taskId: 't1', holdId: first.id, amount: '2500000', peer: 'api.example.com', source: 'offchain' })
    const second = await run('reserve', 't1', '1')
    expect(await run('release', second.id)).toMatchObject({ id: second.id, amount: '1000000', status: 'released' })
    const recorded = await run('record', 't1', '0.5', '--id', 'inv-1')
    expect(recorded).toMatchObject({ id: 'inv-1', taskId: 't1', amount: '500000', source: 'offchain' })
    expect(recorded).not.toHaveProperty('holdId')
    const hook = '0x5FbDB2315678afecb367f032d93F642f64180aa3'
    const account = '0x00000000000000000000000000000000000000A1'
    expect(await run('bind', 't1', '--chain-id', '31337', '--hook', hook, '--account', account)).toMatchObject({
      chainId: 31337,
      hook: hook.toLowerCase(),
      account: account.toLowerCase(),
      taskId: 't1',
      token: '0x0000000000000000000000000000000000000000',
    })
    expect(await run('unbind', '--chain-id', '31337', '--hook', hook, '--account', account)).toEqual({ removed: true })
    expect(await run('close', 't1')).toMatchObject({ taskId: 't1', total: '10000000', spent: '3000000', entryCount: 2, releasedHolds: 0, status: 'closed' })
    expect(await run('verify')).toEqual({ ok: true, problems: [] })
  })
})

test('behavior: bad input exits 2 before a store is opened, so a mistyped --db creates nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spendguard-cli-'))
  try {
    const db = `sqlite:${join(dir, 'typo.db')}`
    const hook = '0x2222222222222222222222222222222222222222'
    const bad: string[][] = [
      ['allocate', 't', '--total', 'abc', '--asset', 'USDC', '--decimals', '6'],
      ['allocate', 't', '--total', '1', '--asset', 'USDC', '--decimals', '66'],
      ['allocate', 't', '--total', '1', '--asset', 'U S D', '--decimals', '6'],
      ['allocate', 't', '--total', '1', '--asset', 'USDC', '--decimals', '6', '--thresholds', '1.5'],
      ['allocate', 't', '--total', '1', '--asset', 'USDC', '--decimals', '6', '--metadata', '[1]'],
      ['reserve', 't', '1..5'],
      ['reserve', 't', '1', '--ref', '0x12'],
      ['reserve', 't', '1', '--ttl', '0'],
      ['capture', 'hold_x', '-1'],
      ['record', 't', 'ten'],
      ['record', 't', '1', '--peer', 'x'.repeat(2000)],
      ['journal', '--after', String(2n ** 63n)],
      ['bind', 't', '--chain-id', '1', '--hook', '0x12', '--account', hook],
      ['bind', 't', '--chain-id', '0', '--hook', hook, '--account', hook],
      ['unbind', '--chain-id', '0', '--hook', hook, '--account', hook],
      ['sync', '--rpc', 'http://127.0.0.1:1', '--chain-id', '0', '--hook', hook, '--once'],
      ['status', 'x'.repeat(300)],
      ['unbind', '--chain-id', '1', '--hook', hook, '--account', 'nope'],
      ['sync', '--rpc', 'notaurl', '--chain-id', '1', '--hook', hook, '--once'],
      ['sync', '--rpc', 'http://127.0.0.1:1', '--chain-id', '1', '--hook', 'nope', '--once'],
    ]
    for (const args of bad) {
      const result = await cli([...args, '--db', db])
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2)
      expect(result.stderr, args.join(' ')).toMatch(/^spendguard: Invalid /)
    }
    expect(existsSync(join(dir, 'typo.db'))).toBe(false)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('behavior: amounts, limits, intervals and block numbers out of range exit 2 before a store is opened', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spendguard-cli-'))
  try {
    const hook = '0x2222222222222222222222222222222222222222'
    const sync = ['sync', '--rpc', 'http://127.0.0.1:1', '--chain-id', '1', '--hook', hook, '--once']
    const allocate = ['allocate', 't', '--total', '1', '--asset', 'USDC', '--decimals', '6']
    const bad: string[][] = [
      ['journal', '--limit', '0'],
      ['journal', '--limit', '100001'],
      ['reserve', 't', '0'],
      ['record', 't', '0.000'],
      ['capture', 'hold_x', '0'],
      // More fractional digits than any asset has (36), and a whole part above 2^256-1.
      ['record', 't', `0.${'0'.repeat(36)}1`],
      ['reserve', 't', String(2n ** 256n)],
      [...sync, '--confirmations', '99999999999999999999'],
      [...sync, '--reorg-depth', String(2n ** 53n)],
      // setTimeout takes 1…2^31-1 ms: 0 or more would poll every millisecond.
      [...sync, '--poll-interval', '0'],
      [...sync, '--poll-interval', String(2 ** 31)],
      [...sync, '--from-block', String(2n ** 64n)],
      [...sync, '--from-block', String(2n ** 63n)],
      ['status', '--watch', '--interval', '0'],
      ['status', '--watch', '--interval', String(2 ** 31)],
      // Plain decimal fractions only: Number() would read these as 1, 1 and 0.1.
      [...allocate, '--thresholds', '0x1'],
      [...allocate, '--thresholds', '0.5,0b1'],
      [...allocate, '--thresholds', '1e-1'],
    ]
    // Two at a time, each on a path of its own: every refusal must leave its path untouched.
    const refuse = async (args: string[], i: number) => {
      const path = join(dir, `typo-${i}.db`)
      const result = await cli([...args, '--db', `sqlite:${path}`])
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2)
      expect(result.stderr, args.join(' ')).toMatch(/^spendguard: Invalid [^\n]*\n$/)
      expect(existsSync(path), args.join(' ')).toBe(false)
    }
    for (let i = 0; i < bad.length; i += 2) await Promise.all(bad.slice(i, i + 2).map((args, j) => refuse(args, i + j)))
    // The edges are accepted: the limit reaches the store, and so does an amount of 36 fractional
    // digits, which only the task's asset can refuse (here there is no task: exit 4, not 2).
    const [limit, precise] = await Promise.all([
      cli(['journal', '--limit', '100000', '--json', '--db', `sqlite:${join(dir, 'edge-1.db')}`]),
      cli(['reserve', 't', `0.${'0'.repeat(35)}1`, '--db', `sqlite:${join(dir, 'edge-2.db')}`]),
    ])
    expect(limit).toMatchObject({ code: 0, stdout: '[]\n' })
    expect(precise).toMatchObject({ code: 4, stderr: 'spendguard: no budget for task t\n' })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('behavior: --help on every command shows an example', async () => {
  for (const command of ['allocate', 'status', 'reserve', 'capture', 'release', 'record', 'close', 'bind', 'unbind', 'journal', 'verify', 'sync', 'demo']) {
    const help = await cli([command, '--help'])
    expect(help.code, command).toBe(0)
    expect(help.stdout, command).toContain('Example')
  }
})

describe('cli sync', () => {
  const guards = useGuards(storeTargets[0] as (typeof storeTargets)[0])
  let anvil: AnvilInstance
  beforeAll(async () => {
    anvil = await startAnvil()
  })
  afterAll(async () => {
    await anvil.stop()
  })

  /** Follows the hook until a new payment is applied, then stops the follower with `signal`. */
  async function followThenStop(args: string[], pay: () => Promise<unknown>, signal: NodeJS.Signals) {
    const follower = spawn(process.execPath, [bin, ...args, '--poll-interval', '100'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    follower.stdout.on('data', (d) => (stdout += d))
    follower.stderr.on('data', (d) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => follower.on('exit', (code) => resolve(code)))
    await pay()
    const deadline = Date.now() + 10_000
    while (!/1 applied/.test(stdout) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    follower.kill(signal)
    return { code: await exited, stdout, stderr }
  }

  /** A budget `agent` bound through the CLI to a fresh stack's account, and the `sync` arguments that follow it. */
  async function boundAgent() {
    const db = await guards.url()
    const stack = await deployLocalStack({ rpcUrl: anvil.rpcUrl })
    const fromBlock = String((await stack.publicClient.getBlockNumber()) + 1n)
    await cli(['allocate', 'agent', '--total', '100', '--asset', 'USDC', '--decimals', '6', '--db', db])
    const bound = await cli(['bind', 'agent', '--chain-id', String(anvil.chainId), '--hook', stack.hook, '--account', stack.account, '--token', stack.token, '--db', db])
    expect(bound.code).toBe(0)
    const args = ['sync', '--rpc', anvil.rpcUrl, '--chain-id', String(anvil.chainId), '--hook', stack.hook, '--from-block', fromBlock, '--db', db]
    return { db, stack, args }
  }

  test('behavior: bind, sync --once, then follow and stop cleanly on SIGTERM', async () => {
    const { db, stack, args } = await boundAgent()
    await stack.payBatch([
      { to: stack.owner, amount: 1_500_000n },
      { to: stack.owner, amount: 250_000n },
    ])
    const once = await cli([...args, '--once'])
    expect(once.code).toBe(0)
    expect(once.stdout).toMatch(/2 logs · 2 applied/)
    expect((await cli(['status', 'agent', '--db', db])).stdout).toContain('spent     1.75 USDC')

    const followed = await followThenStop(args, () => stack.pay({ to: stack.owner, amount: 3_000_000n }), 'SIGTERM')
    expect(followed.code).toBe(0)
    expect(followed.stderr).toContain('sync: stopped at block')
    expect((await cli(['status', 'agent', '--db', db])).stdout).toContain('spent     4.75 USDC')
  })

  test('behavior: a following sync the tracker stops (RPC on another chain) ends like sync --once: one error line, same exit', async () => {
    const args = ['sync', '--rpc', anvil.rpcUrl, '--chain-id', '1', '--hook', '0x2222222222222222222222222222222222222222', '--poll-interval', '100']
    const once = startCli([...args, '--once', '--db', await guards.url()])
    const follow = startCli([...args, '--db', await guards.url()])
    try {
      const [onceEnded, followEnded] = await Promise.all([once.exited(10_000), follow.exited(10_000)])
      expect(onceEnded).toMatchObject({ signal: null })
      expect(followEnded).toEqual(onceEnded)
    } finally {
      once.kill()
      follow.kill()
    }
    expect(once.io.stderr).toBe(`spendguard: RPC serves chain ${anvil.chainId}, the tracker follows chain 1\n`)
    expect(follow.io.stderr).toBe(once.io.stderr)
  })

  test('behavior: sync redraws its backfill progress while quick pages keep arriving (every 2 s off a terminal)', async () => {
    // About 35 pages, each answered after 180 ms: a backfill of some 3 s whose pages arrive far
    // faster than the progress line may be redrawn.
    const chain = await startSlowChain({ head: 1_000_000, delayMs: 180 })
    try {
      const db = await guards.url()
      const hook = '0x2222222222222222222222222222222222222222'
      const run = await cli(['sync', '--rpc', chain.rpcUrl, '--chain-id', '31337', '--hook', hook, '--reorg-depth', '0', '--confirmations', '0', '--once', '--db', db])
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toMatch(/blocks 0–1000000 · 0 logs/)
      const lines = run.stderr.match(/^backfill \[[█░]+\] \d+\/1000001 blocks/gm) ?? []
      expect(lines.length, run.stderr).toBeGreaterThanOrEqual(2)
    } finally {
      await chain.close()
    }
  })

  test('behavior: sync also stops cleanly on SIGINT, keeping what it applied', async () => {
    const { db, stack, args } = await boundAgent()
    const followed = await followThenStop(args, () => stack.pay({ to: stack.owner, amount: 2_000_000n }), 'SIGINT')
    expect(followed.code).toBe(0)
    expect(followed.stdout).toMatch(/1 applied/)
    expect(followed.stderr).toContain('sync: stopping after the batch in flight')
    expect(followed.stderr).toMatch(/sync: stopped at block \d+\n/)
    expect((await cli(['status', 'agent', '--db', db])).stdout).toContain('spent     2.00 USDC')
    expect((await cli(['verify', '--db', db])).code).toBe(0)
  })
})

describe('cli status --watch', () => {
  const guards = useGuards(storeTargets[0] as (typeof storeTargets)[0])

  async function allocated() {
    const db = await guards.url()
    expect((await cli(['allocate', 't1', '--total', '10', '--asset', 'USDC', '--decimals', '6', '--db', db])).code).toBe(0)
    return db
  }

  test('behavior: --watch --json prints one JSON document a line (NDJSON), with no screen escapes', async () => {
    const db = await allocated()
    const json = startCli(['status', '--watch', '--json', '--interval', '50', '--db', db])
    try {
      expect(await json.until(() => json.io.stdout.split('\n').length > 3, 10_000), json.io.stderr).toBe(true)
      json.signal('SIGINT')
      expect(await json.exited(5_000)).toEqual({ code: 0, signal: null })
    } finally {
      json.kill()
    }
    expect(json.io.stdout).not.toContain('\x1b')
    const documents = json.io.stdout.trimEnd().split('\n')
    expect(documents.length).toBeGreaterThanOrEqual(3)
    for (const line of documents) expect(JSON.parse(line)).toMatchObject([{ taskId: 't1', total: '10000000', spent: '0' }])
  })

  test('behavior: SIGINT ends --watch at once, not after its interval; off a terminal the screen is not cleared', async () => {
    const db = await allocated()
    const text = startCli(['status', 't1', '--watch', '--interval', '600000', '--db', db])
    try {
      expect(await text.until(() => text.io.stdout.includes('last entries'), 10_000), text.io.stderr).toBe(true)
      text.signal('SIGINT')
      expect(await text.exited(5_000)).toEqual({ code: 0, signal: null })
    } finally {
      text.kill()
    }
    expect(text.io.stdout).not.toContain('\x1b')
    expect(text.io.stdout).toMatch(/^task t1 · USDC · active · hard limit\n/)
  })
})

describe('cli demo', () => {
  test('behavior: SIGINT stops what the demo started (anvil, tracker, ledger), removes its temporary directory, exits 130', async () => {
    // The demo's temporary directory is made under TMPDIR: a directory of this test's own.
    const tmp = mkdtempSync(join(tmpdir(), 'spendguard-cli-demo-'))
    const demoDirs = () => readdirSync(tmp).filter((name) => name.startsWith('spendguard-demo-'))
    const demo = startCli(['demo'], { TMPDIR: tmp })
    try {
      expect(await demo.until(() => demo.io.stdout.includes('tracker following the hook'), 30_000), demo.io.stderr).toBe(true)
      const rpcUrl = /^anvil on (\S+)/m.exec(demo.io.stdout)?.[1] as string
      expect(await rpcChainId(rpcUrl)).toBeDefined()
      expect(demoDirs()).toHaveLength(1)
      // The signal reaches the demo's process only (as `kill PID` sends it), not anvil's.
      demo.signal('SIGINT')
      expect(await demo.exited(15_000), demo.io.stderr).toEqual({ code: 130, signal: null })
      expect(demoDirs()).toEqual([])
      expect(await rpcChainId(rpcUrl)).toBeUndefined()
    } finally {
      demo.kill()
      rmSync(tmp, { recursive: true, force: true })
    }
  })
})
