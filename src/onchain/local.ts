import {
  type Address,
  type Hex,
  type PublicClient,
  type WalletClient,
  concat,
  createPublicClient,
  createWalletClient,
  defineChain,
  encodeAbiParameters,
  encodeFunctionData,
  encodePacked,
  getAddress,
  http,
  zeroHash,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import {
  minimalAccountAbi,
  minimalAccountBytecode,
  spendingHookAbi,
  spendingHookBytecode,
  testUsdcAbi,
  testUsdcBytecode,
} from './abi.generated.ts'

/**
 * A local stack for development chains (anvil): a USDC-like test token (6 decimals, EIP-3009,
 * so x402 can settle in it), a SpendingHook and a MinimalAccount with the hook installed, plus
 * helpers that pay through the account.
 */

/** The test token's EIP-712 domain, which x402's `exact` scheme signs under. */
export const testUsdcDomain = { name: 'USD Coin', version: '2' } as const

/** anvil's first default key: a well-known development key, funded on every anvil. */
export const anvilDefaultKey: Hex = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'

const singleMode: Hex = zeroHash
const batchMode: Hex = `0x01${'00'.repeat(31)}`

export type Payment = { to: Address; amount: bigint; ref?: Hex | undefined; token?: Address | undefined }

export type LocalStack = {
  publicClient: PublicClient
  walletClient: WalletClient
  chainId: number
  owner: Address
  token: Address
  hook: Address
  account: Address
  /** Sends a transaction and waits for it to be mined; throws if it reverted. */
  mined(hash: Hex): Promise<void>
  /** Mints test tokens (the stack's token unless another is named). */
  mint(args: { to: Address; amount: bigint; token?: Address }): Promise<void>
  /** The account calls `setLimits` on the hook for `token`. */
  setLimits(limits: { token?: Address; perTx?: bigint; perWindow?: bigint; windowSeconds?: number; cumulative?: bigint }): Promise<void>
  /** One ERC-20 transfer through the account, carrying `ref` after the standard arguments. */
  pay(payment: Payment): Promise<Hex>
  /** Several transfers in one batch execution of the account (one transaction). */
  payBatch(payments: Payment[]): Promise<Hex>
  /** Encoded `execute` call data for a batch, for callers that send it themselves. */
  batchCalldata(payments: Payment[]): Hex
}

export async function deployLocalStack({
  rpcUrl,
  privateKey = anvilDefaultKey,
  mint = 10n ** 24n,
}: {
  rpcUrl: string
  privateKey?: Hex
  mint?: bigint
}): Promise<LocalStack> {
  const owner = privateKeyToAccount(privateKey)
  const probe = createPublicClient({ transport: http(rpcUrl) })
  const chainId = await probe.getChainId()
  const chain = defineChain({
    id: chainId,
    name: 'local',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  })
  const publicClient = createPublicClient({ chain, transport: http(rpcUrl), pollingInterval: 50, cacheTime: 0 }) as PublicClient
  const walletClient = createWalletClient({ chain, transport: http(rpcUrl), account: owner })

  const mined = async (hash: Hex) => {
    const receipt = await publicClient.waitForTransactionReceipt({ hash, pollingInterval: 20 })
    if (receipt.status !== 'success') throw new Error(`transaction ${hash} reverted`)
  }
  const deploy = async (hash: Hex): Promise<Address> => {
    const receipt = await publicClient.waitForTransactionReceipt({ hash, pollingInterval: 20 })
    if (!receipt.contractAddress) throw new Error(`transaction ${hash} deployed nothing`)
    return getAddress(receipt.contractAddress)
  }

  const token = await deploy(
    await walletClient.deployContract({
      abi: testUsdcAbi,
      bytecode: testUsdcBytecode,
      args: [testUsdcDomain.name, 'tUSDC', testUsdcDomain.version],
      chain,
      account: owner,
    }),
  )
  const hook = await deploy(await walletClient.deployContract({ abi: spendingHookAbi, bytecode: spendingHookBytecode, chain, account: owner }))
  const account = await deploy(
    await walletClient.deployContract({
      abi: minimalAccountAbi,
      bytecode: minimalAccountBytecode,
      args: [owner.address],
      chain,
      account: owner,
    }),
  )
  await mined(await walletClient.writeContract({ address: token, abi: testUsdcAbi, functionName: 'mint', args: [account, mint], chain, account: owner }))
  await mined(
    await walletClient.writeContract({
      address: account,
      abi: minimalAccountAbi,
      functionName: 'installModule',
      args: [4n, hook, '0x'],
      chain,
      account: owner,
    }),
  )

  const transferData = (p: Payment): Hex => {
    const call = encodeFunctionData({ abi: testUsdcAbi, functionName: 'transfer', args: [p.to, p.amount] })
    return p.ref ? concat([call, p.ref]) : call
  }
  const batchCalldata = (payments: Payment[]): Hex =>
    encodeFunctionData({
      abi: minimalAccountAbi,
      functionName: 'execute',
      args: [
        batchMode,
        encodeAbiParameters(
          [{ type: 'tuple[]', components: [{ type: 'address' }, { type: 'uint256' }, { type: 'bytes' }] }],
          [payments.map((p) => [p.token ?? token, 0n, transferData(p)] as const)],
        ),
      ],
    })
  const execute = (data: Hex) => walletClient.sendTransaction({ to: account, data, chain, account: owner })

  return {
    publicClient,
    walletClient,
    chainId,
    owner: owner.address,
    token,
    hook,
    account,
    mined,
    async mint({ to, amount, token: which }) {
      await mined(
        await walletClient.writeContract({ address: which ?? token, abi: testUsdcAbi, functionName: 'mint', args: [to, amount], chain, account: owner }),
      )
    },
    async setLimits(l) {
      const data = encodeFunctionData({
        abi: spendingHookAbi,
        functionName: 'setLimits',
        args: [l.token ?? token, l.perTx ?? 0n, l.perWindow ?? 0n, l.windowSeconds ?? 0, l.cumulative ?? 0n],
      })
      await mined(
        await execute(
          encodeFunctionData({
            abi: minimalAccountAbi,
            functionName: 'execute',
            args: [singleMode, encodePacked(['address', 'uint256', 'bytes'], [hook, 0n, data])],
          }),
        ),
      )
    },
    async pay(p) {
      const hash = await execute(
        encodeFunctionData({
          abi: minimalAccountAbi,
          functionName: 'execute',
          args: [singleMode, encodePacked(['address', 'uint256', 'bytes'], [p.token ?? token, 0n, transferData(p)])],
        }),
      )
      await mined(hash)
      return hash
    },
    async payBatch(payments) {
      const hash = await execute(batchCalldata(payments))
      await mined(hash)
      return hash
    },
    batchCalldata,
  }
}
