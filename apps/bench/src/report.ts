import type { LatencySummary } from './stats.js';

/** One tool's run in one scenario. `status: 'n/a'` carries the reason instead of figures. */
export interface Measurement {
  tool: string;
  status: 'ok' | 'n/a';
  reason?: string;
  events?: number;
  seconds?: number;
  eventsPerSecond?: number;
  /** Spawn → the tool's replication connection is active (or its first output), seconds. */
  startupSeconds?: number;
  peakRssBytes?: number;
  cpuSeconds?: number;
  cpuSecondsPerMillion?: number;
  /** S3 only. */
  targetRate?: number;
  latency?: LatencySummary;
  /** S5: process start → snapshot over, seconds. */
  snapshotSeconds?: number;
  /** S5: highest WAL the tool's slot retained (current LSN − restart_lsn), sampled. */
  peakRetainedWalBytes?: number;
  /** S5: WAL the slot had not confirmed when the snapshot ended. */
  walBehindAtEndBytes?: number;
  /** S5: snapshot over → the slot confirmed everything written up to that moment, seconds. */
  catchUpSeconds?: number;
  /** S5 (nanosync): highest V8 heapUsed of the process, sampled every 500 ms. */
  peakHeapBytes?: number;
  details?: Record<string, unknown>;
}

export interface Ratio {
  name: string;
  value?: number;
  /** What the ratio compares, in words. */
  meaning: string;
  reason?: string;
}

export interface ScenarioResult {
  id: string;
  title: string;
  parameters: Record<string, unknown>;
  measurements: Measurement[];
  ratios: Ratio[];
  notes: string[];
}

export function notAvailable(tool: string, reason: string, extra: Partial<Measurement> = {}): Measurement {
  return { tool, status: 'n/a', reason, ...extra };
}

const fmtInt = (n: number | undefined) => (n === undefined ? '–' : Math.round(n).toLocaleString('en-US'));
const fmt = (n: number | undefined, digits = 2) => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits));
const mb = (bytes: number | undefined) => (bytes === undefined || bytes === 0 ? '–' : (bytes / 1024 / 1024).toFixed(0));

const mb1 = (bytes: number | undefined) => (bytes === undefined ? '–' : (bytes / 1024 / 1024).toFixed(1));

function row(cells: string[]): string {
  return `| ${cells.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`;
}

export function scenarioMarkdown(result: ScenarioResult): string {
  const lines: string[] = [`### ${result.id} ${result.title}`, ''];
  const params = Object.entries(result.parameters)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? v.toLocaleString('en-US') : String(v)}`)
    .join(', ');
  if (params) lines.push(`_${params}_`, '');
  const hasLatency = result.measurements.some((m) => m.latency || m.targetRate !== undefined);
  const isSnapshotUnderLoad = result.measurements.some((m) => m.snapshotSeconds !== undefined);
  if (isSnapshotUnderLoad) {
    lines.push(
      row([
        'tool',
        'snapshot s',
        'peak retained WAL MB',
        'WAL behind at end MB',
        'catch-up s',
        'peak RSS MB',
        'peak heap MB',
        'CPU s',
      ]),
    );
    lines.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const m of result.measurements) {
      if (m.status === 'n/a') {
        lines.push(row([m.tool, `n/a: ${m.reason ?? ''}`, '', '', '', '', '', '']));
        continue;
      }
      lines.push(
        row([
          m.tool,
          fmt(m.snapshotSeconds, 1),
          mb1(m.peakRetainedWalBytes),
          mb1(m.walBehindAtEndBytes),
          fmt(m.catchUpSeconds, 1),
          mb(m.peakRssBytes),
          mb(m.peakHeapBytes),
          fmt(m.cpuSeconds, 1),
        ]),
      );
    }
  } else if (hasLatency) {
    lines.push(
      row(['tool', 'target ev/s', 'events', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'peak RSS MB', 'CPU s / M events']),
    );
    lines.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const m of result.measurements) {
      if (m.status === 'n/a') {
        lines.push(row([m.tool, fmtInt(m.targetRate), `n/a: ${m.reason ?? ''}`, '', '', '', '', '', '']));
        continue;
      }
      lines.push(
        row([
          m.tool,
          fmtInt(m.targetRate),
          fmtInt(m.latency?.count ?? m.events),
          fmt(m.latency?.p50Ms, 1),
          fmt(m.latency?.p95Ms, 1),
          fmt(m.latency?.p99Ms, 1),
          fmt(m.latency?.maxMs, 1),
          mb(m.peakRssBytes),
          fmt(m.cpuSecondsPerMillion, 1),
        ]),
      );
    }
  } else {
    lines.push(row(['tool', 'events', 'seconds', 'events/s', 'startup s', 'peak RSS MB', 'CPU s', 'CPU s / M events']));
    lines.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const m of result.measurements) {
      if (m.status === 'n/a') {
        lines.push(row([m.tool, `n/a: ${m.reason ?? ''}`, '', '', '', '', '', '']));
        continue;
      }
      lines.push(
        row([
          m.tool,
          fmtInt(m.events),
          fmt(m.seconds, 2),
          fmtInt(m.eventsPerSecond),
          fmt(m.startupSeconds, 2),
          mb(m.peakRssBytes),
          fmt(m.cpuSeconds, 1),
          fmt(m.cpuSecondsPerMillion, 1),
        ]),
      );
    }
  }
  if (result.ratios.length > 0) {
    lines.push('');
    for (const r of result.ratios) {
      lines.push(
        `- **${r.name}** = ${r.value === undefined ? `n/a${r.reason ? `: ${r.reason}` : ''}` : `${fmt(r.value, 2)}×`} — ${r.meaning}`,
      );
    }
  }
  for (const note of result.notes) lines.push(`- ${note}`);
  return lines.join('\n');
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  options: Record<string, unknown>;
  machine: Record<string, unknown>;
  scenarios: ScenarioResult[];
  errors: string[];
}

export function reportMarkdown(report: BenchReport): string {
  const m = report.machine;
  const gib = (b: unknown) => (typeof b === 'number' ? `${(b / 1024 ** 3).toFixed(1)} GiB` : '?');
  const header = [
    `## nanosync bench — ${report.startedAt.slice(0, 19).replace('T', ' ')} UTC${report.options.quick ? ' (--quick: harness check, sizes too small to mean much)' : ''}`,
    '',
    `Machine: ${m.cores} cores (${m.cpuModel}), ${gib(m.memoryBytes)} RAM, ${m.os}. ` +
      `nanosync ${m.nanosyncCommit ?? '?'}${m.nanosyncLaunch ? ` (${m.nanosyncLaunch})` : ''}, Node ${m.node}, PostgreSQL ${m.postgres ?? '?'}, Kafka ${m.kafka ?? '?'}, Java ${m.java ?? '?'}, Debezium ${m.debezium ?? 'n/a'}, kafkajs ${m.kafkajs ?? '?'}.`,
    '',
  ];
  const body = report.scenarios.map(scenarioMarkdown).join('\n\n');
  const errors = report.errors.length > 0 ? `\n\nErrors:\n${report.errors.map((e) => `- ${e}`).join('\n')}` : '';
  return `${header.join('\n')}${body}${errors}\n`;
}
