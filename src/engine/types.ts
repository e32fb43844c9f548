/** Where a spend came from. */
export type Source = 'offchain' | 'onchain'

export type BudgetStatus = 'active' | 'exhausted' | 'closed'

export type HoldStatus = 'open' | 'captured' | 'released' | 'expired'

/** The state of one task's budget. Amounts are in the asset's smallest unit. */
export type TaskBudget = {
  taskId: string
  asset: string
  decimals: number
  total: bigint
  spent: bigint
  reserved: bigint
  /** `max(0, total − spent − reserved)` */
  remaining: bigint
  /** `max(0, spent + reserved − total)` */
  overspent: bigint
  status: BudgetStatus
  /** The task's own report of its progress, 0…1. */
  progress: number
  thresholds: readonly number[]
  hardLimit: boolean
  metadata: Record<string, unknown> | undefined
  createdAt: number
  updatedAt: number
  closedAt?: number | undefined
  entryCount: number
  openHolds: number
}

export type Hold = {
  id: string
  /** 32-byte hex reference an on-chain payment can carry so the tracker matches it. */
  ref: `0x${string}`
  taskId: string
  amount: bigint
  status: HoldStatus
  key?: string | undefined
  expiresAt?: number | undefined
  createdAt: number
  settledAt?: number | undefined
  /** The amount captured, when `status` is `captured`. */
  capturedAmount?: bigint | undefined
  entryId?: string | undefined
}

export type ChainPosition = {
  chainId: number
  blockNumber: bigint
  blockHash: `0x${string}`
  txHash: `0x${string}`
  logIndex: number
  confirmed: boolean
}

export type SpendEntry = {
  id: string
  taskId: string
  /**
   * The hold this spend paid for: the one it captured, or, for an on-chain spend whose `ref`
   * named a hold that had already ended or been settled off the chain, that hold.
   */
  holdId?: string | undefined
  amount: bigint
  peer?: string | undefined
  tool?: string | undefined
  reason?: string | undefined
  at: number
  source: Source
  chain?: ChainPosition | undefined
  /** Set when a reorg removed the on-chain fact behind this entry. */
  reverted?: boolean | undefined
}

export type JournalKind =
  | 'allocate'
  | 'reserve'
  | 'capture'
  | 'release'
  | 'expire'
  | 'record'
  /** A run of on-chain spends applied together; `amount` is their sum. */
  | 'reconcile'
  | 'close'
  | 'revert'
  | 'progress'

export type JournalEntry = {
  seq: bigint
  taskId: string
  kind: JournalKind
  amount?: bigint | undefined
  holdId?: string | undefined
  entryId?: string | undefined
  source: Source
  chain?: ChainPosition | undefined
  after: { spent: bigint; reserved: bigint }
  at: number
}

export type BudgetReport = {
  taskId: string
  asset: string
  total: bigint
  spent: bigint
  entryCount: number
  releasedHolds: number
  durationMs: number
  status: 'closed'
}

export type CheckResult = {
  allowed: boolean
  reason?: 'exceeded' | 'closed' | 'exhausted' | 'risk' | undefined
  /** The assessor's explanation when `reason` is `risk`. */
  detail?: string | undefined
  remaining: bigint
}

export type AlertEvent = {
  id: string
  taskId: string
  threshold: number
  spent: bigint
  total: bigint
  at: number
}

export type ExhaustedEvent = {
  id: string
  taskId: string
  spent: bigint
  reserved: bigint
  total: bigint
  at: number
}

export type OverspentEvent = {
  id: string
  taskId: string
  spent: bigint
  total: bigint
  overspent: bigint
  at: number
}

/** On-chain spends that matched no hold, raised once per reconciled batch and task. */
export type UnreservedSpendEvent = {
  id: string
  taskId: string
  /** Sum of the spends. */
  amount: bigint
  count: number
  entryIds: string[]
  chainId: number
  fromBlock: string
  toBlock: string
  at: number
}

export type GuardEvents = {
  alert: AlertEvent
  exhausted: ExhaustedEvent
  overspent: OverspentEvent
  unreserved_spend: UnreservedSpendEvent
}

export type GuardEventName = keyof GuardEvents

export type RiskContext = {
  operation: 'check' | 'reserve' | 'record'
  taskId: string
  amount: bigint
  budget: TaskBudget
  peer?: string | undefined
  tool?: string | undefined
}

export type RiskDecision = { allow: true } | { allow: false; reason: string }

/** Consulted by `check`, `reserve` and `record`; may deny with a reason. */
export type RiskAssessor = (context: RiskContext) => RiskDecision | Promise<RiskDecision>

/** Milliseconds since the epoch. */
export type Clock = () => number
