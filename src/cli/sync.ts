import { setFlagsFromString } from 'node:v8'
import type { Guard } from '../engine/guard.ts'
import { type SyncProgress, type SyncResult, createTracker, stopsTracker } from '../onchain/tracker.ts'
import { json, jsonLine } from './format.ts'

export type RunSyncOptions = {
  rpcUrl: string
  chainId: number
  hook: `0x${string}`
  fromBlock: bigint
  confirmations: number
  pollIntervalMs: number
  reorgDepthMax: number
  once: boolean
  json: boolean
}

const barWidth = 30

function progressLine(p: SyncProgress): string {
  const total = p.toBlock - p.fromBlock + 1n
  const done = p.cursor - p.fromBlock + 1n
  const fraction = total > 0n ? Number((done * 1000n) / total) / 1000 : 1
  const filled = Math.round(fraction * barWidth)
  const rate = p.elapsedMs > 0 ? Math.round((p.logs * 1000) / p.elapsedMs) : 0
  return `backfill [${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}] ${done}/${total} blocks · ${p.logs} logs · ${rate} logs/s`
}

function summary(r: SyncResult): string {
  const parts = [`head ${r.head}`, `blocks ${r.toBlock >= r.fromBlock ? `${r.fromBlock}–${r.toBlock}` : 'none new'}`, `${r.logs} logs`, `${r.applied} applied`]
  if (r.duplicates) parts.push(`${r.duplicates} already seen`)
  if (r.unbound) parts.push(`${r.unbound} unbound`)
  if (r.foreign) parts.push(`${r.foreign} foreign token`)
  if (r.reorgs) parts.push(`${r.reorgs} reorg(s), ${r.reverted} reverted`)
  return `${new Date().toISOString()} ${parts.join(' · ')}`
}

/**
 * Keeps a sync process's heap near what is live. The tracker holds each page of decoded logs
 * until the page commits, so a young-generation collection often finds nearly all of a
 * page's objects alive. V8's allocation-site pretenuring reads that as "these objects live
 * long" and from then on allocates them straight in the old generation, where they stay,
 * dead, until a full collection: the heap climbs to several times its live size first, and
 * whether it does depends on where the collections happened to fall. Pages die young with
 * pretenuring off, which costs a backfill nothing measurable. It is a process-wide V8 flag,
 * so only the sync command sets it; a process embedding the tracker can start node with
 * `--no-allocation-site-pretenuring` for the same effect.
 */
function boundHeap(): void {
  setFlagsFromString('--no-allocation-site-pretenuring')
}

/**
 * `spendguard sync`: backfill with a progress bar, then a summary line per poll. SIGINT or
 * SIGTERM stops after the batch in flight (which commits or rolls back whole); an error on
 * which the tracker stops by itself (ReorgTooDeepError, ChainMismatchError) is thrown.
 */
export async function runSync(guard: Guard, o: RunSyncOptions): Promise<void> {
  boundHeap()
  const tty = process.stderr.isTTY === true
  /** When the progress line was last drawn; 0 when none is on screen since the last summary. */
  let lastDraw = 0
  /** The kind (code) of the last error printed since the last pass that went through. */
  let lastErrorKind = ''
  let finish: () => void = () => {}
  const finished = new Promise<void>((resolve) => {
    finish = resolve
  })
  const tracker = createTracker({
    guard,
    rpcUrl: o.rpcUrl,
    chainId: o.chainId,
    hook: o.hook,
    fromBlock: o.fromBlock,
    confirmations: o.confirmations,
    pollIntervalMs: o.pollIntervalMs,
    reorgDepthMax: o.reorgDepthMax,
    onProgress: (p) => {
      if (o.json || p.phase !== 'backfill') return
      // Throttled from the last line drawn, so a backfill of quick pages still shows its progress.
      const now = Date.now()
      if (tty) {
        if (now - lastDraw > 100 || p.cursor === p.toBlock) {
          process.stderr.write(`\r${progressLine(p)}`)
          lastDraw = now
        }
      } else if (now - lastDraw > 2_000) {
        process.stderr.write(`${progressLine(p)}\n`)
        lastDraw = now
      }
    },
    onSync: (r) => {
      lastErrorKind = ''
      if (tty && lastDraw) process.stderr.write('\n')
      lastDraw = 0
      process.stdout.write(`${o.json ? jsonLine(r) : summary(r)}\n`)
    },
    onError: (error) => {
      if (tty && lastDraw) process.stderr.write('\n')
      lastDraw = 0
      // The tracker has stopped itself: the wait below ends and the error is thrown, as one line.
      if (stopsTracker(error)) return finish()
      // The same kind of error pass after pass (a node far behind, whose head moves; an RPC
      // down) is printed once, until a pass goes through.
      const kind = (error as { code?: string }).code ?? (error as Error).name
      if (kind !== lastErrorKind) process.stderr.write(`sync: ${(error as Error).message.split('\n')[0]}\n`)
      lastErrorKind = kind
    },
  })

  if (o.once) {
    const r = await tracker.syncOnce()
    if (tty && lastDraw) process.stderr.write('\n')
    process.stdout.write(`${o.json ? json(r) : summary(r)}\n`)
    return
  }

  let signals = 0
  const onSignal = () => {
    signals++
    if (signals > 1) process.exit(130)
    process.stderr.write('\nsync: stopping after the batch in flight…\n')
    void tracker.stop().then(finish)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    tracker.start()
    await finished
    await tracker.stop()
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  const status = await tracker.status()
  if (status.error && status.error.name !== 'Error') throw status.error
  process.stderr.write(`sync: stopped at block ${status.cursor?.blockNumber ?? 'none'}\n`)
}
