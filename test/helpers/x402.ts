export * from '../../src/x402/local.ts'
