import type { HoldStatus, JournalKind, Source } from '../types.ts'
import type {
  BindingRow,
  BudgetRow,
  ChainBlockRow,
  ChainCursorRow,
  ChainLogRow,
  EntryRow,
  HoldRow,
  JournalRow,
  OutboxRow,
} from './types.ts'

/**
 * Each table's columns in statement order, and the codecs between a row of the
 * store (strings and numbers) and a row of the engine (bigints, booleans).
 * Both dialects share them; only placeholders and locking differ.
 */
type Raw = Record<string, unknown>
type Param = string | number | null

export type TableCodec<T> = {
  table: string
  columns: readonly string[]
  encode(row: T): Param[]
  decode(raw: Raw): T
}

const amount = (value: bigint): string => value.toString()
const amountOrNull = (value: bigint | null): string | null => (value === null ? null : value.toString())
const big = (value: unknown): bigint => BigInt(value as string | number)
const bigOrNull = (value: unknown): bigint | null => (value === null || value === undefined ? null : big(value))
const num = (value: unknown): number => Number(value)
const numOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value))
const str = (value: unknown): string => value as string
const strOrNull = (value: unknown): string | null => (value === null || value === undefined ? null : (value as string))
const bool = (value: unknown): boolean => Number(value) === 1
const flag = (value: boolean): number => (value ? 1 : 0)

export const budgets: TableCodec<BudgetRow> = {
  table: 'budgets',
  columns: [
    'task_id',
    'asset',
    'decimals',
    'total',
    'spent',
    'reserved',
    'hard_limit',
    'thresholds',
    'fired_mask',
    'exhausted',
    'progress',
    'metadata',
    'closed',
    'created_at',
    'updated_at',
    'closed_at',
    'entry_count',
    'open_holds',
    'next_expiry_at',
    'report',
  ],
  encode: (r) => [
    r.taskId,
    r.asset,
    r.decimals,
    amount(r.total),
    amount(r.spent),
    amount(r.reserved),
    flag(r.hardLimit),
    JSON.stringify(r.thresholds),
    r.firedMask,
    flag(r.exhausted),
    r.progress,
    r.metadata,
    flag(r.closed),
    r.createdAt,
    r.updatedAt,
    r.closedAt,
    r.entryCount,
    r.openHolds,
    r.nextExpiryAt,
    r.report,
  ],
  decode: (x) => ({
    taskId: str(x.task_id),
    asset: str(x.asset),
    decimals: num(x.decimals),
    total: big(x.total),
    spent: big(x.spent),
    reserved: big(x.reserved),
    hardLimit: bool(x.hard_limit),
    thresholds: JSON.parse(str(x.thresholds)) as number[],
    firedMask: num(x.fired_mask),
    exhausted: bool(x.exhausted),
    progress: num(x.progress),
    metadata: strOrNull(x.metadata),
    closed: bool(x.closed),
    createdAt: num(x.created_at),
    updatedAt: num(x.updated_at),
    closedAt: numOrNull(x.closed_at),
    entryCount: num(x.entry_count),
    openHolds: num(x.open_holds),
    nextExpiryAt: numOrNull(x.next_expiry_at),
    report: strOrNull(x.report),
  }),
}

/**
 * The budget fields a change writes, with their columns; the others are fixed when the
 * budget is allocated. The update statement and the writer's row cache both follow it.
 */
export const budgetChanges = {
  spent: 'spent',
  reserved: 'reserved',
  firedMask: 'fired_mask',
  exhausted: 'exhausted',
  progress: 'progress',
  closed: 'closed',
  updatedAt: 'updated_at',
  closedAt: 'closed_at',
  entryCount: 'entry_count',
  openHolds: 'open_holds',
  nextExpiryAt: 'next_expiry_at',
  report: 'report',
} as const satisfies Partial<Record<keyof BudgetRow, string>>

export type BudgetChange = keyof typeof budgetChanges

export const holds: TableCodec<HoldRow> = {
  table: 'holds',
  columns: [
    'id',
    'task_id',
    'ref',
    'key',
    'amount',
    'status',
    'expires_at',
    'created_at',
    'settled_at',
    'captured_amount',
    'entry_id',
    'settle_sig',
    'sig',
  ],
  encode: (r) => [
    r.id,
    r.taskId,
    r.ref,
    r.key,
    amount(r.amount),
    r.status,
    r.expiresAt,
    r.createdAt,
    r.settledAt,
    amountOrNull(r.capturedAmount),
    r.entryId,
    r.settleSig,
    r.sig,
  ],
  decode: (x) => ({
    id: str(x.id),
    taskId: str(x.task_id),
    ref: str(x.ref),
    key: strOrNull(x.key),
    amount: big(x.amount),
    status: str(x.status) as HoldStatus,
    expiresAt: numOrNull(x.expires_at),
    createdAt: num(x.created_at),
    settledAt: numOrNull(x.settled_at),
    capturedAmount: bigOrNull(x.captured_amount),
    entryId: strOrNull(x.entry_id),
    settleSig: strOrNull(x.settle_sig),
    sig: str(x.sig),
  }),
}

