import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import { x402Facilitator } from '@x402/core/facilitator'
import { HTTPFacilitatorClient, x402ResourceServer } from '@x402/core/server'
import type { Network, PaymentPayload, PaymentRequirements, SettleResponse } from '@x402/core/types'
import { toFacilitatorEvmSigner } from '@x402/evm'
import { registerExactEvmScheme } from '@x402/evm/exact/facilitator'
import { ExactEvmScheme as ExactEvmServerScheme } from '@x402/evm/exact/server'
import { paymentMiddleware } from '@x402/hono'
import { Hono } from 'hono'
import { type Address, type Chain, type Hex, createWalletClient, http, nonceManager, publicActions } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'

/**
 * A local x402 stack for development chains, the demo and the tests: a facilitator (x402's own
 * facilitator code behind a small HTTP server) that settles on anvil with a viem wallet, and a
 * resource server protected by x402's Hono middleware. The facilitator can be told to fail or
 * to lose sight of a settlement, so clients can be tested against both.
 */

const host = '127.0.0.1'
const bodyBytesMax = 1_000_000

/**
 * What the facilitator does with a settlement:
 * - `settle`: settles on chain, as a facilitator does;
 * - `fail`: refuses to settle (nothing moves);
 * - `unconfirmed`: settles on chain but answers `settlement_pending` with the transaction, as a
 *   facilitator does that lost sight of the receipt.
 */
export type FacilitatorMode = 'settle' | 'fail' | 'unconfirmed'

export type LocalFacilitator = {
  url: string
  mode: FacilitatorMode
  /** Requests served, by endpoint. */
  requests: { verify: number; settle: number }
  stop(): Promise<void>
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => resolve())
  })
  return (server.address() as AddressInfo).port
}

/** A loopback port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const server = createServer()
  const port = await listen(server)
  await close(server)
  return port
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  let size = 0
  const chunks: Buffer[] = []
  for await (const chunk of request) {
    size += (chunk as Buffer).length
    if (size > bodyBytesMax) throw new Error('request body too large')
    chunks.push(chunk as Buffer)
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' })
  response.end(JSON.stringify(body, (_, value) => (typeof value === 'bigint' ? value.toString() : value)))
}

/** Starts x402's facilitator for the `exact` EVM scheme on `network`, settling with `privateKey` on `rpcUrl`. */
export async function startFacilitator({
  rpcUrl,
  chain,
  network,
  privateKey,
}: {
  rpcUrl: string
  chain: Chain
  network: Network
  privateKey: Hex
}): Promise<LocalFacilitator> {
  // Concurrent settlements from one account: the nonce manager hands out nonces in order.
  const account = privateKeyToAccount(privateKey, { nonceManager })
  const wallet = createWalletClient({ account, chain, transport: http(rpcUrl), pollingInterval: 50 }).extend(publicActions)
  const signer = toFacilitatorEvmSigner({
    address: account.address,
    readContract: (args) => wallet.readContract(args as Parameters<typeof wallet.readContract>[0]),
    verifyTypedData: (args) => wallet.verifyTypedData(args as Parameters<typeof wallet.verifyTypedData>[0]),
    writeContract: (args) => wallet.writeContract({ ...args, account, chain } as Parameters<typeof wallet.writeContract>[0]),
    sendTransaction: (args) => wallet.sendTransaction({ ...args, account, chain }),
    waitForTransactionReceipt: (args) => wallet.waitForTransactionReceipt({ ...args, pollingInterval: 20 }),
    getCode: (args) => wallet.getCode(args),
  })
  const facilitator = new x402Facilitator()
  registerExactEvmScheme(facilitator, { signer, networks: network })

  const state: LocalFacilitator = {
    url: '',
    mode: 'settle',
    requests: { verify: 0, settle: 0 },
    stop: async () => {},
  }

  /** Unconfirmed settlements by payment signature: a retried settle still finds them unconfirmed. */
  const unconfirmed = new Map<string, SettleResponse>()

  async function settle(payload: PaymentPayload, requirements: PaymentRequirements): Promise<SettleResponse> {
    if (state.mode === 'fail')
      return { success: false, errorReason: 'unexpected_settle_error', transaction: '', network: requirements.network }
    const key = JSON.stringify(payload.payload.signature)
    const pending = unconfirmed.get(key)
    if (state.mode === 'unconfirmed' && pending) return pending
    const result = await facilitator.settle(payload, requirements)
    if (state.mode === 'unconfirmed' && result.success) {
      const answer = { ...result, success: false, errorReason: 'settlement_pending', errorMessage: 'receipt not seen in time' }
      unconfirmed.set(key, answer)
      return answer
    }
    return result
  }

  const server = createServer((request, response) => {
    void (async () => {
      try {
        if (request.method === 'GET' && request.url === '/supported') {
          sendJson(response, 200, facilitator.getSupported())
          return
        }
        if (request.method === 'POST' && (request.url === '/verify' || request.url === '/settle')) {
          const body = (await readJson(request)) as { paymentPayload: PaymentPayload; paymentRequirements: PaymentRequirements }
          if (request.url === '/verify') {
            state.requests.verify++
            sendJson(response, 200, await facilitator.verify(body.paymentPayload, body.paymentRequirements))
          } else {
            state.requests.settle++
            sendJson(response, 200, await settle(body.paymentPayload, body.paymentRequirements))
          }
          return
        }
        sendJson(response, 404, { error: 'not found' })
      } catch (error) {
        sendJson(response, 500, { error: error instanceof Error ? error.message : String(error) })
      }
    })()
  })
  const port = await listen(server)
  state.url = `http://${host}:${port}`
  state.stop = () => close(server)
  return state
}

