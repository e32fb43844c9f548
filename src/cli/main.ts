import { Command, CommanderError, Option } from 'commander'
import { assertDecimalText, assertDecimals, decimalsMax, maxAmount, parseUnits, reaches, toFraction } from '../engine/amount.ts'
import { type Guard, createGuard } from '../engine/guard.ts'
import { InvalidAmountError, InvalidArgumentError } from '../engine/errors.ts'
import { defaultDbUrl } from '../engine/store/index.ts'
import type { TaskBudget } from '../engine/types.ts'
import * as v from '../engine/validate.ts'
import { assertAddress, assertScope, bindAccount, unbindAccount } from '../onchain/bindings.ts'
import { assertRpcUrl } from '../onchain/rpc.ts'
import { amount, bar, budgetLine, errorLine, exitCodeOf, exitCodes, json, jsonLine, percent, table, thresholdPercent } from './format.ts'
import { runSync } from './sync.ts'

/**
 * `spendguard`: the command line. Every command takes `--db` (default
 * `sqlite:./spendguard.db`, or env SPENDGUARD_DB) and `--json`; amounts are decimal
 * strings in the asset's units (`12.5` USDC).
 */
type Common = { db?: string; json?: boolean }

const out = (line: string): void => {
  process.stdout.write(`${line}\n`)
}

/** The units of the task an error is about, for a readable error line. */
let errorUnits: { decimals: number; asset: string } | undefined

async function withGuard<T>(options: Common, fn: (guard: Guard) => Promise<T>): Promise<T> {
  // Every command that opens a guard is built through `common()`, whose `--db` falls back to
  // env SPENDGUARD_DB and then to the default URL, so `options.db` is always set here.
  const guard = await createGuard({ db: options.db })
  try {
    return await fn(guard)
  } finally {
    await guard.destroy()
  }
}

async function unitsOf(guard: Guard, taskId: string) {
  const b = await guard.get(taskId)
  errorUnits = { decimals: b.decimals, asset: b.asset }
  return b
}

function common(command: Command): Command {
  return command
    .addOption(new Option('--db <url>', 'store URL: sqlite:PATH or postgres://…').env('SPENDGUARD_DB').default(defaultDbUrl))
    .option('--json', 'print JSON instead of tables')
}

/** The bounds of a whole-number option, and how its error names them. */
type Range = { min: bigint; max: bigint; text: string }

/** Milliseconds a timer can wait: Node clamps a longer (or 0) delay of setTimeout to 1 ms. */
const timerMs: Range = { min: 1n, max: 2n ** 31n - 1n, text: '1…2^31-1 (milliseconds)' }
/** What the tracker takes as a count of blocks: a safe integer. */
const blockCount: Range = { min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER), text: '0…2^53-1' }
/** A block number the tracker can ask a node for and the stores can keep. */
const blockNumber: Range = { min: 0n, max: v.seqMax, text: '0…2^63-1' }
/** `guard.journal` returns at most this many entries at a time. */
const journalLimit: Range = { min: 1n, max: 100_000n, text: '1…100000' }

/** A parser of option `name`: digits only, within `range` when one is given; the value stays the text typed. */
function integer(name: string, range?: Range) {
  return (value: string) => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError({ argument: name, value, reason: 'a non-negative integer' })
    if (range && (BigInt(value) < range.min || BigInt(value) > range.max))
      throw new InvalidArgumentError({ argument: name, value, reason: `an integer in ${range.text}` })
    return value
  }
}

/**
 * Checks an amount as typed before the store is opened, so that what no asset could take is
 * refused without creating a database: it is more than 0, has at most as many fractional
 * digits as any asset can have, and its whole part fits a uint256. The asset's own decimals
 * are applied once its budget is read.
 */
function amountText(text: string): string {
  assertDecimalText(text)
  const [whole = '0', fraction = ''] = text.trim().split('.')
  if (!/[1-9]/.test(whole + fraction)) throw new InvalidAmountError({ value: text, reason: 'an amount is more than 0' })
  if (fraction.length > decimalsMax) throw new InvalidAmountError({ value: text, reason: `at most ${decimalsMax} fractional digits` })
  if (BigInt(whole) > maxAmount) throw new InvalidAmountError({ value: text, reason: 'above 2^256-1' })
  return text
}

