import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, test } from 'vitest'

// The README's library example runs as written (only its database file is moved to a temp dir).
test('behavior: the README library example runs', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  expect(example).toBeDefined()
  const dir = join(tmpdir(), `spendguard-readme-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  const db = join(dir, 'readme.db')
  const file = new URL('../.tmp/readme-example.ts', import.meta.url)
  mkdirSync(new URL('../.tmp/', import.meta.url), { recursive: true })
  writeFileSync(file, (example as string).replace('sqlite:./spendguard.db', `sqlite:${db}`))
  try {
    const out = execFileSync(process.execPath, ['--import', 'tsx', file.pathname], { encoding: 'utf8' })
    expect(out).toContain('task task-1 passed 50%')
    expect(out).toContain('denied, 4750000 left')
    expect(out).toContain("status: 'closed'")
  } finally {
    rmSync(dir, { recursive: true, force: true })
    rmSync(file, { force: true })
  }
})
