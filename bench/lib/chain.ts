import type { Address, Hex } from 'viem'
import { deployLocalStack, type LocalStack, type Payment } from '../../src/onchain/local.ts'
import { type AnvilInstance, startAnvil } from '../../test/helpers/anvil.ts'

/**
 * A local chain carrying SpendRecorded logs for the ingest sections (D, F). One anvil and
 * one stack serve both; batches are added lazily, `transfersPerTx` logs per transaction,
 * one transaction per block (anvil mines each on arrival). Creating the logs is setup, not
 * timed in any figure; how long it took is reported beside the figures.
 */
export type ChainFixture = {
  anvil: AnvilInstance
  stack: LocalStack
  transfersPerTx: number
  /** Blocks holding payment batches, oldest first, with the sum of their amounts. */
  batches: { block: bigint; logs: number; amount: bigint }[]
  /** Milliseconds spent creating logs so far. */
  setupMs: number
  /** Makes sure at least `logs` SpendRecorded logs exist. */
  ensureLogs(logs: number): Promise<void>
  /** The range holding exactly the newest `logs` logs (a multiple of transfersPerTx). */
  lastLogs(logs: number): { fromBlock: bigint; logs: number; amount: bigint }
  stop(): Promise<void>
}

const recipientsMax = 100
/** Transactions sent before waiting for their receipts. */
const pipelineMax = 32

export async function createChainFixture({ transfersPerTx = 100 }: { transfersPerTx?: number } = {}): Promise<ChainFixture> {
  const began = performance.now()
  // A block gas limit far above a batch's use keeps the base fee from climbing block after block.
  const anvil = await startAnvil({ args: ['--gas-limit', '1000000000', '--base-fee', '1'] })
  const stack = await deployLocalStack({ rpcUrl: anvil.rpcUrl, mint: 10n ** 30n })
  const recipients = Array.from({ length: recipientsMax }, (_, i) => `0x${(0x1000 + i).toString(16).padStart(40, '0')}` as Address)
  const payments: Payment[] = Array.from({ length: transfersPerTx }, (_, i) => ({
    to: recipients[i % recipientsMax] as Address,
    amount: BigInt(1_000 + i),
  }))
  const amountPerTx = payments.reduce((sum, p) => sum + p.amount, 0n)
  const data = stack.batchCalldata(payments)
  const owner = stack.walletClient.account
  if (!owner) throw new Error('the stack has no wallet account')
  const chain = stack.walletClient.chain
  const gas = ((await stack.publicClient.estimateGas({ account: owner, to: stack.account, data })) * 12n) / 10n
  let nonce = await stack.publicClient.getTransactionCount({ address: owner.address, blockTag: 'pending' })

  const fixture: ChainFixture = {
    anvil,
    stack,
    transfersPerTx,
    batches: [],
    setupMs: performance.now() - began,
    async ensureLogs(logs) {
      const t0 = performance.now()
      const have = () => fixture.batches.length * transfersPerTx
      while (have() < logs) {
        const count = Math.min(pipelineMax, Math.ceil((logs - have()) / transfersPerTx))
        const hashes: Hex[] = []
        for (let i = 0; i < count; i++)
          hashes.push(
            await stack.walletClient.sendTransaction({
              account: owner,
              chain,
              to: stack.account,
              data,
              gas,
              nonce: nonce++,
              maxFeePerGas: 10n ** 9n,
              maxPriorityFeePerGas: 1n,
            }),
          )
        for (const hash of hashes) {
          const receipt = await stack.publicClient.waitForTransactionReceipt({ hash, pollingInterval: 10 })
          if (receipt.status !== 'success') throw new Error(`batch ${hash} reverted`)
          const spends = receipt.logs.filter((l) => l.address.toLowerCase() === stack.hook.toLowerCase()).length
          if (spends !== transfersPerTx) throw new Error(`batch ${hash} emitted ${spends} SpendRecorded logs, expected ${transfersPerTx}`)
          fixture.batches.push({ block: receipt.blockNumber, logs: spends, amount: amountPerTx })
        }
      }
      fixture.setupMs += performance.now() - t0
    },
    lastLogs(logs) {
      const n = Math.ceil(logs / transfersPerTx)
      if (n > fixture.batches.length) throw new Error(`only ${fixture.batches.length * transfersPerTx} logs exist, ${logs} asked`)
      const tail = fixture.batches.slice(fixture.batches.length - n)
      return {
        fromBlock: (tail[0] as { block: bigint }).block,
        logs: tail.reduce((s, b) => s + b.logs, 0),
        amount: tail.reduce((s, b) => s + b.amount, 0n),
      }
    },
    stop: () => anvil.stop(),
  }
  return fixture
}
