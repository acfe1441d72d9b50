/** Plain-text table with left-aligned columns separated by two spaces. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `0.4s`, `12s`, `3m05s`, `2h03m`, `-` when unknown. */
export function formatLag(seconds: number | undefined | null): string {
  if (seconds === undefined || seconds === null || !Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) {
    const m = Math.floor(seconds / 60);
    return `${m}m${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
  }
  const h = Math.floor(seconds / 3600);
  return `${h}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

/** Events per second with one decimal below 100, whole numbers above. */
export function formatRate(perSecond: number | undefined | null): string {
  if (perSecond === undefined || perSecond === null || !Number.isFinite(perSecond)) return '-';
  return perSecond < 100 ? perSecond.toFixed(1) : String(Math.round(perSecond));
}

/** `attempt 3 of 10, next in 8s (15:04:05)` for a RETRYING pipeline. */
export function retryText(
  retry: { attempt: number; maxAttempts: number; nextRetryAt: string },
  now = Date.now(),
): string {
  const at = Date.parse(retry.nextRetryAt);
  const inSeconds = Math.max(0, (at - now) / 1000);
  const clock = new Date(at).toISOString().slice(11, 19);
  const of = retry.maxAttempts > 0 ? ` of ${retry.maxAttempts}` : '';
  return `attempt ${retry.attempt}${of} failed, next in ${formatLag(inSeconds)} (${clock} UTC)`;
}
