#!/usr/bin/env node
// Throwaway PostgreSQL cluster for tests. Node built-ins only.
//
//   node scripts/pg-cluster.mjs start <dir>   # prints postgres://USER@127.0.0.1:PORT/spendguard_test
//   node scripts/pg-cluster.mjs stop <dir>    # pg_ctl stop -m fast, removes the cluster and <dir>
//
//   import { startCluster, stopCluster } from './pg-cluster.mjs';
//   const { url, stop } = await startCluster('.tmp/pg');  ...  await stop();
//
// <dir> is a state directory (any path, e.g. under .tmp/): it gets cluster.json
// and a `data` symlink. The data directory itself is a mkdtemp under /tmp,
// mode 0700 and owned by the server's user, because the server may not run as
// the caller (initdb/postgres refuse root) and that user may not be able to
// traverse the path to <dir>.
//
// Server user: when run as root, the `postgres` system user if it exists,
// otherwise a `spendguard` system user (created with useradd); commands run via
// `runuser -u USER --` (or `su USER -s /bin/sh -c` if runuser is missing).
// When not root, the current user.
//
// Binaries: $PG_BINDIR, else the highest /usr/lib/postgresql/<major>/bin, else
// initdb/pg_ctl/postgres found on PATH. Install them with scripts/pg-install.sh.
//
// Cluster: trust auth for local socket and 127.0.0.1 only, listen_addresses
// '127.0.0.1', a free random port (never 5432), unix socket in the data dir,
// fsync/synchronous_commit left on, max_connections=300, shared_buffers=128MB.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const DATABASE = 'spendguard_test';
const STATE_FILE = 'cluster.json';
const DATA_LINK = 'data';
const LOG_FILE = 'server.log';

class ClusterError extends Error {}

function fail(msg) {
  throw new ClusterError(msg);
}

function isExec(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

const SERVER_BINS = ['initdb', 'pg_ctl', 'postgres'];

function complete(dir) {
  return SERVER_BINS.every((b) => isExec(path.join(dir, b)));
}

/** Directory holding initdb, pg_ctl, postgres (and, normally, createdb), or null. */
function findBinDir() {
  if (process.env.PG_BINDIR) {
    return complete(process.env.PG_BINDIR) ? process.env.PG_BINDIR : null;
  }
  const root = '/usr/lib/postgresql';
  let versions = [];
  try {
    versions = fs.readdirSync(root);
  } catch {}
  versions.sort((a, b) => parseFloat(b) - parseFloat(a) || b.localeCompare(a));
  for (const v of versions) {
    const dir = path.join(root, v, 'bin');
    if (complete(dir)) return dir;
  }
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (dir && complete(dir)) return dir;
  }
  return null;
}