export const entries: TableCodec<EntryRow> = {
  table: 'entries',
  columns: [
    'id',
    'task_id',
    'hold_id',
    'amount',
    'peer',
    'tool',
    'reason',
    'at',
    'source',
    'chain_id',
    'hook',
    'block_number',
    'block_hash',
    'tx_hash',
    'log_index',
    'confirmed',
    'reverted',
    'sig',
  ],
  encode: (r) => [
    r.id,
    r.taskId,
    r.holdId,
    amount(r.amount),
    r.peer,
    r.tool,
    r.reason,
    r.at,
    r.source,
    r.chainId,
    r.hook,
    r.blockNumber === null ? null : r.blockNumber.toString(),
    r.blockHash,
    r.txHash,
    r.logIndex,
    flag(r.confirmed),
    flag(r.reverted),
    r.sig,
  ],
  decode: (x) => ({
    id: str(x.id),
    taskId: str(x.task_id),
    holdId: strOrNull(x.hold_id),
    amount: big(x.amount),
    peer: strOrNull(x.peer),
    tool: strOrNull(x.tool),
    reason: strOrNull(x.reason),
    at: num(x.at),
    source: str(x.source) as Source,
    chainId: numOrNull(x.chain_id),
    hook: strOrNull(x.hook),
    blockNumber: bigOrNull(x.block_number),
    blockHash: strOrNull(x.block_hash),
    txHash: strOrNull(x.tx_hash),
    logIndex: numOrNull(x.log_index),
    confirmed: bool(x.confirmed),
    reverted: bool(x.reverted),
    sig: str(x.sig),
  }),
}

export const journal: TableCodec<Omit<JournalRow, 'seq'>> & { decodeWithSeq(raw: Raw): JournalRow } = {
  table: 'journal',
  columns: [
    'task_id',
    'kind',
    'amount',
    'hold_id',
    'entry_id',
    'source',
    'chain',
    'spent_after',
    'reserved_after',
    'at',
  ],
  encode: (r) => [
    r.taskId,
    r.kind,
    amountOrNull(r.amount),
    r.holdId,
    r.entryId,
    r.source,
    r.chain,
    amount(r.spentAfter),
    amount(r.reservedAfter),
    r.at,
  ],
  decode: (x) => journal.decodeWithSeq(x),
  decodeWithSeq: (x) => ({
    seq: big(x.seq),
    taskId: str(x.task_id),
    kind: str(x.kind) as JournalKind,
    amount: bigOrNull(x.amount),
    holdId: strOrNull(x.hold_id),
    entryId: strOrNull(x.entry_id),
    source: str(x.source) as Source,
    chain: strOrNull(x.chain),
    spentAfter: big(x.spent_after),
    reservedAfter: big(x.reserved_after),
    at: num(x.at),
  }),
}

export const outbox: TableCodec<OutboxRow> = {
  table: 'outbox',
  columns: ['id', 'kind', 'task_id', 'payload', 'created_at', 'lease_until'],
  encode: (r) => [r.id, r.kind, r.taskId, r.payload, r.createdAt, r.leaseUntil],
  decode: (x) => ({
    id: str(x.id),
    kind: str(x.kind),
    taskId: str(x.task_id),
    payload: str(x.payload),
    createdAt: num(x.created_at),
    leaseUntil: numOrNull(x.lease_until),
  }),
}

export const chainCursors: TableCodec<ChainCursorRow> = {
  table: 'chain_cursors',
  columns: ['chain_id', 'hook', 'block_number', 'block_hash', 'updated_at'],
  encode: (r) => [r.chainId, r.hook, r.blockNumber.toString(), r.blockHash, r.updatedAt],
  decode: (x) => ({
    chainId: num(x.chain_id),
    hook: str(x.hook),
    blockNumber: big(x.block_number),
    blockHash: str(x.block_hash),
    updatedAt: num(x.updated_at),
  }),
}

export const chainBlocks: TableCodec<ChainBlockRow> = {
  table: 'chain_blocks',
  columns: ['chain_id', 'hook', 'number', 'hash', 'parent_hash'],
  encode: (r) => [r.chainId, r.hook, r.number.toString(), r.hash, r.parentHash],
  decode: (x) => ({
    chainId: num(x.chain_id),
    hook: str(x.hook),
    number: big(x.number),
    hash: str(x.hash),
    parentHash: str(x.parent_hash),
  }),
}

export const chainLogs: TableCodec<ChainLogRow> = {
  table: 'chain_logs',
  columns: [
    'chain_id',
    'hook',
    'block_hash',
    'log_index',
    'block_number',
    'tx_hash',
    'account',
    'token',
    'sender',
    'to_address',
    'amount',
    'ref',
    'disposition',
    'task_id',
    'confirmed',
  ],
  encode: (r) => [
    r.chainId,
    r.hook,
    r.blockHash,
    r.logIndex,
    r.blockNumber.toString(),
    r.txHash,
    r.account,
    r.token,
    r.sender,
    r.to,
    amount(r.amount),
    r.ref,
    r.disposition,
    r.taskId,
    flag(r.confirmed),
  ],
  decode: (x) => ({
    chainId: num(x.chain_id),
    hook: str(x.hook),
    blockHash: str(x.block_hash),
    logIndex: num(x.log_index),
    blockNumber: big(x.block_number),
    txHash: str(x.tx_hash),
    account: str(x.account),
    token: str(x.token),
    sender: str(x.sender),
    to: str(x.to_address),
    amount: big(x.amount),
    ref: str(x.ref),
    disposition: str(x.disposition) as ChainLogRow['disposition'],
    taskId: strOrNull(x.task_id),
    confirmed: bool(x.confirmed),
  }),
}

export const bindings: TableCodec<BindingRow> = {
  table: 'bindings',
  columns: ['chain_id', 'hook', 'account', 'sender', 'task_id', 'token', 'created_at'],
  encode: (r) => [r.chainId, r.hook, r.account, r.sender, r.taskId, r.token, r.createdAt],
  decode: (x) => ({
    chainId: num(x.chain_id),
    hook: str(x.hook),
    account: str(x.account),
    sender: str(x.sender),
    taskId: str(x.task_id),
    token: str(x.token),
    createdAt: num(x.created_at),
  }),
}