function showBudget(b: TaskBudget): string[] {
  const a = (v: bigint) => amount(v, b.decimals, b.asset)
  const lines = [
    `task ${b.taskId} · ${b.asset} · ${b.status} · ${b.hardLimit ? 'hard limit' : 'soft limit'}`,
    `${bar(b)}  ${percent(b.spent, b.total)} spent`,
    `  spent     ${a(b.spent)}`,
    `  reserved  ${a(b.reserved)}`,
    `  remaining ${a(b.remaining)}`,
    `  total     ${a(b.total)}`,
  ]
  if (b.overspent > 0n) lines.push(`  overspent ${a(b.overspent)}`)
  const passed = b.thresholds.filter((t) => b.spent > 0n && reaches(b.spent, b.total, toFraction(t)))
  lines.push(`  thresholds ${b.thresholds.map((t) => `${thresholdPercent(t)}%${passed.includes(t) ? ' ✓' : ''}`).join('  ')}`)
  return lines
}

/** `0.5,0.8,0.95` → numbers; anything but plain decimals (`0x1`, `1e-1`, `.5`) is refused as written. */
function fractions(argument: string, text: string): number[] {
  return text.split(',').map((part) => {
    if (!/^\d+(\.\d+)?$/.test(part.trim()))
      throw new InvalidArgumentError({ argument, value: text, reason: 'fractions separated by commas, e.g. 0.5,0.8,0.95' })
    return Number(part.trim())
  })
}

function entryOptions(o: { id?: string; peer?: string; tool?: string; reason?: string }): void {
  v.optionalEntryId('id', o.id)
  v.optionalText('peer', o.peer)
  v.optionalText('tool', o.tool)
  v.optionalText('reason', o.reason)
}

function addresses(o: { chainId: string; hook: `0x${string}`; account: string; sender?: string }): void {
  assertScope({ chainId: Number(o.chainId), hook: o.hook })
  assertAddress('account', o.account)
  if (o.sender !== undefined) assertAddress('sender', o.sender)
}

