import { isAddress } from 'viem'
import type { Guard } from '../engine/guard.ts'
import { InvalidArgumentError } from '../engine/errors.ts'
import type { BindingRow } from '../engine/store/types.ts'
import * as reconcile from './reconcile.ts'

/**
 * Bindings map `(chainId, hook, account, sender?)` to a task and name the token contract
 * that carries the task's asset on that chain. They live in the ledger's database.
 */
export type BindParameters = {
  account: `0x${string}`
  /** Only spends this sender made through the account; any sender when absent. */
  sender?: `0x${string}` | undefined
  taskId: string
  /** The token contract carrying the task's asset on this chain; the zero address for native. */
  token: `0x${string}`
}

export type ChainScope = { chainId: number; hook: `0x${string}` }

export function assertAddress(argument: string, value: unknown): asserts value is `0x${string}` {
  if (typeof value !== 'string' || !isAddress(value, { strict: false }))
    throw new InvalidArgumentError({ argument, value, reason: 'a 20-byte hex address' })
}

export function assertScope(scope: ChainScope): void {
  if (!Number.isSafeInteger(scope.chainId) || scope.chainId <= 0)
    throw new InvalidArgumentError({ argument: 'chainId', value: scope.chainId, reason: 'a positive integer' })
  assertAddress('hook', scope.hook)
}

/**
 * Binds an account's spends through `hook` on `chainId` to a task.
 *
 * @example
 * import { bindAccount, createGuard } from 'spendguard'
 * const guard = await createGuard()
 * await bindAccount(guard, { chainId: 31337, hook }, { account, taskId: 'task-1', token: usdc })
 */
export async function bindAccount(guard: Guard, scope: ChainScope, parameters: BindParameters): Promise<BindingRow> {
  assertScope(scope)
  const o = parameters ?? ({} as BindParameters)
  assertAddress('account', o.account)
  assertAddress('token', o.token)
  if (o.sender !== undefined) assertAddress('sender', o.sender)
  await guard.get(o.taskId)
  const row: BindingRow = {
    chainId: scope.chainId,
    hook: scope.hook.toLowerCase(),
    account: o.account.toLowerCase(),
    sender: o.sender?.toLowerCase() ?? '',
    taskId: o.taskId,
    token: o.token.toLowerCase(),
    createdAt: guard.internal.clock(),
  }
  return guard.internal.submit((ctx) => reconcile.saveBinding(ctx, row))
}

/** Removes a binding; resolves with whether there was one. */
export async function unbindAccount(
  guard: Guard,
  scope: ChainScope,
  parameters: { account: `0x${string}`; sender?: `0x${string}` | undefined },
): Promise<boolean> {
  assertScope(scope)
  assertAddress('account', parameters?.account)
  if (parameters.sender !== undefined) assertAddress('sender', parameters.sender)
  const key = { chainId: scope.chainId, hook: scope.hook.toLowerCase(), account: parameters.account.toLowerCase(), sender: parameters.sender?.toLowerCase() ?? '' }
  return guard.internal.submit((ctx) => reconcile.deleteBinding(ctx, key))
}

export function listBindings(guard: Guard, scope: ChainScope): Promise<BindingRow[]> {
  assertScope(scope)
  return guard.internal.store.chain.bindings(scope.chainId, scope.hook.toLowerCase())
}