export type ResourceServerParameters = {
  facilitatorUrl: string
  network: Network
  /** The token contract the server charges in. */
  asset: Address
  /** The token's EIP-712 domain, which the `exact` scheme signs under. */
  domain: { name: string; version: string }
  payTo: Address
  /** The price in the token's smallest unit. */
  price: bigint
}

export type LocalResourceServer = {
  url: string
  stop(): Promise<void>
}

/**
 * Starts a resource server protected by x402's Hono middleware: `GET /paid` costs `price`;
 * `GET /drop` costs the same but drops the connection of every request that carries a payment
 * (a network error after the client signed); `GET /lapse` does the same to payments valid for
 * only 2 s; `GET /brief` answers like `/paid` but asks for payments valid for only 2 s; `GET
 * /take` costs the same, settles, and then drops the connection instead of answering (a server
 * that keeps the money and the answer); `GET /detour` costs the same, settles, and redirects
 * (307) to a port where nothing listens, so the client's request fails as if it never connected.
 */
export async function startResourceServer(parameters: ResourceServerParameters): Promise<LocalResourceServer> {
  const { network, asset, domain, payTo, price } = parameters
  const resourceServer = new x402ResourceServer(new HTTPFacilitatorClient({ url: parameters.facilitatorUrl, timeoutMs: 20_000 }))
  resourceServer.register(network, new ExactEvmServerScheme())
  const accepts = {
    scheme: 'exact',
    network,
    payTo,
    price: { amount: price.toString(), asset, extra: { name: domain.name, version: domain.version } },
    maxTimeoutSeconds: 120,
  }
  const state: LocalResourceServer = { url: '', stop: async () => {} }
  const app = new Hono()
  app.use(
    paymentMiddleware(
      {
        'GET /paid': { accepts, description: 'An answer worth paying for', mimeType: 'application/json' },
        'GET /drop': { accepts, description: 'A connection that drops', mimeType: 'application/json' },
        'GET /take': { accepts, description: 'A payment taken, no answer', mimeType: 'application/json' },
        'GET /lapse': { accepts: { ...accepts, maxTimeoutSeconds: 2 }, description: 'A brief payment that drops', mimeType: 'application/json' },
        'GET /brief': { accepts: { ...accepts, maxTimeoutSeconds: 2 }, description: 'A brief payment', mimeType: 'application/json' },
        'GET /detour': { accepts, description: 'A payment taken, then a redirect nowhere', mimeType: 'application/json' },
      },
      resourceServer,
    ),
  )
  app.get('/paid', (c) => c.json({ answer: 42 }))
  app.get('/drop', (c) => c.json({ answer: 0 }))
  app.get('/take', (c) => c.json({ answer: 0 }))
  app.get('/lapse', (c) => c.json({ answer: 0 }))
  app.get('/brief', (c) => c.json({ answer: 42 }))
  const nowhere = await closedPort()
  app.get('/detour', (c) => c.redirect(`http://${host}:${nowhere}/`, 307))

  const listener = getRequestListener(app.fetch)
  const server = createServer((request, response) => {
    const dropped = request.url?.startsWith('/drop') || request.url?.startsWith('/lapse')
    if (dropped && request.headers['payment-signature'] !== undefined) {
      request.socket.destroy()
      return
    }
    if (request.url?.startsWith('/take') && request.headers['payment-signature'] !== undefined) {
      // The middleware settles before it answers: the answer is dropped instead.
      response.writeHead = (() => {
        request.socket.destroy()
        return response
      }) as typeof response.writeHead
    }
    void listener(request, response)
  })
  const port = await listen(server)
  state.url = `http://${host}:${port}`
  state.stop = () => close(server)
  return state
}
