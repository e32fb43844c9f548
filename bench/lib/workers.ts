import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'

/**
 * Child processes running bench/worker.ts. The parent sends one JSON command per line on
 * stdin; the worker answers one JSON line per command on stdout. Commands run one at a
 * time per worker, so `prepare` on every worker, then `run` with a common start time,
 * gives processes that start together.
 */
const workerPath = fileURLToPath(new URL('../worker.ts', import.meta.url))
const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export type Worker = {
  pid: number
  call<T>(command: Record<string, unknown>): Promise<T>
  /** Asks the worker to exit and waits for it. */
  close(): Promise<void>
  exited: Promise<number | null>
}

export async function startWorker(nodeOptions: string[] = []): Promise<Worker> {
  const child = spawn(process.execPath, [...nodeOptions, '--import', 'tsx', workerPath], { stdio: ['pipe', 'pipe', 'pipe'] })
  running.add(child)
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8_000)
  })
  const waiting: { resolve(value: unknown): void; reject(error: Error): void }[] = []
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      running.delete(child)
      for (const w of waiting.splice(0)) w.reject(new Error(`bench worker exited ${code}: ${stderr.trim().slice(-2000)}`))
      resolve(code)
    }),
  )
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  lines.on('line', (line) => {
    const answer = JSON.parse(line) as { ok: boolean; result?: unknown; error?: string }
    const w = waiting.shift()
    if (!w) return
    if (answer.ok) w.resolve(answer.result)
    else w.reject(new Error(`bench worker: ${answer.error}`))
  })
  const worker: Worker = {
    pid: child.pid as number,
    call<T>(command: Record<string, unknown>) {
      return new Promise<T>((resolve, reject) => {
        waiting.push({ resolve: resolve as (v: unknown) => void, reject })
        child.stdin?.write(`${JSON.stringify(command)}\n`)
      })
    },
    async close() {
      if (child.exitCode !== null) return
      child.stdin?.end()
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
    exited,
  }
  await worker.call({ cmd: 'ping' })
  return worker
}

export async function startWorkers(count: number): Promise<Worker[]> {
  return Promise.all(Array.from({ length: count }, () => startWorker()))
}
