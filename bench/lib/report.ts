/**
 * The one table: every figure beside its baseline from the same run, the ratio, the
 * target and the verdict. Rows without a target from the brief say INFO; a section's
 * correctness row says PASS or FAIL.
 */
export type Target =
  | { kind: 'ratio-min'; value: number }
  | { kind: 'ratio-max'; value: number }
  | { kind: 'value-max'; value: number; unit: string }
  | { kind: 'none' }

export type Row = {
  /** A measured figure, a section's correctness check, or a section that failed to run. */
  kind: 'figure' | 'correctness' | 'error'
  section: string
  measure: string
  /** The figure as printed, and as a number for results.json. */
  value: string
  valueNumber: number | null
  baseline: string
  baselineNumber: number | null
  ratio: number | null
  target: Target
  verdict: 'PASS' | 'FAIL' | 'INFO' | 'SKIP'
  detail?: unknown
}

const fmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

export function rate(n: number, unit = '/s'): string {
  if (!Number.isFinite(n)) return '—'
  return `${fmt.format(n)}${unit}`
}

export function ms(n: number): string {
  if (!Number.isFinite(n)) return '—'
  if (n < 0.1) return `${(n * 1000).toFixed(1)}µs`
  if (n < 10) return `${n.toFixed(2)}ms`
  return `${n.toFixed(1)}ms`
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`
}

function targetText(t: Target): string {
  switch (t.kind) {
    case 'ratio-min':
      return `ratio ≥ ${t.value}`
    case 'ratio-max':
      return `ratio ≤ ${t.value}`
    case 'value-max':
      return `≤ ${t.value} ${t.unit}`
    case 'none':
      return '—'
  }
}

function judge(target: Target, ratio: number | null, value: number | null): Row['verdict'] {
  switch (target.kind) {
    case 'ratio-min':
      return ratio !== null && ratio >= target.value ? 'PASS' : 'FAIL'
    case 'ratio-max':
      return ratio !== null && ratio <= target.value ? 'PASS' : 'FAIL'
    case 'value-max':
      return value !== null && value <= target.value ? 'PASS' : 'FAIL'
    case 'none':
      return 'INFO'
  }
}

/** A figure against its baseline; the ratio is figure / baseline. */
export function compare(r: {
  section: string
  measure: string
  value: number
  show: (n: number) => string
  baseline: number
  baselineShow?: (n: number) => string
  baselineLabel: string
  target?: Target
  detail?: unknown
}): Row {
  const ratio = Number.isFinite(r.value) && Number.isFinite(r.baseline) && r.baseline !== 0 ? r.value / r.baseline : null
  const target = r.target ?? { kind: 'none' }
  return {
    kind: 'figure',
    section: r.section,
    measure: r.measure,
    value: r.show(r.value),
    valueNumber: Number.isFinite(r.value) ? r.value : null,
    baseline: `${(r.baselineShow ?? r.show)(r.baseline)} ${r.baselineLabel}`,
    baselineNumber: Number.isFinite(r.baseline) ? r.baseline : null,
    ratio,
    target,
    verdict: judge(target, ratio, r.value),
    detail: r.detail,
  }
}

export function correctness(section: string, ok: boolean, summary: string, detail?: unknown): Row {
  return {
    kind: 'correctness',
    section,
    measure: 'correctness: verify() clean, totals = operations done',
    value: summary,
    valueNumber: null,
    baseline: '',
    baselineNumber: null,
    ratio: null,
    target: { kind: 'none' },
    verdict: ok ? 'PASS' : 'FAIL',
    detail,
  }
}

export function failure(section: string, measure: string, error: unknown): Row {
  const message = String((error as Error)?.message ?? error).split('\n')[0] ?? ''
  return {
    kind: 'error',
    section,
    measure,
    value: `error: ${message.slice(0, 120)}`,
    valueNumber: null,
    baseline: '',
    baselineNumber: null,
    ratio: null,
    target: { kind: 'none' },
    verdict: 'FAIL',
    detail: String((error as Error)?.stack ?? error),
  }
}

export function renderTable(rows: Row[]): string {
  const head = ['', 'measure', 'spendguard', 'baseline (same run, same disk)', 'ratio', 'target', 'result']
  const body = rows.map((r) => [
    r.section,
    r.measure,
    r.value,
    r.baseline,
    r.ratio === null ? '' : r.ratio >= 10 ? r.ratio.toFixed(1) : r.ratio.toFixed(2),
    targetText(r.target),
    r.verdict,
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] as string).length)))
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`
  const rule = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`
  const out = [line(head), rule]
  let last = ''
  for (const [i, b] of body.entries()) {
    const section = (rows[i] as Row).section
    out.push(line(section === last ? ['', ...b.slice(1)] : b))
    last = section
  }
  return out.join('\n')
}
