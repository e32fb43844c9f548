#!/usr/bin/env node
// The spendguard command line. It runs the package's build (dist/) when that is there and no
// source file is newer than it, as in an installed package; otherwise, in a working copy whose
// sources changed since the last build (or that has none), the TypeScript sources through
// tsx's loader.
import { existsSync, readdirSync, statSync } from 'node:fs'

const root = new URL('../', import.meta.url)
const built = new URL('dist/cli/main.js', root)

/** The newest modification time of the files under `dir`. */
function newest(dir) {
  let time = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const url = new URL(entry.name + (entry.isDirectory() ? '/' : ''), dir)
    time = Math.max(time, entry.isDirectory() ? newest(url) : statSync(url).mtimeMs)
  }
  return time
}

const sources = new URL('src/', root)
let main
if (existsSync(built) && (!existsSync(sources) || statSync(built).mtimeMs >= newest(sources))) {
  ;({ main } = await import(built.href))
} else {
  const { register } = await import('tsx/esm/api')
  register()
  ;({ main } = await import('../src/cli/main.ts'))
}
process.exitCode = await main(process.argv)
