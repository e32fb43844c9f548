#!/usr/bin/env node
// A native-solc-compatible front end over solc-js, so forge can build offline.
//
// forge runs its compiler as `<solc> --version` (it reads the last line,
// "Version: X.Y.Z+commit.H.Platform") and as
// `<solc> [--allow-paths a,b] [--include-path p]... [--base-path root] --standard-json`
// with the Standard JSON input on stdin and the output expected on stdout.
// forge already inlines every source's content in the input; the import callback below
// only serves a source that arrives without content, reading it from disk under the
// base path or an include path, and only inside the allowed paths.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const require = createRequire(import.meta.url)
const solc = require('solc')

function usage(message) {
  process.stderr.write(`solc (solc-js wrapper): ${message}\n`)
  process.exit(1)
}

function parseArgs(argv) {
  const options = { version: false, standardJson: false, basePath: undefined, includePaths: [], allowPaths: [] }
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const value = () => {
      if (inline !== undefined) return inline
      const next = argv[++index]
      if (next === undefined) usage(`${flag} needs a value`)
      return next
    }
    switch (flag) {
      case '--version':
        options.version = true
        break
      case '--standard-json':
        options.standardJson = true
        break
      case '--base-path':
        options.basePath = value()
        break
      case '--include-path':
        options.includePaths.push(value())
        break
      case '--allow-paths':
        options.allowPaths.push(...value().split(',').filter((p) => p !== ''))
        break
      case '--no-import-callback':
        options.noImportCallback = true
        break
      default:
        usage(`unsupported argument ${arg} (implemented: --version, --standard-json, --base-path, --include-path, --allow-paths, --no-import-callback)`)
    }
  }
  return options
}

/** "0.8.30+commit.73712a01.Emscripten.clang" → the native build string forge expects. */
function nativeVersion() {
  const match = /^(\d+\.\d+\.\d+)\+commit\.([0-9a-f]+)/.exec(solc.version())
  if (!match) usage(`cannot parse solc-js version ${solc.version()}`)
  return `${match[1]}+commit.${match[2]}.Linux.g++`
}

function isInside(file, dir) {
  const relative = path.relative(dir, file)
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative))
}

function makeImportCallback(options) {
  const base = path.resolve(options.basePath ?? '.')
  const roots = [base, ...options.includePaths.map((p) => path.resolve(base, p))]
  const allowed = [...roots, ...options.allowPaths.map((p) => path.resolve(base, p))]
  return (importPath) => {
    const candidates = path.isAbsolute(importPath) ? [importPath] : roots.map((root) => path.resolve(root, importPath))
    for (const candidate of candidates) {
      if (!allowed.some((dir) => isInside(candidate, dir))) continue
      try {
        return { contents: readFileSync(candidate, 'utf8') }
      } catch {
        // try the next root
      }
    }
    return { error: `File not found inside the base path or include paths: ${importPath}` }
  }
}

function readStdin() {
  try {
    return readFileSync(0, 'utf8')
  } catch (error) {
    usage(`cannot read standard input: ${error.message}`)
  }
}

const options = parseArgs(process.argv.slice(2))
if (options.version) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${nativeVersion()}\n`)
} else if (options.standardJson) {
  const input = readStdin()
  const callbacks = options.noImportCallback ? {} : { import: makeImportCallback(options) }
  process.stdout.write(solc.compile(input, callbacks))
} else {
  usage('expected --version or --standard-json')
}
