import { SpendguardError } from '../engine/errors.ts'

/**
 * The payment requirement the x402 client selected pays in a token that does not carry the
 * task's asset (another network, another token contract). Thrown before anything is signed.
 *
 * @example
 * import { X402AssetNotAllowedError } from 'spendguard'
 *
 * try {
 *   await pay('https://api.example.com/search')
 * } catch (error) {
 *   if (error instanceof X402AssetNotAllowedError) console.log(error.network, error.asset)
 * }
 */
export class X402AssetNotAllowedError extends SpendguardError {
  override name = 'X402AssetNotAllowedError'
  override readonly code = 'X402_ASSET_NOT_ALLOWED'
  readonly taskId: string
  readonly network: string
  readonly asset: string
  constructor({ taskId, network, asset, allowed }: { taskId: string; network: string; asset: string; allowed: readonly string[] }) {
    super(`x402 payment in ${asset} on ${network} is not in the asset of task "${taskId}".`, {
      metaMessages: [`Allowed: ${allowed.length > 0 ? allowed.join(', ') : '(none)'}`],
      details: 'List the token contracts that carry the budget\'s asset in `assets`.',
    })
    this.taskId = taskId
    this.network = network
    this.asset = asset
  }
}

/**
 * The server asked for an x402 protocol version the adapter does not follow (only v2 reports
 * its settlement to the client's payment-response hooks). Thrown before anything is signed.
 *
 * @example
 * import { X402VersionNotSupportedError } from 'spendguard'
 *
 * try {
 *   await pay('https://legacy.example.com/search')
 * } catch (error) {
 *   if (error instanceof X402VersionNotSupportedError) console.log(error.x402Version)
 * }
 */
export class X402VersionNotSupportedError extends SpendguardError {
  override name = 'X402VersionNotSupportedError'
  override readonly code = 'X402_VERSION_NOT_SUPPORTED'
  readonly x402Version: number
  constructor({ x402Version }: { x402Version: number }) {
    super(`x402 version ${x402Version} is not supported by the spendguard adapter; it follows version 2.`)
    this.x402Version = x402Version
  }
}

/**
 * The server asks for a payment that stays valid (`maxTimeoutSeconds`) at least as long as the
 * adapter's holds live (`holdTtlMs`): the hold could expire, and its amount be spent again,
 * while the payee can still settle the signed payment. Thrown before anything is reserved or
 * signed.
 *
 * @example
 * import { X402ValidityTooLongError } from 'spendguard'
 *
 * try {
 *   await pay('https://api.example.com/search')
 * } catch (error) {
 *   if (error instanceof X402ValidityTooLongError) console.log(error.maxTimeoutSeconds, error.holdTtlMs)
 * }
 */
export class X402ValidityTooLongError extends SpendguardError {
  override name = 'X402ValidityTooLongError'
  override readonly code = 'X402_VALIDITY_TOO_LONG'
  readonly taskId: string
  readonly maxTimeoutSeconds: unknown
  readonly holdTtlMs: number
  constructor({ taskId, maxTimeoutSeconds, holdTtlMs }: { taskId: string; maxTimeoutSeconds: unknown; holdTtlMs: number }) {
    super(
      `x402 payment for task "${taskId}" would stay valid for ${typeof maxTimeoutSeconds === 'number' ? `${maxTimeoutSeconds} s` : 'a time the server does not state'}, not less than the hold's ${holdTtlMs} ms.`,
      { details: 'Raise `holdTtlMs` above the servers\' `maxTimeoutSeconds` (with the chain\'s finality delay), or leave it unset.' },
    )
    this.taskId = taskId
    this.maxTimeoutSeconds = maxTimeoutSeconds
    this.holdTtlMs = holdTtlMs
  }
}