/** Run a command, collecting output. Resolves {code, stdout, stderr}; never rejects on exit code. */
function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? 128, signal, stdout, stderr }));
  });
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function idOf(user) {
  const u = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', user], { encoding: 'utf8' });
  if (u.status !== 0 || g.status !== 0) return null;
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** The OS user the server runs as: {name, uid, gid, sudo: boolean}. */
function serverUser() {
  if (!isRoot()) {
    const info = os.userInfo();
    return { name: info.username, uid: info.uid, gid: info.gid, sudo: false };
  }
  for (const name of ['postgres', 'spendguard']) {
    const ids = idOf(name);
    if (ids) return { name, ...ids, sudo: true };
  }
  const shell = fs.existsSync('/usr/sbin/nologin') ? '/usr/sbin/nologin' : '/bin/false';
  const r = spawnSync('useradd', ['--system', '--no-create-home', '--shell', shell, 'spendguard'], {
    encoding: 'utf8',
  });
  const ids = idOf('spendguard');
  if (!ids) fail(`cannot create system user spendguard: ${(r.stderr || r.error?.message || '').trim()}`);
  return { name: 'spendguard', ...ids, sudo: true };
}

const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

let hasRunuser;

/** Run cmd as the server user (directly if we already are that user). */
function runAs(user, cmd, args, opts = {}) {
  if (!user.sudo) return run(cmd, args, opts);
  hasRunuser ??= have('runuser');
  if (hasRunuser) return run('runuser', ['-u', user.name, '--', cmd, ...args], opts);
  return run('su', [user.name, '-s', '/bin/sh', '-c', [cmd, ...args].map(shq).join(' ')], opts);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function lastLines(text, n) {
  return String(text || '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(-n)
    .join(' | ');
}
const lastLine = (text) => lastLines(text, 1);

function tmpBase() {
  const base = process.env.SPENDGUARD_PG_TMPDIR || '/tmp';
  return fs.existsSync(base) ? base : os.tmpdir();
}

async function readLog(dataDir) {
  try {
    return await fsp.readFile(path.join(dataDir, LOG_FILE), 'utf8');
  } catch {
    return '';
  }
}

/** Best-effort stop of a data dir's server, then removal of the data dir. */
async function teardown(state) {
  const { dataDir, bindir } = state;
  const user = { name: state.user, sudo: state.sudo };
  if (fs.existsSync(path.join(dataDir, 'postmaster.pid'))) {
    const pgCtl = path.join(bindir, 'pg_ctl');
    const r = await runAs(user, pgCtl, ['-D', dataDir, '-m', 'fast', '-w', '-t', '30', 'stop'], { cwd: '/' });
    if (r.code !== 0) {
      await runAs(user, pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'], { cwd: '/' });
    }
    // Last resort: the postmaster pid from postmaster.pid.
    try {
      const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {}
  }
  await fsp.rm(dataDir, { recursive: true, force: true });
}

/**
 * Create and start a cluster. `dir` is the state directory (created if needed).
 * Resolves { url, port, user, dataDir, stop() }.
 */
export async function startCluster(dir) {
  if (!dir) fail('startCluster: missing state directory');
  dir = path.resolve(dir);
  const bindir = findBinDir();
  if (!bindir) {
    fail('no PostgreSQL server binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/*/bin, $PG_BINDIR or PATH; run scripts/pg-install.sh');
  }
  await fsp.mkdir(dir, { recursive: true });
  const stateFile = path.join(dir, STATE_FILE);
  if (fs.existsSync(stateFile)) fail(`${dir} already holds a cluster (${STATE_FILE}); stop it first`);

  const user = serverUser();
  const dataDir = await fsp.mkdtemp(path.join(tmpBase(), 'spendguard-pg-'));
  const state = { dataDir, bindir, user: user.name, sudo: user.sudo, port: null, url: null };
  try {
    await fsp.chmod(dataDir, 0o700);
    if (user.sudo) await fsp.chown(dataDir, user.uid, user.gid);

    const initdb = await runAs(
      user,
      path.join(bindir, 'initdb'),
      ['-D', dataDir, '-U', user.name, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
      { cwd: dataDir },
    );
    if (initdb.code !== 0) fail(`initdb failed: ${lastLine(initdb.stderr) || lastLine(initdb.stdout)}`);

    // Root writes into files that already exist, so ownership stays the server user's.
    await fsp.writeFile(
      path.join(dataDir, 'pg_hba.conf'),
      '# spendguard test cluster: trust, loopback and local socket only\n' +
        'local all all trust\n' +
        'host  all all 127.0.0.1/32 trust\n',
    );
    const confPath = path.join(dataDir, 'postgresql.conf');
    const baseConf = await fsp.readFile(confPath, 'utf8');

    const pgCtl = path.join(bindir, 'pg_ctl');
    const logPath = path.join(dataDir, LOG_FILE);
    let port = null;
    for (let attempt = 1; ; attempt++) {
      do port = await freePort();
      while (port === 5432);
      await fsp.writeFile(
        confPath,
        baseConf +
          '\n# --- spendguard test cluster ---\n' +
          `listen_addresses = '127.0.0.1'\n` +
          `port = ${port}\n` +
          `unix_socket_directories = '${dataDir}'\n` +
          'max_connections = 300\n' +
          'shared_buffers = 128MB\n' +
          'fsync = on\n',
      );
      const r = await runAs(user, pgCtl, ['-D', dataDir, '-l', logPath, '-w', '-t', '60', 'start'], {
        cwd: dataDir,
      });
      if (r.code === 0) break;
      const log = await readLog(dataDir);
      // Someone grabbed the port between freePort() and bind: try another one.
      if (attempt < 5 && /could not (bind|create listen socket)|already in use/i.test(log)) {
        await teardownServerOnly(user, pgCtl, dataDir);
        continue;
      }
      fail(`pg_ctl start failed: ${lastLines(log, 2) || lastLine(r.stderr) || lastLine(r.stdout)}`);
    }
    state.port = port;

    const createdb = path.join(bindir, 'createdb');
    const psql = path.join(bindir, 'psql');
    const conn = ['-h', '127.0.0.1', '-p', String(port), '-U', user.name];
    const cr = isExec(createdb)
      ? await run(createdb, [...conn, DATABASE], { cwd: '/' })
      : await run(psql, [...conn, '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', `CREATE DATABASE ${DATABASE}`], {
          cwd: '/',
        });
    if (cr.code !== 0) fail(`createdb ${DATABASE} failed: ${lastLine(cr.stderr) || lastLine(cr.stdout)}`);

    state.url = `postgres://${encodeURIComponent(user.name)}@127.0.0.1:${port}/${DATABASE}`;
    await fsp.writeFile(stateFile, JSON.stringify(state, null, 2) + '\n');
    try {
      await fsp.rm(path.join(dir, DATA_LINK), { force: true });
      await fsp.symlink(dataDir, path.join(dir, DATA_LINK));
    } catch {}
  } catch (err) {
    await teardown(state).catch(() => {});
    await fsp.rm(stateFile, { force: true }).catch(() => {});
    await fsp.rmdir(dir).catch(() => {});
    throw err;
  }
  return {
    url: state.url,
    port: state.port,
    user: state.user,
    dataDir,
    stop: () => stopCluster(dir),
  };
}

async function teardownServerOnly(user, pgCtl, dataDir) {
  if (fs.existsSync(path.join(dataDir, 'postmaster.pid'))) {
    await runAs(user, pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', 'stop'], { cwd: '/' });
  }
}

/** Stop the cluster recorded in `dir` (pg_ctl stop -m fast) and remove its data dir and `dir`. */
export async function stopCluster(dir) {
  if (!dir) fail('stopCluster: missing state directory');
  dir = path.resolve(dir);
  const stateFile = path.join(dir, STATE_FILE);
  let state;
  try {
    state = JSON.parse(await fsp.readFile(stateFile, 'utf8'));
  } catch (err) {
    if (err.code === 'ENOENT') return; // nothing to stop
    fail(`cannot read ${stateFile}: ${err.message}`);
  }
  await teardown(state);
  await fsp.rm(stateFile, { force: true });
  await fsp.rm(path.join(dir, DATA_LINK), { force: true });
  // Removes <dir> only if nothing else was put in it.
  await fsp.rmdir(dir).catch(() => {});
}

async function main(argv) {
  const [cmd, dir] = argv;
  if (!['start', 'stop'].includes(cmd) || !dir || argv.length > 2) {
    process.stderr.write('usage: node scripts/pg-cluster.mjs start|stop <dir>\n');
    return 2;
  }
  try {
    if (cmd === 'start') {
      const { url } = await startCluster(dir);
      process.stdout.write(url + '\n');
    } else {
      await stopCluster(dir);
    }
    return 0;
  } catch (err) {
    const msg = err instanceof ClusterError ? err.message : err?.stack || String(err);
    process.stderr.write(`pg-cluster: ${msg.split('\n')[0]}\n`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
