import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { benchDir, keepFiles } from './config.ts'

/** A fresh SQLite path in the bench directory, and its removal (with -wal and -shm). */
export function sqlitePath(name: string): string {
  const path = join(benchDir, `${name}.db`)
  removeSqlite(path, true)
  return path
}

export function removeSqlite(path: string, force = false): void {
  if (keepFiles && !force) return
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(path + suffix, { force: true })
}
