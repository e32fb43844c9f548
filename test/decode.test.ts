import fc from 'fast-check'
import { type Hex, decodeEventLog, encodeAbiParameters, encodeEventTopics, getAddress } from 'viem'
import { describe, expect, test } from 'vitest'
import { type RpcLog, decodeSpendLog, spendingHookAbi, spendRecordedTopic } from '../src/index.ts'

const hook = '0x5fbdb2315678afecb367f032d93f642f64180aa3'
const address = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => getAddress(`0x${Buffer.from(b).toString('hex')}`))
const word = fc.bigInt({ min: 0n, max: 2n ** 256n - 1n })
const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => `0x${Buffer.from(b).toString('hex')}` as Hex)

const spend = fc.record({ account: address, token: address, sender: address, to: address, amount: word, windowSpent: word, cumulativeSpent: word, ref: bytes32 })

type Spend = typeof spend extends fc.Arbitrary<infer T> ? T : never

function rpcLog(s: Spend, overrides: Partial<RpcLog> = {}): RpcLog {
  const topics = encodeEventTopics({ abi: spendingHookAbi, eventName: 'SpendRecorded', args: { account: s.account, token: s.token, sender: s.sender } })
  const data = encodeAbiParameters(
    [{ type: 'address' }, { type: 'uint256' }, { type: 'uint256' }, { type: 'uint256' }, { type: 'bytes32' }],
    [s.to, s.amount, s.windowSpent, s.cumulativeSpent, s.ref],
  )
  return {
    address: hook,
    topics: topics as string[],
    data,
    blockNumber: '0x1b4',
    blockHash: `0x${'ab'.repeat(32)}`,
    transactionHash: `0x${'cd'.repeat(32)}`,
    logIndex: '0x7',
    ...overrides,
  }
}

describe('decodeSpendLog', () => {
  test('default: agrees with viem decodeEventLog on random logs', () => {
    fc.assert(
      fc.property(spend, (s) => {
        const log = rpcLog(s)
        const ours = decodeSpendLog(log, hook)
        const { args } = decodeEventLog({ abi: spendingHookAbi, eventName: 'SpendRecorded', topics: log.topics as [Hex], data: log.data as Hex })
        const viem = { args: args as NonNullable<typeof args> }
        expect(ours).toEqual({
          blockNumber: 436n,
          blockHash: log.blockHash,
          txHash: log.transactionHash,
          logIndex: 7,
          account: viem.args.account.toLowerCase(),
          token: viem.args.token.toLowerCase(),
          sender: viem.args.sender.toLowerCase(),
          to: viem.args.to.toLowerCase(),
          amount: viem.args.amount,
          windowSpent: viem.args.windowSpent,
          cumulativeSpent: viem.args.cumulativeSpent,
          ref: viem.args.ref,
        })
      }),
      { numRuns: 500 },
    )
  })

  test('behavior: anything but a well-formed SpendRecorded of the hook is refused', () => {
    fc.assert(
      fc.property(spend, (s) => {
        const good = rpcLog(s)
        expect(decodeSpendLog(good, hook)).toBeDefined()
        expect(decodeSpendLog({ ...good, address: '0x0000000000000000000000000000000000000001' }, hook)).toBeUndefined()
        expect(decodeSpendLog({ ...good, removed: true }, hook)).toBeUndefined()
        // A pending log (no block yet) has no position: not an error, not a spend.
        const pending = { ...good, blockHash: null, blockNumber: null, logIndex: null, transactionHash: null } as unknown as RpcLog
        expect(decodeSpendLog(pending, hook)).toBeUndefined()
        expect(decodeSpendLog({ ...good, blockHash: null } as unknown as RpcLog, hook)).toBeUndefined()
        expect(decodeSpendLog({ ...good, topics: [`0x${'11'.repeat(32)}`, ...good.topics.slice(1)] }, hook)).toBeUndefined()
        expect(decodeSpendLog({ ...good, topics: good.topics.slice(0, 3) }, hook)).toBeUndefined()
        expect(decodeSpendLog({ ...good, data: good.data.slice(0, -2) }, hook)).toBeUndefined()
        const dirty = `0x${'ff'.repeat(12)}${(good.topics[1] as string).slice(26)}`
        expect(decodeSpendLog({ ...good, topics: [spendRecordedTopic, dirty, ...good.topics.slice(2)] }, hook)).toBeUndefined()
      }),
      { numRuns: 100 },
    )
  })

  test('behavior: the hook address matches in any letter case, on either side', () => {
    fc.assert(
      fc.property(spend, (s) => {
        const good = rpcLog(s)
        const decoded = decodeSpendLog(good, hook)
        expect(decoded).toBeDefined()
        expect(decodeSpendLog(good, getAddress(hook))).toEqual(decoded)
        expect(decodeSpendLog({ ...good, address: getAddress(hook) }, hook)).toEqual(decoded)
      }),
      { numRuns: 20 },
    )
  })
})
