import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const worker = fileURLToPath(new URL('../workers/ledger-worker.ts', import.meta.url))
const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export type Line = Record<string, string>

/** A guard process running `job`; `lines` holds every line it printed so far. */
export function startWorker(job: Record<string, unknown>) {
  const child = spawn(process.execPath, ['--import', 'tsx', worker, JSON.stringify(job)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.add(child)
  const lines: Line[] = []
  let stderr = ''
  let partial = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk
    const parts = partial.split('\n')
    partial = parts.pop() ?? ''
    for (const part of parts) if (part) lines.push(JSON.parse(part) as Line)
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    }),
  )
  return {
    child,
    lines,
    stderr: () => stderr,
    exited,
    /** Resolves once a line matching `predicate` was printed. */
    async waitFor(predicate: (line: Line) => boolean, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs
      while (!lines.some(predicate)) {
        if (Date.now() > deadline) throw new Error(`worker did not print the line in time; stderr: ${stderr}`)
        if (child.exitCode !== null) throw new Error(`worker exited ${child.exitCode}; stderr: ${stderr}`)
        await new Promise((r) => setTimeout(r, 10))
      }
    },
    kill() {
      child.kill('SIGKILL')
      return exited
    },
  }
}
