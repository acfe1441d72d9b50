import type {
  LatencyHistogram,
  PipelineStatus,
  SinkStatus,
  SnapshotProgress,
  SourceStatus,
  TableStatus,
} from '@nanosync/core/host';
import { formatLag } from '../format.js';

/** `1,234,567` (grouped for reading; never abbreviated, so figures can be compared exactly). */
export function formatCount(n: number | undefined | null): string {
  if (n === undefined || n === null || !Number.isFinite(n)) return '-';
  const whole = Math.round(n);
  const digits = String(Math.abs(whole)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return whole < 0 ? `-${digits}` : digits;
}

/** `512 B`, `4.0 KiB`, `1.5 GiB`. */
export function formatBytes(n: number | undefined | null): string {
  if (n === undefined || n === null || !Number.isFinite(n)) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = Math.abs(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = unit === 0 ? String(Math.round(value)) : value.toFixed(1);
  return `${n < 0 ? '-' : ''}${text} ${units[unit]}`;
}

/** `850ms`, `4.2ms`, `1.3s` for write latencies. */
export function formatSeconds(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '-';
  if (seconds < 0.01) return `${(seconds * 1000).toFixed(1)}ms`;
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  return `${seconds.toFixed(1)}s`;
}

export function formatPercent(fraction: number): string {
  return `${Math.floor(Math.max(0, Math.min(1, fraction)) * 100)}%`;
}

/**
 * How far a snapshot is, 0..1: by rows when the source estimated them (finer), else by
 * partitions. Estimates can be low, so an unfinished snapshot never shows 100%.
 */
export function snapshotFraction(
  p: Pick<SnapshotProgress, 'partitionsTotal' | 'partitionsDone' | 'rowsRead' | 'rowsEstimated' | 'done'>,
): number {
  if (p.done) return 1;
  const byPartitions = p.partitionsTotal > 0 ? p.partitionsDone / p.partitionsTotal : 0;
  const byRows = p.rowsEstimated > 0 ? p.rowsRead / p.rowsEstimated : byPartitions;
  return Math.min(0.99, Math.max(0, byRows));
}

export function tableSnapshotFraction(t: TableStatus): number | undefined {
  if (t.partitionsTotal === 0) return undefined;
  return snapshotFraction({
    partitionsTotal: t.partitionsTotal,
    partitionsDone: t.partitionsDone,
    rowsRead: t.rowsSnapshotted,
    rowsEstimated: t.rowsEstimated,
    done: t.partitionsDone >= t.partitionsTotal,
  });
}

/** A bar of `width` cells: `██████░░░░`. */
export function progressBar(fraction: number, width = 20): string {
  const clamped = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
  const filled = Math.round(clamped * width);
  return '█'.repeat(filled) + '░'.repeat(width - filled);
}

/** `31% ETA 1m05s`, `100% done`, or `-` without a snapshot. */
export function snapshotSummary(p: SnapshotProgress | undefined): string {
  if (p === undefined) return '-';
  if (p.done) return '100% done';
  const eta = p.etaSeconds === undefined ? '' : ` ETA ${formatLag(p.etaSeconds)}`;
  return `${formatPercent(snapshotFraction(p))}${eta}`;
}

/**
 * The smallest bucket bound holding at least `q` of the observations (`≤ bound`), or
 * undefined when there are none or they lie beyond the largest bound.
 */
export function latencyQuantileBound(h: LatencyHistogram, q: number): number | undefined {
  if (h.count === 0) return undefined;
  const wanted = Math.ceil(q * h.count);
  return h.buckets.find((b) => b.count >= wanted)?.le;
}

/** `avg 4.2ms, p99 ≤ 10ms over 12 writes`, or `no writes yet`. */
export function latencySummary(h: LatencyHistogram): string {
  if (h.count === 0) return 'no writes yet';
  const p99 = latencyQuantileBound(h, 0.99);
  const largest = h.buckets.at(-1)?.le;
  const tail =
    p99 === undefined
      ? largest === undefined
        ? ''
        : `, p99 > ${formatSeconds(largest)}`
      : `, p99 ≤ ${formatSeconds(p99)}`;
  return `avg ${formatSeconds(h.sum / h.count)}${tail} over ${formatCount(h.count)} write${h.count === 1 ? '' : 's'}`;
}

/** Share of the slot's limit already retained, when the server has a limit. */
export function walShare(source: SourceStatus | undefined): number | undefined {
  const retained = source?.retainedWalBytes;
  const safe = source?.safeWalBytes;
  if (retained === undefined || typeof safe !== 'number') return undefined;
  const limit = retained + Math.max(0, safe);
  return limit > 0 ? retained / limit : undefined;
}

/** `4.0 MiB of 64.0 MiB (6%)`, `4.0 MiB (no limit)`, or `-` when the source reports nothing. */
export function walSummary(source: SourceStatus | undefined): string {
  const retained = source?.retainedWalBytes;
  if (retained === undefined) return '-';
  const safe = source?.safeWalBytes;
  if (typeof safe !== 'number') return `${formatBytes(retained)} (no limit)`;
  const limit = retained + Math.max(0, safe);
  return `${formatBytes(retained)} of ${formatBytes(limit)} (${formatPercent(walShare(source) ?? 0)})`;
}

/** The pipeline's checkpoint in the source's own notation when known. */
export function checkpointText(p: PipelineStatus): string {
  return p.checkpointText ?? p.checkpoint ?? '-';
}

/** Label/value lines with the values aligned: `  state     LIVE_CDC`. */
export function formatFields(fields: [label: string, value: string][], indent = '  '): string {
  const width = Math.max(0, ...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${indent}${label.padEnd(width)}  ${value}`.trimEnd()).join('\n');
}

/**
 * The sink columns of `monitor` (table view) and `metrics pipeline`. DEAD LETTERS: events the
 * sink could not write, kept in its dead-letter target (`on_error: dead_letter`); SKIPPED:
 * such events dropped (`on_error: skip`); SPILLED: bytes waiting in its spill log.
 */
export const SINK_HEADER = [
  'SINK',
  'STATE',
  'ROWS WRITTEN',
  'ERRORS',
  'DEAD LETTERS',
  'SKIPPED',
  'QUEUE',
  'SPILLED',
  'LAG',
];

/** One sink's cells under {@link SINK_HEADER}. */
export function sinkCells(s: SinkStatus): string[] {
  return [
    s.name,
    s.state ?? '-',
    formatCount(s.rowsWritten),
    formatCount(s.writeErrors),
    formatCount(s.deadLetters ?? 0),
    formatCount(s.skippedEvents ?? 0),
    formatCount(s.queueDepth),
    s.spillBytes ? formatBytes(s.spillBytes) : '-',
    formatLag(s.lagSeconds),
  ];
}
