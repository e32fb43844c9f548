export { type AnvilInstance, type StartAnvilOptions, startAnvil } from '../../src/onchain/anvil.ts'
