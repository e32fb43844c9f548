import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  BaseError,
  ContractFunctionRevertedError,
  concat,
  createPublicClient,
  createWalletClient,
  defineChain,
  encodeFunctionData,
  encodePacked,
  getAddress,
  http,
  isAddressEqual,
  keccak256,
  parseEventLogs,
  toHex,
  zeroAddress,
  zeroHash,
  type Address,
  type Hex,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import {
  minimalAccountAbi,
  minimalAccountBytecode,
  mockErc20Abi,
  mockErc20Bytecode,
  spendingHookAbi,
  spendingHookBytecode,
} from '../src/onchain/abi.generated.ts'
import { startAnvil, type AnvilInstance } from './helpers/anvil.ts'

// anvil's default account 0 (a well-known test key funded with 10,000 ETH) and account 1's address.
const ownerKey: Hex = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
const recipient: Address = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'

const singleMode: Hex = `0x${'00'.repeat(32)}`
const usdc = 1_000_000n
/** The account's execute reverts with the hook's errors, so decode with both ABIs. */
const accountAndHookAbi = [...minimalAccountAbi, ...spendingHookAbi] as const

/** Starts clients on `anvil`, deploys token, hook and account, mints to the account and installs the hook. */
async function deployAll(anvil: AnvilInstance) {
  const owner = privateKeyToAccount(ownerKey)
  const chain = defineChain({
    id: anvil.chainId,
    name: 'anvil',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [anvil.rpcUrl] } },
  })
  const publicClient = createPublicClient({ chain, transport: http(anvil.rpcUrl) })
  const walletClient = createWalletClient({ chain, transport: http(anvil.rpcUrl), account: owner })

  async function mined(hash: Hex) {
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    if (receipt.status !== 'success') throw new Error(`transaction ${hash} reverted`)
    return receipt
  }
  async function deployed(hash: Hex): Promise<Address> {
    const { contractAddress } = await mined(hash)
    if (!contractAddress) throw new Error(`transaction ${hash} deployed nothing`)
    return getAddress(contractAddress)
  }

  const token = await deployed(
    await walletClient.deployContract({ abi: mockErc20Abi, bytecode: mockErc20Bytecode, args: ['Mock USD', 'mUSD'] }),
  )
  const hook = await deployed(await walletClient.deployContract({ abi: spendingHookAbi, bytecode: spendingHookBytecode }))
  const account = await deployed(
    await walletClient.deployContract({ abi: minimalAccountAbi, bytecode: minimalAccountBytecode, args: [owner.address] }),
  )
  await mined(
    await walletClient.writeContract({ address: token, abi: mockErc20Abi, functionName: 'mint', args: [account, 1_000n * usdc] }),
  )
  await mined(
    await walletClient.writeContract({
      address: account,
      abi: minimalAccountAbi,
      functionName: 'installModule',
      args: [4n, hook, '0x'],
    }),
  )

  /** `execute(single, target ‖ value ‖ callData)` from the owner; returns the receipt. */
  async function executeSingle(target: Address, value: bigint, callData: Hex) {
    return mined(
      await walletClient.writeContract({
        address: account,
        abi: minimalAccountAbi,
        functionName: 'execute',
        args: [singleMode, encodePacked(['address', 'uint256', 'bytes'], [target, value, callData])],
      }),
    )
  }

  /** The revert of `execute(single, ...)` from the owner, decoded with the account's and the hook's ABIs. */
  async function executeSingleRevert(target: Address, value: bigint, callData: Hex) {
    const error = await publicClient
      .simulateContract({
        address: account,
        abi: accountAndHookAbi,
        functionName: 'execute',
        args: [singleMode, encodePacked(['address', 'uint256', 'bytes'], [target, value, callData])],
        account: owner,
      })
      .then(
        () => undefined,
        (caught: unknown) => caught,
      )
    if (!(error instanceof BaseError)) throw new Error('execute did not revert')
    const reverted = error.walk((cause) => cause instanceof ContractFunctionRevertedError)
    if (!(reverted instanceof ContractFunctionRevertedError)) throw error
    return reverted.data
  }

  return { owner, publicClient, walletClient, mined, token, hook, account, executeSingle, executeSingleRevert }
}

function transferWithRef(to: Address, amount: bigint, ref: Hex): Hex {
  return concat([encodeFunctionData({ abi: mockErc20Abi, functionName: 'transfer', args: [to, amount] }), ref])
}

describe('startAnvil', () => {
  test('behavior: the block states anvil keeps on disk are removed once it stops', async () => {
    const anvil = await startAnvil()
    try {
      await fetch(anvil.rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'anvil_mine', params: ['0x800'] }),
      })
      // Past a few hundred blocks anvil writes older states under $HOME/.foundry/anvil/tmp.
      const states = join(anvil.home, '.foundry', 'anvil', 'tmp')
      expect(readdirSync(states).length).toBeGreaterThan(0)
    } finally {
      await anvil.stop()
    }
    expect(existsSync(anvil.home)).toBe(false)
  })

  test('behavior: home directories left by anvils killed with their process are removed at the next start', async () => {
    // A pid that ran and is gone, and one that runs (this process).
    const gone = spawnSync(process.execPath, ['-e', '']).pid as number
    const home = (pid: number) => {
      const dir = mkdtempSync(join(tmpdir(), 'spendguard-anvil-'))
      mkdirSync(join(dir, '.foundry', 'anvil', 'tmp'), { recursive: true })
      writeFileSync(join(dir, 'anvil.pid'), String(pid))
      return dir
    }
    const stale = home(gone)
    const live = home(process.pid)
    try {
      const anvil = await startAnvil()
      await anvil.stop()
      expect(existsSync(stale)).toBe(false)
      expect(existsSync(live)).toBe(true)
    } finally {
      rmSync(live, { recursive: true, force: true })
      rmSync(stale, { recursive: true, force: true })
    }
  })
})

