import { type Server, type Socket, createConnection, createServer } from 'node:net'

/**
 * A TCP proxy in front of a PostgreSQL server that can lose a COMMIT the way networks and
 * servers do:
 * - after the server committed, its answer is swallowed and the connection cut, or replaced
 *   by a FATAL error that ends the session (`57P02`, as when another backend crashed);
 * - then, optionally, a few connection attempts are refused with `57P03` (the server is
 *   starting up again);
 * - or the COMMIT is dropped on its way to the server, which then rolls the transaction back.
 * Every other byte passes unchanged. The proxy reads both sides as protocol messages (one
 * type byte, a 32-bit length that counts itself, the payload; the client's startup message
 * has no type byte); clients must not ask for TLS.
 */
export type PgProxy = {
  /** `url` with the proxy's host and port. */
  url: string
  /**
   * Loses the answer to the next COMMIT, which the server carries out: `cut` cuts the
   * connection, `fatal` answers with a FATAL error instead. Then refuses the next `refuse`
   * connection attempts (`Infinity`: until {@link PgProxy.acceptAgain}) with "the database
   * system is starting up".
   */
  loseNextCommit(how?: 'cut' | 'fatal', options?: { refuse?: number }): void
  /** Stops refusing connection attempts. */
  acceptAgain(): void
  /**
   * Cuts the next connection that commits, before its COMMIT reaches the server, which then
   * rolls back; with `keepServerSide`, only the client's side is cut, so the server's backend
   * stays idle in the transaction, holding its locks.
   */
  dropNextCommit(options?: { keepServerSide?: boolean }): void
  /**
   * Cuts the client's side of the next connection to send `statements` more statements (Bind
   * messages), just before the last of them: its transaction stays open on the server, idle,
   * holding whatever locks the statements before took.
   */
  cutClientAfter(statements: number): void
  /**
   * Cuts the client's side of the next connection to send a BEGIN with a statement in one
   * query, just after the server got it: the server runs both (taking whatever locks the
   * statement takes) and stays in the transaction, while the client never learns its id.
   */
  cutClientAfterBegin(): void
  /** COMMITs lost so far, either way. */
  readonly lost: number
  /** Connection attempts refused so far. */
  readonly refused: number
  stop(): Promise<void>
}

/** An ErrorResponse message of severity FATAL. */
function fatal(code: string, message: string): Buffer {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${message}\0\0`, 'utf8')
  const head = Buffer.alloc(5)
  head.write('E', 0)
  head.writeUInt32BE(4 + fields.length, 1)
  return Buffer.concat([head, fields])
}

export async function startPgProxy(url: string): Promise<PgProxy> {
  const upstream = new URL(url)
  const sockets = new Set<Socket>()
  let lose: 'cut' | 'fatal' | undefined
  let refuseAfter = 0
  let refuseNext = 0
  let drop: false | 'both' | 'client' = false
  let cutAfter = 0
  let cutAfterBegin = false
  let lost = 0
  let refused = 0

  function refuse(client: Socket): void {
    // Answer the startup message as a server that is starting up.
    let got: Buffer = Buffer.alloc(0)
    client.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk])
      if (got.length >= 4 && got.length >= got.readUInt32BE(0)) client.end(fatal('57P03', 'the database system is starting up'))
    })
    client.on('error', () => {})
  }

  const server: Server = createServer((client) => {
    if (refuseNext > 0) {
      refuseNext--
      refused++
      refuse(client)
      return
    }
    const backend = createConnection({ host: upstream.hostname, port: Number(upstream.port || 5432) })
    sockets.add(client).add(backend)
    const close = () => {
      client.destroy()
      backend.destroy()
      sockets.delete(client)
      sockets.delete(backend)
    }
    client.on('error', close).on('close', close)
    backend.on('error', close).on('close', close)
    // Only the client's side goes: the backend stays connected, and silent, until the proxy stops.
    const cutClientSide = () => {
      backend.removeAllListeners('data')
      client.removeAllListeners('close').removeAllListeners('error').on('error', () => {})
      client.destroy()
      sockets.delete(client)
    }

    // The client's side: a startup message (a length, no type byte), then typed messages.
    let sent: Buffer = Buffer.alloc(0)
    let started = false
    client.on('data', (chunk: Buffer) => {
      sent = sent.length === 0 ? chunk : Buffer.concat([sent, chunk])
      let forward = 0
      let at = 0
      for (;;) {
        const header = started ? 5 : 4
        if (sent.length - at < header) break
        const end = started ? at + 1 + sent.readUInt32BE(at + 1) : at + sent.readUInt32BE(at)
        if (end > sent.length) break
        // A simple query whose last statement is COMMIT (alone, or after the writes sent with it).
        const commit = started && sent[at] === 0x51 && /(^|;\s*)commit\0$/i.test(sent.toString('utf8', at + 5, end))
        const cut = started && sent[at] === 0x42 && cutAfter > 0 && --cutAfter === 0
        const beginWith =
          cutAfterBegin && started && sent[at] === 0x51 && /^begin;[^;]*;[^;]*\S/i.test(sent.toString('utf8', at + 5, end - 1))
        if (beginWith) {
          // The server gets the query; the client's side goes, the server's stays, silent.
          cutAfterBegin = false
          lost++
          backend.write(sent.subarray(forward, end))
          cutClientSide()
          return
        }
        if ((drop && commit) || cut) {
          // The server never hears the COMMIT: a dropped connection rolls the transaction back,
          // a server side left open keeps it in progress.
          const side = cut ? 'client' : drop
          if (!cut) drop = false
          lost++
          if (at > forward) backend.write(sent.subarray(forward, at))
          if (side === 'both') close()
          else cutClientSide()
          return
        }
        started = true
        at = end
        forward = end
      }
      if (forward > 0) backend.write(sent.subarray(0, forward))
      sent = sent.subarray(forward)
    })

    // The server's side: typed messages from the start.
    let pending: Buffer = Buffer.alloc(0)
    backend.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      let forward = 0
      let at = 0
      while (pending.length - at >= 5) {
        const end = at + 1 + pending.readUInt32BE(at + 1)
        if (end > pending.length) break
        const type = String.fromCharCode(pending[at] as number)
        if (lose && type === 'C' && pending.toString('utf8', at + 5, end - 1) === 'COMMIT') {
          // The server committed; the client never hears of it.
          const how = lose
          lose = undefined
          lost++
          refuseNext = refuseAfter
          if (at > forward) client.write(pending.subarray(forward, at))
          if (how === 'fatal') client.write(fatal('57P02', 'terminating connection because of crash of another server process'))
          close()
          return
        }
        at = end
        forward = end
      }
      if (forward > 0) client.write(pending.subarray(0, forward))
      pending = pending.subarray(forward)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('proxy has no port')
  const proxied = new URL(url)
  proxied.hostname = '127.0.0.1'
  proxied.port = String(address.port)
  return {
    url: proxied.toString(),
    loseNextCommit(how = 'cut', options = {}) {
      lose = how
      refuseAfter = options.refuse ?? 0
    },
    acceptAgain() {
      refuseNext = 0
    },
    dropNextCommit(options = {}) {
      drop = options.keepServerSide ? 'client' : 'both'
    },
    cutClientAfter(statements) {
      cutAfter = statements
    },
    cutClientAfterBegin() {
      cutAfterBegin = true
    },
    get lost() {
      return lost
    },
    get refused() {
      return refused
    },
    async stop() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