function buildProgram(): Command {
  const program = new Command('spendguard')
    .description('A spending guard for AI agents that pay: task budgets, holds, an exact ledger, on-chain reconciliation.')
    .showHelpAfterError()
    .exitOverride()

  common(program.command('allocate'))
    .description('give a task a budget')
    .argument('<taskId>')
    .requiredOption('--total <amount>', 'the budget, in whole units (e.g. 25.5)')
    .requiredOption('--asset <name>', 'asset name, e.g. USDC')
    .requiredOption('--decimals <n>', 'decimals of the asset, e.g. 6', integer('decimals'))
    .option('--thresholds <list>', 'alert thresholds as fractions, e.g. 0.5,0.8,0.95')
    .option('--soft', 'soft limit: allow spending past the total, shown as overspent')
    .option('--metadata <json>', 'metadata as a JSON object')
    .addHelpText('after', '\nExample:\n  $ spendguard allocate research-42 --total 25 --asset USDC --decimals 6')
    .action(async (taskId: string, o: Common & { total: string; asset: string; decimals: string; thresholds?: string; soft?: boolean; metadata?: string }) => {
      // Everything is checked before the store is opened (or created).
      v.assertId('taskId', taskId)
      const decimals = Number(o.decimals)
      assertDecimals(decimals)
      v.assertAsset(o.asset)
      let metadata: Record<string, unknown> | undefined
      if (o.metadata !== undefined) {
        try {
          metadata = JSON.parse(o.metadata)
        } catch {
          throw new InvalidArgumentError({ argument: 'metadata', value: o.metadata, reason: 'a JSON object' })
        }
        v.metadata(metadata)
      }
      const parameters = {
        total: parseUnits(o.total, decimals),
        asset: o.asset,
        decimals,
        thresholds: o.thresholds === undefined ? undefined : v.thresholds(fractions('thresholds', o.thresholds)),
        hardLimit: o.soft ? false : undefined,
        metadata,
      }
      return withGuard(o, async (guard) => {
        const b = await guard.allocate(taskId, parameters)
        out(o.json ? json(b) : showBudget(b).join('\n'))
      })
    })

  common(program.command('status'))
    .description('show every budget, or one in detail')
    .argument('[taskId]')
    .option('--watch', 'refresh until stopped')
    .option('--interval <ms>', 'refresh interval with --watch, 1…2147483647', integer('interval', timerMs), '1000')
    .addHelpText('after', '\nExamples:\n  $ spendguard status\n  $ spendguard status research-42 --watch')
    .action(async (taskId: string | undefined, o: Common & { watch?: boolean; interval: string }) => {
      v.optionalId('taskId', taskId)
      return withGuard(o, async (guard) => {
        // Watched JSON is one document per line (NDJSON), so a reader can take each line as it comes.
        const asJson = o.json ? (o.watch ? jsonLine : json) : undefined
        const render = async () => (taskId ? renderTask(guard, taskId, asJson) : renderAll(guard, asJson))
        if (!o.watch) return out(await render())
        // The screen is cleared before each refresh only on a terminal, and never under --json.
        const clear = !o.json && process.stdout.isTTY === true
        let stop = false
        let wake: (() => void) | undefined
        const onSignal = () => {
          stop = true
          wake?.()
        }
        process.once('SIGINT', onSignal)
        process.once('SIGTERM', onSignal)
        try {
          while (!stop) {
            const text = await render()
            process.stdout.write(clear ? `\x1b[2J\x1b[H${text}\n` : o.json ? `${text}\n` : `${text}\n\n`)
            if (stop) break
            // A signal ends the wait at once rather than after the interval.
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, Number(o.interval))
              wake = () => {
                clearTimeout(timer)
                resolve()
              }
            })
            wake = undefined
          }
        } finally {
          process.off('SIGINT', onSignal)
          process.off('SIGTERM', onSignal)
        }
      })
    })

  common(program.command('reserve'))
    .description('hold an amount of a task budget for a payment')
    .argument('<taskId>')
    .argument('<amount>', 'in whole units')
    .option('--key <key>', 'idempotency key: a retry with the same key returns the same hold')
    .option('--ttl <ms>', 'release the hold by itself after this many milliseconds', integer('ttl'))
    .option('--ref <hex>', '32-byte reference an on-chain payment carries')
    .addHelpText('after', '\nExample:\n  $ spendguard reserve research-42 2.5 --key call-17 --ttl 60000')
    .action(async (taskId: string, value: string, o: Common & { key?: string; ttl?: string; ref?: `0x${string}` }) => {
      v.assertId('taskId', taskId)
      amountText(value)
      v.optionalId('key', o.key)
      v.optionalTtlMs(o.ttl === undefined ? undefined : Number(o.ttl))
      v.optionalRef(o.ref)
      return withGuard(o, async (guard) => {
        const b = await unitsOf(guard, taskId)
        const hold = await guard.reserve(taskId, parseUnits(value, b.decimals), {
          key: o.key,
          ttlMs: o.ttl === undefined ? undefined : Number(o.ttl),
          ref: o.ref,
        })
        out(o.json ? json(hold) : `hold ${hold.id} · ${amount(hold.amount, b.decimals, b.asset)} · ref ${hold.ref}`)
      })
    })

  common(program.command('capture'))
    .description('settle a hold with the amount actually paid')
    .argument('<holdId>')
    .argument('<amount>', 'in whole units; less than the hold releases the rest')
    .option('--id <id>', 'entry id')
    .option('--peer <peer>', 'who was paid')
    .option('--tool <tool>', 'what was paid for')
    .option('--reason <reason>')
    .addHelpText('after', '\nExample:\n  $ spendguard capture hold_0190… 1.75 --peer api.example.com')
    .action(async (holdId: string, value: string, o: Common & { id?: string; peer?: string; tool?: string; reason?: string }) => {
      v.assertId('holdId', holdId)
      amountText(value)
      entryOptions(o)
      return withGuard(o, async (guard) => {
        const hold = await guard.hold(holdId)
        const b = await unitsOf(guard, hold.taskId)
        const entry = await guard.capture(holdId, parseUnits(value, b.decimals), { id: o.id, peer: o.peer, tool: o.tool, reason: o.reason })
        out(o.json ? json(entry) : `captured ${amount(entry.amount, b.decimals, b.asset)} on ${b.taskId} (entry ${entry.id})`)
      })
    })

  common(program.command('release'))
    .description('release a hold; its amount returns to the budget')
    .argument('<holdId>')
    .addHelpText('after', '\nExample:\n  $ spendguard release hold_0190…')
    .action(async (holdId: string, o: Common) => {
      v.assertId('holdId', holdId)
      return withGuard(o, async (guard) => {
        const hold = await guard.release(holdId)
        const b = await unitsOf(guard, hold.taskId)
        out(o.json ? json(hold) : `released ${amount(hold.amount, b.decimals, b.asset)} on ${b.taskId}`)
      })
    })

  common(program.command('record'))
    .description('record a spend that had no hold')
    .argument('<taskId>')
    .argument('<amount>', 'in whole units')
    .option('--id <id>', 'entry id: a retry with the same id records once')
    .option('--peer <peer>')
    .option('--tool <tool>')
    .option('--reason <reason>')
    .addHelpText('after', '\nExample:\n  $ spendguard record research-42 0.30 --peer api.example.com --id inv-88')
    .action(async (taskId: string, value: string, o: Common & { id?: string; peer?: string; tool?: string; reason?: string }) => {
      v.assertId('taskId', taskId)
      amountText(value)
      entryOptions(o)
      return withGuard(o, async (guard) => {
        const b = await unitsOf(guard, taskId)
        const entry = await guard.record(taskId, { amount: parseUnits(value, b.decimals), id: o.id, peer: o.peer, tool: o.tool, reason: o.reason })
        out(o.json ? json(entry) : `recorded ${amount(entry.amount, b.decimals, b.asset)} on ${taskId} (entry ${entry.id})`)
      })
    })

  common(program.command('close'))
    .description('close a task: release its holds and print its report')
    .argument('<taskId>')
    .addHelpText('after', '\nExample:\n  $ spendguard close research-42')
    .action(async (taskId: string, o: Common) => {
      v.assertId('taskId', taskId)
      return withGuard(o, async (guard) => {
        const b = await unitsOf(guard, taskId)
        const report = await guard.close(taskId)
        if (o.json) return out(json(report))
        out(`closed ${taskId}: spent ${amount(report.spent, b.decimals, b.asset)} of ${amount(report.total, b.decimals, b.asset)}, ${report.entryCount} entries, ${report.releasedHolds} holds released, ${(report.durationMs / 1000).toFixed(1)} s`)
      })
    })

  common(program.command('bind'))
    .description("map an account's on-chain spends (through a SpendingHook) to a task")
    .argument('<taskId>')
    .requiredOption('--chain-id <n>', 'chain id', integer('chain-id'))
    .requiredOption('--hook <address>', 'the SpendingHook')
    .requiredOption('--account <address>', 'the smart account')
    .option('--sender <address>', 'only spends this sender makes through the account')
    .option('--token <address>', "the token carrying the task's asset (zero address: native)", '0x0000000000000000000000000000000000000000')
    .addHelpText('after', '\nExample:\n  $ spendguard bind research-42 --chain-id 8453 --hook 0x… --account 0x… --token 0x833589fC…')
    .action(async (taskId: string, o: Common & { chainId: string; hook: `0x${string}`; account: `0x${string}`; sender?: `0x${string}`; token: `0x${string}` }) => {
      v.assertId('taskId', taskId)
      addresses(o)
      assertAddress('token', o.token)
      return withGuard(o, async (guard) => {
        const row = await bindAccount(guard, { chainId: Number(o.chainId), hook: o.hook }, { account: o.account, sender: o.sender, taskId, token: o.token })
        out(o.json ? json(row) : `bound ${row.account}${row.sender ? ` (sender ${row.sender})` : ''} on chain ${row.chainId} to ${taskId}, token ${row.token}`)
      })
    })

  common(program.command('unbind'))
    .description('remove the binding `bind` made; later spends of the account are kept as unbound')
    .requiredOption('--chain-id <n>', 'chain id', integer('chain-id'))
    .requiredOption('--hook <address>', 'the SpendingHook')
    .requiredOption('--account <address>', 'the smart account')
    .option('--sender <address>', 'the sender the binding names, if it names one')
    .addHelpText('after', '\nExample:\n  $ spendguard unbind --chain-id 8453 --hook 0x… --account 0x…')
    .action(async (o: Common & { chainId: string; hook: `0x${string}`; account: `0x${string}`; sender?: `0x${string}` }) => {
      addresses(o)
      return withGuard(o, async (guard) => {
        const removed = await unbindAccount(guard, { chainId: Number(o.chainId), hook: o.hook }, { account: o.account, sender: o.sender })
        if (!removed) process.exitCode = exitCodes.notFound
        const what = `${o.account.toLowerCase()}${o.sender ? ` (sender ${o.sender.toLowerCase()})` : ''} on chain ${Number(o.chainId)}`
        out(o.json ? json({ removed }) : removed ? `unbound ${what}` : `no binding for ${what}`)
      })
    })

  common(program.command('journal'))
    .description('list journal entries in order')
    .option('--task <taskId>')
    .option('--after <seq>', 'entries after this sequence number', integer('after'))
    .option('--limit <n>', 'at most this many, 1…100000', integer('limit', journalLimit), '50')
    .addHelpText('after', '\nExample:\n  $ spendguard journal --task research-42 --limit 20')
    .action(async (o: Common & { task?: string; after?: string; limit: string }) => {
      const query = { taskId: o.task, afterSeq: o.after === undefined ? undefined : BigInt(o.after), limit: Number(o.limit) }
      v.optionalId('task', o.task)
      if (query.afterSeq !== undefined && query.afterSeq > v.seqMax)
        throw new InvalidArgumentError({ argument: 'after', value: o.after, reason: 'a sequence number in 0…2^63-1' })
      return withGuard(o, async (guard) => {
        const rows = await guard.journal(query)
        if (o.json) return out(json(rows))
        const units = new Map<string, TaskBudget>()
        for (const r of rows) if (!units.has(r.taskId)) units.set(r.taskId, await guard.get(r.taskId))
        out(
          table(
            rows.map((r) => {
              const b = units.get(r.taskId) as TaskBudget
              return {
                seq: String(r.seq),
                task: r.taskId,
                kind: r.kind,
                amount: r.amount === undefined ? '' : amount(r.amount, b.decimals),
                source: r.source,
                spent: amount(r.after.spent, b.decimals),
                reserved: amount(r.after.reserved, b.decimals),
                at: new Date(r.at).toISOString(),
              }
            }),
          ),
        )
      })
    })

  common(program.command('verify'))
    .description('recompute every budget from the journal and compare')
    .addHelpText('after', '\nExample:\n  $ spendguard verify')
    .action(async (o: Common) =>
      withGuard(o, async (guard) => {
        const result = await guard.verify()
        if (o.json) out(json(result))
        else if (result.ok) out('verify: ok, every budget matches its journal')
        else out(['verify: FAILED', ...result.problems.map((p) => `  ${p}`)].join('\n'))
        if (!result.ok) process.exitCode = exitCodes.verifyFailed
      }),
    )

  common(program.command('sync'))
    .description('follow SpendingHook events and reconcile them into the ledger (runs until stopped)')
    .requiredOption('--rpc <url>', 'JSON-RPC endpoint')
    .requiredOption('--chain-id <n>', 'chain id', integer('chain-id'))
    .requiredOption('--hook <address>', 'the SpendingHook')
    .option('--from-block <n>', 'first block when no cursor is stored, 0…2^63-1', integer('from-block', blockNumber), '0')
    .option('--confirmations <n>', 'depth at which a log counts as confirmed', integer('confirmations', blockCount), '12')
    .option('--poll-interval <ms>', 'how often to poll for new blocks, 1…2147483647', integer('poll-interval', timerMs), '2000')
    .option('--reorg-depth <n>', 'blocks of hashes kept to undo reorgs', integer('reorg-depth', blockCount), '64')
    .option('--once', 'sync up to the head, then exit')
    .addHelpText('after', '\nExample:\n  $ spendguard sync --rpc http://127.0.0.1:8545 --chain-id 31337 --hook 0x… --from-block 1')
    .action(async (o: Common & { rpc: string; chainId: string; hook: `0x${string}`; fromBlock: string; confirmations: string; pollInterval: string; reorgDepth: string; once?: boolean }) => {
      assertRpcUrl(o.rpc)
      assertScope({ chainId: Number(o.chainId), hook: o.hook })
      return withGuard(o, (guard) =>
        runSync(guard, {
          rpcUrl: o.rpc,
          chainId: Number(o.chainId),
          hook: o.hook,
          fromBlock: BigInt(o.fromBlock),
          confirmations: Number(o.confirmations),
          pollIntervalMs: Number(o.pollInterval),
          reorgDepthMax: Number(o.reorgDepth),
          once: o.once === true,
          json: o.json === true,
        }),
      )
    })

  program
    .command('demo')
    .description('start a local anvil, deploy the contracts, and run an agent that pays under a budget')
    .option('--json', 'print the final report as JSON')
    .option('--db <url>', 'keep the demo ledger in this store (default: a temporary file, removed at the end)')
    .addHelpText('after', '\nExamples:\n  $ spendguard demo\n  $ spendguard demo --db sqlite:./demo.db')
    .action(async (o: { json?: boolean; db?: string }) => {
      const { runDemo } = await import('./demo.ts')
      await runDemo({ json: o.json === true, db: o.db })
    })

  return program
}

