/**
 * Pure helpers for fetching logs over block ranges: which provider errors mean "ask for
 * less", which are worth retrying, and how the page size adapts.
 */

/** Messages providers use when a getLogs range or its result is too large. */
const rangePatterns = [
  /range (is )?too (large|wide|big)/i,
  /block range/i,
  /too many (results|logs|blocks)/i,
  /query returned more than/i,
  /more than \d+ (results|logs)/i,
  /response (size|is too large|too large)/i,
  /exceed(s|ed)? (the )?(max|maximum|limit)/i,
  /limit exceeded/i,
  /log response size/i,
  /range limit/i,
  /blocks? range/i,
  /limited to (a )?[\d,]+/i,
]

function chain(error: unknown): unknown[] {
  const out: unknown[] = []
  let e: unknown = error
  for (let i = 0; e && i < 8; i++) {
    out.push(e)
    e = (e as { cause?: unknown }).cause
  }
  return out
}

function text(e: unknown): string {
  const x = e as { name?: string; message?: string; details?: string; shortMessage?: string }
  return [x?.name, x?.shortMessage, x?.details, x?.message].filter(Boolean).join(' ')
}

/** The provider refused the size of a getLogs request or of its answer: ask for a smaller range. */
export function isRangeError(error: unknown): boolean {
  // A rate limit is no range error, whatever its code: some providers answer -32005 for both.
  if (isRateLimit(error)) return false
  return chain(error).some((e) => {
    if ((e as { name?: string })?.name === 'ResponseBodyTooLargeError') return true
    if ((e as { name?: string })?.name === 'LimitExceededRpcError') return true
    const code = (e as { code?: number })?.code
    // -32005: limit exceeded (EIP-1474); -32614: a provider's "limited to a N range".
    if (code === -32005 || code === -32614) return true
    return rangePatterns.some((p) => p.test(text(e)))
  })
}

/** The provider asks to slow down (429, or words to that effect under any code): retried later. */
export function isRateLimit(error: unknown): boolean {
  return chain(error).some((e) => {
    const x = e as { status?: number; code?: number }
    if (x?.status === 429 || x?.code === 429) return true
    const message = text(e)
    if (rateWords.test(message)) return true
    // "Request count" alone is ambiguous: about the size of a range or of its answer, it is a
    // range refusal ("Max request count exceeded: eth_getLogs block range must be at most 1000").
    return /\brequest count\b/i.test(message) && !sizeWords.test(message)
  })
}

const rateWords = /\brate[ -]?limit|\brate exceeded|\brequest rate\b|\btoo many requests\b|\brequests? per (second|minute)\b/i
const sizeWords = /\brange\b|\bresults?\b|\bresponse size\b|\blogs\b|\bblocks\b/i

/** The request timed out (the node took too long, or the connection went quiet). */
export function isTimeout(error: unknown): boolean {
  return chain(error).some((e) => (e as { name?: string })?.name === 'TimeoutError')
}

/** A failure that may pass on a second try: timeouts, dropped connections, 429 and 5xx. */
export function isRetryable(error: unknown): boolean {
  if (isRateLimit(error)) return true
  return chain(error).some((e) => {
    const x = e as { name?: string; status?: number; code?: number | string }
    if (x?.name === 'TimeoutError' || x?.name === 'AbortError') return true
    // An HTTP-level failure (a 5xx page, a body that is not JSON, a dropped socket) is the
    // node's or the network's; only a plain client error (4xx but 408 and 429) is final.
    if (x?.name === 'HttpRequestError')
      return !(typeof x.status === 'number' && x.status >= 400 && x.status < 500 && x.status !== 408 && x.status !== 429)
    if (typeof x?.status === 'number' && (x.status === 429 || x.status >= 500)) return true
    if (x?.code === -32603 || x?.code === -32000 || x?.code === 429) return true
    if (typeof x?.code === 'string' && /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|UND_ERR/.test(x.code)) return true
    return /fetch failed|socket|network|timed? ?out|ECONNRESET|other side closed|terminated|Unexpected end of JSON|rate limit|too many requests/i.test(
      text(e),
    )
  })
}

export type PagePolicy = {
  initialBlocks: number
  minBlocks: number
  maxBlocks: number
  /** Logs a page should bring, about: pages of busy ranges shrink so memory stays bounded. */
  targetLogs: number
}

export const defaultPagePolicy: PagePolicy = { initialBlocks: 10, minBlocks: 1, maxBlocks: 100_000, targetLogs: 1_000 }

/** The next page size after a range error: half, never below the minimum. */
export function shrink(blocks: number, policy: PagePolicy = defaultPagePolicy): number {
  return Math.max(policy.minBlocks, Math.floor(blocks / 2))
}

/**
 * The next page size after a page of `blocks` blocks brought `logs` logs: aimed at about
 * `targetLogs` logs a page, at most double the last, within the policy's bounds.
 */
export function grow(blocks: number, logs: number, policy: PagePolicy = defaultPagePolicy): number {
  const aimed = logs === 0 ? blocks * 2 : Math.floor((blocks * policy.targetLogs) / logs)
  return Math.max(policy.minBlocks, Math.min(policy.maxBlocks, blocks * 2, aimed))
}
