// npm's prepare step: builds dist/ (the package's exported build) where the TypeScript
// toolchain is installed: a development install, or npm preparing spendguard as a git
// dependency. A production install of a clone (npm ci --omit=dev) has no @types/node to build
// with; it skips the build and says so (the command line runs the sources through tsx).
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
let tsc
try {
  tsc = require.resolve('typescript/bin/tsc')
  require.resolve('@types/node/package.json')
} catch {
  console.log('spendguard: no TypeScript toolchain installed, dist/ not built (`npm run build` builds it)')
  process.exit(0)
}
const built = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' })
process.exit(built.status ?? 1)
