#!/usr/bin/env node
// `npm test`: type check, contracts (stale ABI check, format, forge test), then the vitest
// suite against SQLite and a throwaway PostgreSQL server started here and stopped after.
//
// PostgreSQL: under CI (CI=true) a server must start, or the run fails. Elsewhere, a machine
// without PostgreSQL's server binaries says so in one line and runs everything else.
import { spawnSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startCluster } from './pg-cluster.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const bin = (name) => path.join(root, 'node_modules', '.bin', name)
const ci = process.env.CI === 'true' || process.env.CI === '1'

const counts = { passed: 0, failed: 0, skipped: 0 }

function step(title, command, args, env = process.env, capture = false) {
  process.stdout.write(`\n▶ ${title}\n`)
  const result = spawnSync(command, args, {
    cwd: root,
    stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
    env,
    encoding: 'utf8',
  })
  if (capture) {
    process.stdout.write(result.stdout ?? '')
    // forge: "Ran 3 test suites …: 86 tests passed, 0 failed, 0 skipped (86 total tests)"
    const m = /(\d+) tests passed, (\d+) failed, (\d+) skipped/.exec(result.stdout ?? '')
    if (m) {
      counts.passed += Number(m[1])
      counts.failed += Number(m[2])
      counts.skipped += Number(m[3])
    }
  }
  if (result.status !== 0) {
    process.stderr.write(`✗ ${title} failed\n`)
    return false
  }
  return true
}

let cluster
const stop = async () => {
  const c = cluster
  cluster = undefined
  if (c) await c.stop().catch((error) => process.stderr.write(`stopping PostgreSQL: ${error.message}\n`))
}
for (const signal of ['SIGINT', 'SIGTERM'])
  process.on(signal, () => {
    void stop().finally(() => process.exit(130))
  })

let ok =
  step('type check', bin('tsc'), ['--noEmit', '-p', '.']) &&
  step('generated ABIs are current', process.execPath, ['scripts/contracts-build.mjs', '--check']) &&
  step('forge fmt --check', bin('forge'), ['fmt', '--check']) &&
  step('forge test', bin('forge'), ['test'], process.env, true)

if (ok) {
  const env = { ...process.env }
  if (env.SPENDGUARD_TEST_PG_URL) {
    process.stdout.write(`PostgreSQL: using ${env.SPENDGUARD_TEST_PG_URL}\n`)
  } else {
    try {
      cluster = await startCluster(path.join(root, '.tmp', `pg-test-${process.pid}`))
      env.SPENDGUARD_TEST_PG_URL = cluster.url
      process.stdout.write(`PostgreSQL: throwaway server at ${cluster.url}\n`)
    } catch (error) {
      const reason = String(error?.message ?? error).split('\n')[0]
      if (ci) {
        process.stderr.write(`PostgreSQL: no server could be started under CI (${reason}); failing.\n`)
        ok = false
      } else {
        process.stdout.write(`PostgreSQL: no server could be started (${reason}); PostgreSQL tests are skipped.\n`)
      }
    }
  }
  const report = path.join(root, '.tmp', `vitest-${process.pid}.json`)
  if (ok) {
    ok = step('vitest', bin('vitest'), ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`], env)
    try {
      const json = JSON.parse(readFileSync(report, 'utf8'))
      counts.passed += json.numPassedTests
      counts.failed += json.numFailedTests
      counts.skipped += json.numPendingTests + json.numTodoTests
      rmSync(report, { force: true })
    } catch {
      ok = false
    }
  }
}
await stop()
process.stdout.write(`\ntests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`)
process.exit(ok ? 0 : 1)
