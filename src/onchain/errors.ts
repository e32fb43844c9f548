import { SpendguardError } from '../engine/errors.ts'

/** A reorg reached below the block hashes the tracker keeps: it stops rather than diverge. */
export class ReorgTooDeepError extends SpendguardError {
  override name = 'ReorgTooDeepError'
  override readonly code = 'REORG_TOO_DEEP'
  readonly chainId: number
  /** The oldest block the tracker still had a hash for. */
  readonly oldestKnown: bigint
  readonly reorgDepthMax: number
  constructor({ chainId, oldestKnown, reorgDepthMax }: { chainId: number; oldestKnown: bigint; reorgDepthMax: number }) {
    super(
      `Reorg on chain ${chainId} reaches below block ${oldestKnown}, deeper than the ${reorgDepthMax} blocks kept; the tracker stopped.`,
      { details: 'Raise reorgDepthMax, or rebuild the chain state from a block below the fork.' },
    )
    this.chainId = chainId
    this.oldestKnown = oldestKnown
    this.reorgDepthMax = reorgDepthMax
  }
}

/**
 * The node's head is below every block hash the tracker keeps, and nothing the ledger has
 * tells a node far behind from a chain that started over. Nothing is applied meanwhile; the
 * tracker goes on, and once the node reaches the kept blocks their hashes decide.
 */
export class NodeBehindWindowError extends SpendguardError {
  override name = 'NodeBehindWindowError'
  override readonly code = 'NODE_BEHIND_WINDOW'
  readonly chainId: number
  /** The node's head. */
  readonly head: bigint
  /** The oldest block the tracker keeps a hash for. */
  readonly oldestKept: bigint
  constructor({ chainId, head, oldestKept }: { chainId: number; head: bigint; oldestKept: bigint }) {
    super(
      `The node's head on chain ${chainId} (block ${head}) is below every block the tracker keeps (oldest ${oldestKept}): a node far behind, or a chain that started over; nothing is applied until it reaches block ${oldestKept}.`,
      {
        details:
          'A node behind catches up and the tracker goes on; a chain that started over stops it with ReorgTooDeepError once it gets there. Until then the spends already applied stay counted.',
      },
    )
    this.chainId = chainId
    this.head = head
    this.oldestKept = oldestKept
  }
}

/** The RPC endpoint serves another chain than the tracker was configured for. */
export class ChainMismatchError extends SpendguardError {
  override name = 'ChainMismatchError'
  override readonly code = 'CHAIN_MISMATCH'
  readonly expected: number
  readonly actual: number
  constructor({ expected, actual }: { expected: number; actual: number }) {
    super(`RPC serves chain ${actual}, the tracker follows chain ${expected}.`)
    this.expected = expected
    this.actual = actual
  }
}

/** An RPC request still failed after every retry. */
export class RpcFailedError extends SpendguardError {
  override name = 'RpcFailedError'
  override readonly code = 'RPC_FAILED'
  readonly method: string
  readonly attempts: number
  constructor({ method, attempts, cause }: { method: string; attempts: number; cause: unknown }) {
    super(`RPC ${method} failed after ${attempts} attempts: ${(cause as Error)?.message?.split('\n')[0] ?? cause}.`, {
      cause,
    })
    this.method = method
    this.attempts = attempts
  }
}

/** Another process moved this chain's cursor; the batch was not applied and sync resumes from the stored cursor. */
export class CursorMovedError extends SpendguardError {
  override name = 'CursorMovedError'
  override readonly code = 'CURSOR_MOVED'
  constructor() {
    super('The chain cursor was moved by another process.')
  }
}

/** The RPC node answered with two different logs at one position: nothing from that answer is applied. */
export class RpcInconsistentError extends SpendguardError {
  override name = 'RpcInconsistentError'
  override readonly code = 'RPC_INCONSISTENT'
  readonly blockNumber: bigint
  readonly logIndex: number
  constructor({ blockNumber, logIndex }: { blockNumber: bigint; logIndex: number }) {
    super(`RPC returned two different logs at block ${blockNumber}, log index ${logIndex}; none of that answer was applied.`)
    this.blockNumber = blockNumber
    this.logIndex = logIndex
  }
}
