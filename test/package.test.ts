import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, test } from 'vitest'

/**
 * spendguard as an application installs it: the package built by `npm run build` (the
 * `prepare` script), imported by name from plain Node with no TypeScript loader, and its
 * declarations read by a strict TypeScript project. The build goes to a directory of its own,
 * so a stale `dist/` in the working tree cannot stand in for it.
 */
const root = fileURLToPath(new URL('..', import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, unknown>
let dir: string
let app: string

/** Runs node with nothing preloaded (no tsx from the test runner's environment). */
function plainNode(args: string[], cwd: string): string {
  const env = { ...process.env }
  delete env.NODE_OPTIONS
  return execFileSync(process.execPath, args, { cwd, env, encoding: 'utf8', timeout: 60_000 })
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'spendguard-package-'))
  const pkg = join(dir, 'spendguard')
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], {
    encoding: 'utf8',
  })
  const { name, type, main, types, exports } = manifest
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name, type, main, types, exports }))
  symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'))
  app = join(dir, 'app')
  mkdirSync(join(app, 'node_modules/@types'), { recursive: true })
  writeFileSync(join(app, 'package.json'), JSON.stringify({ type: 'module' }))
  symlinkSync(pkg, join(app, 'node_modules/spendguard'))
  symlinkSync(join(root, 'node_modules/@types/node'), join(app, 'node_modules/@types/node'))
}, 120_000)

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

test('behavior: the package names files its build emits, and ships them', () => {
  const exports = manifest.exports as { '.': { types: string; default: string } }
  expect([manifest.main, manifest.types]).toEqual([exports['.'].default, exports['.'].types])
  for (const file of [exports['.'].default, exports['.'].types]) {
    expect(file).toMatch(/^\.\/dist\//)
    expect(readFileSync(join(dir, 'spendguard', file), 'utf8').length).toBeGreaterThan(0)
  }
  expect(manifest.files).toEqual(expect.arrayContaining(['dist', 'bin', 'src']))
})

test('behavior: the command line of the built package runs from dist/ with plain Node', () => {
  // A package without its TypeScript sources: only the build can answer.
  const pkg = join(dir, 'spendguard')
  mkdirSync(join(pkg, 'bin'), { recursive: true })
  copyFileSync(join(root, 'bin/spendguard.js'), join(pkg, 'bin/spendguard.js'))
  const db = `sqlite:${join(dir, 'cli.db')}`
  expect(plainNode([join(pkg, 'bin/spendguard.js'), 'allocate', 'job-1', '--total', '2.5', '--asset', 'USDC', '--decimals', '6', '--db', db], app)).toContain('task job-1')
  const status = JSON.parse(plainNode([join(pkg, 'bin/spendguard.js'), 'status', 'job-1', '--json', '--db', db], app))
  expect(status.budget).toMatchObject({ taskId: 'job-1', total: '2500000', remaining: '2500000' })
})

test('behavior: the command line of a working copy without a build runs its sources through tsx', () => {
  const copy = join(dir, 'working-copy')
  mkdirSync(join(copy, 'bin'), { recursive: true })
  copyFileSync(join(root, 'bin/spendguard.js'), join(copy, 'bin/spendguard.js'))
  symlinkSync(join(root, 'src'), join(copy, 'src'))
  symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'))
  const db = `sqlite:${join(dir, 'working-copy.db')}`
  expect(plainNode([join(copy, 'bin/spendguard.js'), 'allocate', 'job-2', '--total', '1', '--asset', 'USDC', '--decimals', '6', '--db', db], app)).toContain('task job-2')
})

// The README's library example runs as written (only its database file is moved to a temp dir).
test('behavior: the README library example runs in plain Node against the built package', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  expect(example).toBeDefined()
  const db = join(dir, 'readme.db')
  writeFileSync(join(app, 'readme.mjs'), (example as string).replace('sqlite:./spendguard.db', `sqlite:${db}`))
  const out = plainNode(['readme.mjs'], app)
  expect(out).toContain('task task-1 passed 50%')
  expect(out).toContain('denied, 4750000 left')
  expect(out).toContain("status: 'closed'")
})

test('behavior: a strict TypeScript project type-checks against the built declarations', () => {
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
      include: ['app.ts'],
    }),
  )
  const source = [
    "import { BudgetExceededError, createGuard, createTracker, type Guard, type SpendEntry } from 'spendguard'",
    "const guard: Guard = await createGuard({ db: 'sqlite::memory:' })",
    'const entry: SpendEntry = await guard.record("t", { amount: 1n })',
    'const amount: bigint = entry.amount',
    'console.log(amount, BudgetExceededError, createTracker)',
  ]
  const tsc = join(root, 'node_modules/typescript/bin/tsc')
  writeFileSync(join(app, 'app.ts'), source.join('\n'))
  expect(plainNode([tsc, '-p', '.'], app)).toBe('')
  // The declarations carry the types: a wrong one is an error, not `any`.
  writeFileSync(join(app, 'app.ts'), [...source, 'const wrong: string = entry.amount', 'console.log(wrong)'].join('\n'))
  let failure = ''
  try {
    plainNode([tsc, '-p', '.'], app)
  } catch (error) {
    failure = String((error as { stdout?: string }).stdout)
  }
  expect(failure).toContain("app.ts(6,7): error TS2322: Type 'bigint' is not assignable to type 'string'.")
}, 60_000)
