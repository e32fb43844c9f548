import { createRequire } from 'node:module'
import { type Hex, type PublicClient, parseAbi } from 'viem'
import { permit2Address } from '../../src/x402/settled.ts'

/**
 * A stand-in for Permit2 at its canonical address on anvil: the nonce bitmap its signature
 * transfers spend, and `invalidateUnorderedNonces`, which Permit2 offers an owner to spend
 * nonces of its own. Compiled with solc-js (the compiler the Foundry build uses).
 */
const source = `// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

contract Permit2Nonces {
    mapping(address => mapping(uint256 => uint256)) public nonceBitmap;

    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
    }
}
`

export const permit2NoncesAbi = parseAbi(['function invalidateUnorderedNonces(uint256 wordPos, uint256 mask)'])

function runtimeCode(): Hex {
  const solc = createRequire(import.meta.url)('solc') as { compile(input: string): string }
  const input = {
    language: 'Solidity',
    sources: { 'Permit2Nonces.sol': { content: source } },
    settings: { outputSelection: { '*': { Permit2Nonces: ['evm.deployedBytecode.object'] } } },
  }
  const output = JSON.parse(solc.compile(JSON.stringify(input))) as {
    errors?: { severity: string; formattedMessage: string }[]
    contracts: Record<string, Record<string, { evm: { deployedBytecode: { object: string } } }>>
  }
  const errors = output.errors?.filter((e) => e.severity === 'error') ?? []
  if (errors.length > 0) throw new Error(errors.map((e) => e.formattedMessage).join('\n'))
  return `0x${output.contracts['Permit2Nonces.sol']?.Permit2Nonces?.evm.deployedBytecode.object}`
}

/** Puts the stand-in's code at Permit2's address on the anvil `client` talks to. */
export async function installPermit2Nonces(client: PublicClient): Promise<typeof permit2Address> {
  await client.request({ method: 'anvil_setCode', params: [permit2Address, runtimeCode()] } as never)
  return permit2Address
}
