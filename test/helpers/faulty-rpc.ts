import { type IncomingMessage, type ServerResponse, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A JSON-RPC proxy on loopback in front of a real node that misbehaves on purpose:
 * it drops connections, answers 429 and 5xx, delays past the client's timeout, refuses
 * large getLogs ranges, returns oversized bodies, slips in logs of other emitters, repeats
 * logs within an answer, and answers like a node some blocks behind (as behind a load balancer).
 * Faults follow a seeded sequence, so a run is repeatable.
 */
export type Faults = {
  /** Fraction of requests that fail in one of the transient ways. */
  rate: number
  /** Widest getLogs range (in blocks) answered; wider ones get a range error. */
  maxRangeBlocks: number
  /**
   * How a range too wide is refused: `standard` (-32005 "query returned more than …"),
   * `http413` (HTTP 413 with -32614 "eth_getLogs is limited to a 10,000 range", as one hosted
   * provider answers), or `unworded` (-32602 "invalid params", which says nothing of ranges).
   */
  rangeRefusal?: 'standard' | 'http413' | 'unworded'

  /** getLogs ranges wider than this get a body over viem's 10 MB limit. */
  oversizeAboveBlocks: number
  /** Delay of a "slow" answer; longer than the client's timeout. */
  slowMs: number
  /** A log of another emitter put into every getLogs answer, if given. */
  forgedLog?: Record<string, unknown>
  /** Every getLogs answer lists each of its logs twice, the copies in reverse order at the end; 'altered' copies claim 1 more. */
  repeatLogs?: 'identical' | 'altered'
  /**
   * getLogs over a block range answers like a node this many blocks behind the one serving
   * blocks (as behind a load balancer): logs of the newest blocks are missing, without error.
   * A getLogs by block hash is answered in full.
   */
  rangeLagBlocks?: number
  seed?: number
}

export async function startFaultyRpc(upstream: string, faults: Faults) {
  let seed = faults.seed ?? 42
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 2147483648
  }
  let nodeLag = 0
  const counts = { requests: 0, dropped: 0, tooMany: 0, serverError: 0, slow: 0, rangeRefused: 0, oversized: 0, forged: 0, repeated: 0, lagHidden: 0 }

  const forward = async (body: string) => {
    const response = await fetch(upstream, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    return response.text()
  }
  const upstreamHead = async () =>
    BigInt((JSON.parse(await forward(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_blockNumber' }))) as { result: string }).result)

  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const body = Buffer.concat(chunks).toString('utf8')
    counts.requests++
    let call: { id: number; method: string; params?: unknown[] }
    try {
      call = JSON.parse(body)
    } catch {
      res.writeHead(400).end()
      return
    }
    const reply = (payload: unknown, status = 200) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(typeof payload === 'string' ? payload : JSON.stringify(payload))
    }

    const r = random()
    if (r < faults.rate * 0.25) {
      counts.dropped++
      req.socket.destroy()
      return
    }
    if (r < faults.rate * 0.5) {
      counts.tooMany++
      return reply({ jsonrpc: '2.0', id: call.id, error: { code: 429, message: 'Too Many Requests' } }, 429)
    }
    if (r < faults.rate * 0.75) {
      counts.serverError++
      return reply('bad gateway', random() < 0.5 ? 502 : 503)
    }
    if (r < faults.rate) {
      counts.slow++
      await new Promise((resolve) => setTimeout(resolve, faults.slowMs))
      if (!res.destroyed) reply(await forward(body))
      return
    }

    if (nodeLag > 0) {
      // A node `nodeLag` blocks behind: its head is older and newer blocks are unknown to it.
      const seen = (await upstreamHead()) - BigInt(nodeLag)
      if (call.method === 'eth_blockNumber') return reply({ jsonrpc: '2.0', id: call.id, result: `0x${seen.toString(16)}` })
      if (call.method === 'eth_getBlockByNumber') {
        const tag = call.params?.[0] as string
        const number = tag === 'latest' ? seen : BigInt(tag)
        if (number > seen) return reply({ jsonrpc: '2.0', id: call.id, result: null })
        const params = [`0x${number.toString(16)}`, ...(call.params ?? []).slice(1)]
        return reply(await forward(JSON.stringify({ ...call, params })))
      }
      if (call.method === 'eth_getLogs') {
        const filter = (call.params?.[0] ?? {}) as { blockHash?: string }
        const answer = JSON.parse(await forward(body)) as { result?: { blockNumber: string }[] }
        if (Array.isArray(answer.result)) {
          if (filter.blockHash !== undefined && answer.result.some((l) => BigInt(l.blockNumber) > seen))
            return reply({ jsonrpc: '2.0', id: call.id, error: { code: -32000, message: 'unknown block' } })
          answer.result = answer.result.filter((l) => BigInt(l.blockNumber) <= seen)
        }
        return reply(answer)
      }
      if (call.method === 'eth_call') {
        // A call at a block this node has not seen fails (EIP-1898), as geth answers.
        const at = call.params?.[1] as { blockHash?: string } | undefined
        if (at?.blockHash !== undefined) {
          const block = JSON.parse(
            await forward(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_getBlockByHash', params: [at.blockHash, false] })),
          ) as { result?: { number: string } | null }
          if (!block.result || BigInt(block.result.number) > seen)
            return reply({ jsonrpc: '2.0', id: call.id, error: { code: -32000, message: `header for hash not found` } })
        }
      }
    }

    if (call.method === 'eth_getLogs') {
      const filter = (call.params?.[0] ?? {}) as { fromBlock?: string; toBlock?: string }
      const width = Number(BigInt(filter.toBlock ?? '0x0') - BigInt(filter.fromBlock ?? '0x0')) + 1
      if (width > faults.maxRangeBlocks) {
        counts.rangeRefused++
        if (faults.rangeRefusal === 'http413')
          return reply({ jsonrpc: '2.0', id: call.id, error: { code: -32614, message: 'eth_getLogs is limited to a 10,000 range' } }, 413)
        if (faults.rangeRefusal === 'unworded')
          return reply({ jsonrpc: '2.0', id: call.id, error: { code: -32602, message: 'invalid params' } })
        return reply({
          jsonrpc: '2.0',
          id: call.id,
          error: { code: -32005, message: `query returned more than 10000 results; block range too large (${width})` },
        })
      }
      const answer = JSON.parse(await forward(body)) as { result?: unknown[] }
      if (Array.isArray(answer.result) && faults.rangeLagBlocks && filter.toBlock !== undefined) {
        const seen = (await upstreamHead()) - BigInt(faults.rangeLagBlocks)
        const all = answer.result.length
        answer.result = answer.result.filter((log) => BigInt((log as { blockNumber: string }).blockNumber) <= seen)
        counts.lagHidden += all - answer.result.length
      }
      if (Array.isArray(answer.result) && faults.forgedLog) {
        counts.forged++
        answer.result.push(faults.forgedLog)
      }
      if (Array.isArray(answer.result) && faults.repeatLogs && answer.result.length > 0) {
        counts.repeated += answer.result.length
        const copies = [...answer.result].reverse() as { data: string }[]
        // The copy's amount word (the data's second word) one higher: same position, another log.
        const alter = (log: { data: string }) => {
          const word = 2 + 64
          const amount = BigInt(`0x${log.data.slice(word, word + 64)}`) + 1n
          return { ...log, data: log.data.slice(0, word) + amount.toString(16).padStart(64, '0') + log.data.slice(word + 64) }
        }
        answer.result.push(...(faults.repeatLogs === 'altered' ? copies.map(alter) : copies))
      }
      if (width > faults.oversizeAboveBlocks) {
        counts.oversized++
        // A valid answer padded past 10 MB: the client must refuse it and ask for less.
        const padded = JSON.stringify({ ...answer, padding: 'x'.repeat(11 * 1024 * 1024) })
        return reply(padded)
      }
      return reply(answer)
    }
    reply(await forward(body))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    /** From now on, answer as a whole node this many blocks behind (0: caught up). */
    setNodeLag(blocks: number) {
      nodeLag = blocks
    },
    async stop() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
