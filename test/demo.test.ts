import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, test } from 'vitest'
import { createGuard } from '../src/index.ts'

const bin = fileURLToPath(new URL('../bin/spendguard.js', import.meta.url))

test('default: the demo runs the whole system, verifies, keeps its ledger where --db says, and leaves no process behind', async () => {
  const started = Date.now()
  const dir = mkdtempSync(join(tmpdir(), 'spendguard-demo-test-'))
  const db = `sqlite:${join(dir, 'demo.db')}`
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, 'demo', '--json', '--db', db], (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  )
  expect(code, stderr).toBe(0)
  expect(Date.now() - started).toBeLessThan(60_000)
  const result = JSON.parse(stdout) as { rpcUrl: string; report: { spent: string; total: string; status: string }; verify: { ok: boolean } }
  expect(result.verify).toEqual({ ok: true, problems: [] })
  expect(result.report).toMatchObject({ status: 'closed', total: '10000000', spent: '9500000' })
  // The demo's anvil is gone: its port no longer answers.
  await expect(fetch(result.rpcUrl, { method: 'POST', body: '{}' })).rejects.toThrow()
  // Its ledger stayed where --db said.
  const guard = await createGuard({ db })
  try {
    const [budget] = await guard.list()
    expect(budget).toMatchObject({ status: 'closed', total: 10_000_000n, spent: 9_500_000n })
    expect(budget?.taskId).toMatch(/^demo-agent-/)
    expect(await guard.verify()).toEqual({ ok: true, problems: [] })
  } finally {
    await guard.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
})
