import { type Server, type Socket, createConnection, createServer } from 'node:net'

/**
 * A TCP proxy in front of a PostgreSQL server that can lose the answer to a COMMIT: once
 * armed, it lets the server commit, swallows the server's `CommandComplete` message for that
 * COMMIT, and cuts both sides of the connection, as a network failure at that moment would.
 * Or it can drop the COMMIT on its way to the server, which then rolls the transaction back.
 * Every other byte passes unchanged. The proxy reads both sides as protocol messages (one
 * type byte, a 32-bit length that counts itself, the payload; the client's startup message
 * has no type byte); clients must not ask for TLS.
 */
export type PgProxy = {
  /** `url` with the proxy's host and port. */
  url: string
  /** Cuts the next connection that commits, right after the server committed. */
  loseNextCommit(): void
  /** Cuts the next connection that commits, before its COMMIT reaches the server (which then rolls back). */
  dropNextCommit(): void
  /** COMMIT answers lost so far. */
  readonly lost: number
  stop(): Promise<void>
}

export async function startPgProxy(url: string): Promise<PgProxy> {
  const upstream = new URL(url)
  const sockets = new Set<Socket>()
  let armed = false
  let dropArmed = false
  let lost = 0

  const server: Server = createServer((client) => {
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
        const commit = started && sent[at] === 0x51 && /^commit\0$/i.test(sent.toString('utf8', at + 5, end))
        if (dropArmed && commit) {
          // The server never hears the COMMIT; the dropped connection rolls the transaction back.
          dropArmed = false
          lost++
          if (at > forward) backend.write(sent.subarray(forward, at))
          close()
          return
        }
        started = true
        at = end
        forward = end
      }
      if (forward > 0) backend.write(sent.subarray(0, forward))
      sent = sent.subarray(forward)
    })

    let pending: Buffer = Buffer.alloc(0)
    backend.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      let forward = 0
      let at = 0
      while (pending.length - at >= 5) {
        const length = pending.readUInt32BE(at + 1)
        const end = at + 1 + length
        if (end > pending.length) break
        const type = String.fromCharCode(pending[at] as number)
        if (armed && type === 'C' && pending.toString('utf8', at + 5, end - 1) === 'COMMIT') {
          // The server committed; the client never hears of it.
          armed = false
          lost++
          if (at > forward) client.write(pending.subarray(forward, at))
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
    loseNextCommit() {
      armed = true
    },
    dropNextCommit() {
      dropArmed = true
    },
    get lost() {
      return lost
    },
    async stop() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
