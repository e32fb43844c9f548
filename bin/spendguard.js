#!/usr/bin/env node
// The spendguard command line: runs src/cli/main.ts through tsx's loader.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../src/cli/main.ts')
process.exitCode = await main(process.argv)