/** Renders a value as JSON (`json`, or `jsonLine` for one line); undefined renders text. */
type JsonOf = ((value: unknown) => string) | undefined

async function renderAll(guard: Guard, asJson?: JsonOf): Promise<string> {
  const budgets = await guard.list()
  if (asJson) return asJson(budgets)
  return table(budgets.map(budgetLine))
}

async function renderTask(guard: Guard, taskId: string, asJson?: JsonOf): Promise<string> {
  const b = await guard.get(taskId)
  const [burn, forecast, holds, entries] = await Promise.all([guard.burnRate(taskId), guard.forecast(taskId), guard.holds(taskId), guard.entries(taskId)])
  const open = holds.filter((h) => h.status === 'open')
  if (asJson) return asJson({ budget: b, burnRatePerMinute: burn, forecast, openHolds: open, lastEntries: entries.slice(-10) })
  const a = (v: bigint) => amount(v, b.decimals, b.asset)
  const lines = showBudget(b)
  lines.push(`  burn rate ${a(burn)}/min`)
  lines.push(`  forecast  ${forecast.projected === null ? 'n/a (no progress reported)' : `${a(forecast.projected)} at completion${forecast.exceedsTotal ? ' — exceeds the total' : ''}`}`)
  lines.push('', `open holds (${open.length})`)
  lines.push(table(open.map((h) => ({ hold: h.id, amount: a(h.amount), expires: h.expiresAt ? new Date(h.expiresAt).toISOString() : '', ref: `${h.ref.slice(0, 10)}…` }))))
  lines.push('', 'last entries')
  lines.push(
    table(
      entries.slice(-5).map((e) => ({
        entry: e.id.length > 24 ? `${e.id.slice(0, 24)}…` : e.id,
        amount: a(e.amount),
        source: e.source + (e.reverted ? ' (reverted)' : ''),
        peer: e.peer ?? '',
        at: new Date(e.at).toISOString(),
      })),
    ),
  )
  return lines.join('\n')
}

/** Runs the command line; resolves with the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
    return typeof process.exitCode === 'number' ? process.exitCode : exitCodes.ok
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version print and exit 0; usage errors were already printed by commander.
      return error.exitCode === 0 ? exitCodes.ok : exitCodes.badInput
    }
    process.stderr.write(`spendguard: ${errorLine(error, errorUnits)}\n`)
    return exitCodeOf(error)
  }
}
