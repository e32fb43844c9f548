import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Options of {@link startAnvil}. */
export type StartAnvilOptions = {
  /** Chain id anvil reports; default 31337. */
  chainId?: number
  /** Seconds between blocks; default: mine a block per transaction. */
  blockTime?: number
  /** More command-line arguments for anvil, e.g. `['--accounts', '3']`. */
  args?: readonly string[]
  /** How long to wait for anvil to answer `eth_chainId`; default 15 s. */
  startupTimeoutMs?: number
}

/** A running anvil, as returned by {@link startAnvil}. */
export type AnvilInstance = {
  rpcUrl: string
  port: number
  chainId: number
  /** The home directory anvil runs with; the block states it keeps on disk go there. Removed once it has exited. */
  home: string
  /** Stops anvil: SIGTERM, then SIGKILL if it has not exited after 2 s. Safe to call twice. */
  stop(): Promise<void>
}

const host = '127.0.0.1'
const stopGraceMs = 2_000
const pollIntervalMs = 50
const portAttemptsMax = 3
const stderrKeptCharsMax = 4_000

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
/** Each running anvil, with the home directory it was given. */
const running = new Map<ChildProcess, string>()

process.on('exit', () => {
  for (const [child, home] of running) {
    child.kill('SIGKILL')
    removeHome(home)
  }
})

/**
 * Anvil keeps the states of older blocks on disk, under `$HOME/.foundry/anvil/tmp`, and leaves
 * them there when it exits (hundreds of megabytes for a few thousand blocks). Each anvil gets a
 * home directory of its own, removed once it has exited.
 */
function removeHome(home: string): void {
  rmSync(home, { recursive: true, force: true })
}

const homePrefix = 'spendguard-anvil-'

/**
 * Removes the home directories of anvils that are gone without their process removing them (a
 * process killed with SIGKILL). Each home names its anvil's pid; a home whose pid no longer
 * runs is stale. A reused pid keeps a stale home: kept, never one in use removed.
 */
function removeStaleHomes(): void {
  let names: string[]
  try {
    names = readdirSync(tmpdir()).filter((name) => name.startsWith(homePrefix))
  } catch {
    return
  }
  for (const name of names) {
    const home = join(tmpdir(), name)
    let pid: number
    try {
      pid = Number(readFileSync(join(home, 'anvil.pid'), 'utf8'))
    } catch {
      continue
    }
    if (!Number.isSafeInteger(pid) || pid <= 0 || isRunning(pid)) continue
    removeHome(home)
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * The anvil binary: the platform package's own binary when present (no node wrapper in between,
 * so a kill reaches anvil itself), else the npm bin shim.
 */
function anvilBinary(): string {
  const arch = process.arch === 'x64' ? 'amd64' : process.arch
  const platformBinary = join(
    repoRoot,
    'node_modules',
    '@foundry-rs',
    `anvil-${process.platform}-${arch}`,
    'bin',
    process.platform === 'win32' ? 'anvil.exe' : 'anvil',
  )
  if (existsSync(platformBinary)) return platformBinary
  return join(repoRoot, 'node_modules', '.bin', 'anvil')
}

/** A port that was free a moment ago: listen on port 0, read the port, close. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, host, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))))
    })
  })
}

/** The chain id an RPC endpoint answers with, or undefined when it does not answer. */
export async function rpcChainId(rpcUrl: string): Promise<number | undefined> {
  try {
    const response = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      signal: AbortSignal.timeout(1_000),
    })
    if (!response.ok) return undefined
    const body = (await response.json()) as { result?: string }
    return typeof body.result === 'string' ? Number.parseInt(body.result, 16) : undefined
  } catch {
    return undefined
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  const exited = () => {
    const home = running.get(child)
    running.delete(child)
    if (home !== undefined) removeHome(home)
  }
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      exited()
      resolve()
      return
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), stopGraceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      exited()
      resolve()
    })
    child.kill('SIGTERM')
  })
}

async function startOnce(options: StartAnvilOptions, port: number): Promise<AnvilInstance> {
  const chainId = options.chainId ?? 31337
  const args = ['--host', host, '--port', String(port), '--chain-id', String(chainId), '--silent']
  if (options.blockTime !== undefined) args.push('--block-time', String(options.blockTime))
  args.push(...(options.args ?? []))

  const home = mkdtempSync(join(tmpdir(), homePrefix))
  const child = spawn(anvilBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HOME: home } })
  running.set(child, home)
  if (child.pid !== undefined) writeFileSync(join(home, 'anvil.pid'), String(child.pid))
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-stderrKeptCharsMax)
  })
  let spawnError: Error | undefined
  child.once('error', (error) => {
    spawnError = error
  })

  const rpcUrl = `http://${host}:${port}`
  const deadline = Date.now() + (options.startupTimeoutMs ?? 15_000)
  while (Date.now() < deadline) {
    if (spawnError !== undefined || child.exitCode !== null || child.signalCode !== null) {
      running.delete(child)
      removeHome(home)
      const reason = spawnError?.message ?? `exited with ${child.exitCode ?? child.signalCode}`
      throw new Error(`anvil ${reason}${stderr ? `: ${stderr.trim()}` : ''}`)
    }
    const answered = await rpcChainId(rpcUrl)
    if (answered !== undefined) {
      if (answered !== chainId) {
        await stopChild(child)
        throw new Error(`anvil on port ${port} answered chain id ${answered}, expected ${chainId}`)
      }
      return { rpcUrl, port, chainId, home, stop: () => stopChild(child) }
    }
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs))
  }
  await stopChild(child)
  throw new Error(`anvil did not answer eth_chainId on ${rpcUrl} within the startup timeout${stderr ? `: ${stderr.trim()}` : ''}`)
}

/**
 * Starts anvil on 127.0.0.1 on a free port and waits until it answers `eth_chainId`.
 * Any anvil still running when the process exits is killed. Home directories that anvils
 * killed with their process left behind are removed first.
 *
 * @example
 * import { afterAll, beforeAll } from 'vitest'
 * import { startAnvil, type AnvilInstance } from './helpers/anvil.ts'
 *
 * let anvil: AnvilInstance
 * beforeAll(async () => { anvil = await startAnvil() })
 * afterAll(async () => { await anvil.stop() })
 */
export async function startAnvil(options: StartAnvilOptions = {}): Promise<AnvilInstance> {
  removeStaleHomes()
  let lastError: unknown
  // Another process may take the port between our probe and anvil's bind: try a few ports.
  for (let attempt = 0; attempt < portAttemptsMax; attempt++) {
    try {
      return await startOnce(options, await freePort())
    } catch (error) {
      lastError = error
      if (!(error instanceof Error) || !/address already in use|in use|bind/i.test(error.message)) throw error
    }
  }
  throw lastError
}
