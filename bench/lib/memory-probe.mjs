/**
 * Loaded with `node --import` into a process whose memory section F measures (the
 * `spendguard sync` command). It samples the V8 heap every 10 ms and, when the process
 * exits, writes one line to stderr: `memory-probe {…}` with the kernel's RSS high-water
 * mark (VmHWM), the heap's sampled peak, and the heap left after a full GC (when node runs
 * with --expose-gc). Plain JavaScript, so it needs no loader of its own.
 */
import { readFileSync } from 'node:fs'

let heapPeak = process.memoryUsage().heapUsed
const started = performance.now()
const sampler = setInterval(() => {
  heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
}, 10)
sampler.unref()

process.on('exit', () => {
  heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]
  const gc = globalThis.gc
  gc?.()
  const report = {
    peakRssBytes: kb === undefined ? null : Number(kb) * 1024,
    heapPeak,
    heapAfterGc: gc ? process.memoryUsage().heapUsed : null,
    elapsedMs: performance.now() - started,
  }
  process.stderr.write(`memory-probe ${JSON.stringify(report)}\n`)
})