describe('SpendingHook on anvil', () => {
  let anvil: AnvilInstance | undefined
  let ctx: Awaited<ReturnType<typeof deployAll>>

  beforeAll(async () => {
    anvil = await startAnvil()
    ctx = await deployAll(anvil)

    // perTx 100, perWindow 150 per hour, cumulative 1,000 (mUSD, 6 decimals), set by the account itself.
    const setLimits = encodeFunctionData({
      abi: spendingHookAbi,
      functionName: 'setLimits',
      args: [ctx.token, 100n * usdc, 150n * usdc, 3600, 1_000n * usdc],
    })
    const receipt = await ctx.executeSingle(ctx.hook, 0n, setLimits)
    const [limitsSet] = parseEventLogs({ abi: spendingHookAbi, logs: receipt.logs, eventName: 'LimitsSet' })
    expect(limitsSet?.args).toEqual({
      account: ctx.account,
      token: ctx.token,
      perTx: 100n * usdc,
      perWindow: 150n * usdc,
      windowSeconds: 3600,
      cumulative: 1_000n * usdc,
    })
  })

  afterAll(async () => {
    await anvil?.stop()
  })

  test('default: a transfer through execute logs SpendRecorded with its ref', async () => {
    const { token, hook, account, owner } = ctx
    const ref = keccak256(toHex('hold-1'))
    const receipt = await ctx.executeSingle(token, 0n, transferWithRef(recipient, 25n * usdc, ref))

    const logs = parseEventLogs({ abi: spendingHookAbi, logs: receipt.logs, eventName: 'SpendRecorded' })
    expect(logs).toHaveLength(1)
    expect(isAddressEqual(logs[0]!.address, hook)).toBe(true)
    expect(logs[0]?.args).toEqual({
      account,
      token,
      sender: owner.address,
      to: recipient,
      amount: 25n * usdc,
      windowSpent: 25n * usdc,
      cumulativeSpent: 25n * usdc,
      ref,
    })

    const balance = await ctx.publicClient.readContract({
      address: token,
      abi: mockErc20Abi,
      functionName: 'balanceOf',
      args: [recipient],
    })
    expect(balance).toBe(25n * usdc)

    const state = await ctx.publicClient.readContract({
      address: hook,
      abi: spendingHookAbi,
      functionName: 'spendState',
      args: [account, token],
    })
    expect(state).toMatchObject({ perTx: 100n * usdc, windowSpent: 25n * usdc, cumulativeSpent: 25n * usdc })
    expect(state.windowStart).toBeGreaterThan(0n)
  })

  test('behavior: native value logs token address(0) and a zero ref; a zero-value call logs nothing', async () => {
    const { account, hook } = ctx
    const idle = await ctx.executeSingle(recipient, 0n, '0x')
    expect(parseEventLogs({ abi: spendingHookAbi, logs: idle.logs, eventName: 'SpendRecorded' })).toHaveLength(0)

    await ctx.mined(await ctx.walletClient.sendTransaction({ to: account, value: 10n ** 18n }))
    const paid = await ctx.executeSingle(recipient, 10n ** 17n, '0x')
    const logs = parseEventLogs({ abi: spendingHookAbi, logs: paid.logs, eventName: 'SpendRecorded' })
    expect(logs).toHaveLength(1)
    expect(isAddressEqual(logs[0]!.address, hook)).toBe(true)
    expect(logs[0]?.args).toMatchObject({
      token: zeroAddress,
      to: recipient,
      amount: 10n ** 17n,
      windowSpent: 0n,
      cumulativeSpent: 10n ** 17n,
      ref: zeroHash,
    })
  })

  test('behavior: a transfer over the per-transaction limit reverts with PerTxLimitExceeded', async () => {
    const { token } = ctx
    const data = await ctx.executeSingleRevert(token, 0n, transferWithRef(recipient, 101n * usdc, keccak256(toHex('hold-2'))))
    expect(data?.errorName).toBe('PerTxLimitExceeded')
    expect(data?.args).toEqual([token, 101n * usdc, 100n * usdc])
  })

  test('behavior: a transfer over what remains of the window reverts with WindowLimitExceeded', async () => {
    const { token } = ctx
    // 25 spent in this window by the first test; after 100 more, 25 of 150 remain.
    await ctx.executeSingle(token, 0n, transferWithRef(recipient, 100n * usdc, keccak256(toHex('hold-3'))))
    const data = await ctx.executeSingleRevert(token, 0n, transferWithRef(recipient, 26n * usdc, keccak256(toHex('hold-4'))))
    expect(data?.errorName).toBe('WindowLimitExceeded')
    expect(data?.args).toEqual([token, 26n * usdc, 25n * usdc])
  })
})
