import type { PipelineStatus } from '@nanosync/core/host';
import { formatLag, formatRate, formatTable, retryText } from '../format.js';
import {
  checkpointText,
  formatBytes,
  formatCount,
  formatFields,
  formatPercent,
  latencySummary,
  progressBar,
  SINK_HEADER,
  sinkCells,
  snapshotFraction,
  walShare,
} from './format.js';

/**
 * The figures of one pipeline for a person (`nanosync metrics pipeline NAME`): the same
 * numbers `/metrics` exports, in sections with aligned columns.
 */
export function renderPipelineReport(p: PipelineStatus): string {
  const sections: string[] = [];

  const overview: [string, string][] = [
    ['state', `${p.state} (${p.replicationType})`],
    ['lag', formatLag(p.lagSeconds)],
    ['events/s', formatRate(p.eventsPerSecond)],
    ['events', `${formatCount(p.eventsTotal)} since the server started (snapshot rows and changes)`],
    ['checkpoint', checkpointText(p)],
  ];
  const waiting = p.source?.oldestPendingCommitAt;
  if (waiting !== undefined)
    overview.push([
      'waiting',
      waiting === null ? 'no change waiting for the sinks' : `oldest change not delivered yet committed ${waiting}`,
    ]);
  if (p.workers !== undefined)
    overview.push([
      'workers',
      p.workers.threads === 0
        ? `none: decoding and encoding run on the main thread (workers: ${p.workers.setting})`
        : `${p.workers.threads} thread${p.workers.threads === 1 ? '' : 's'} (workers: ${p.workers.setting})${
            p.workers.mode === 'workers'
              ? `, ${p.workers.chunks ?? 0} snapshot chunks through them`
              : p.workers.mode === 'inline'
                ? `, unused: ${p.workers.inlineReason}`
                : ''
          }`,
    ]);
  if (p.waitingFor) overview.push(['waits for', p.waitingFor]);
  if (p.retry) overview.push(['retrying', retryText(p.retry)]);
  if (p.error) overview.push([p.retry ? 'last error' : 'error', p.error]);
  if (p.heldBy) overview.push(['run by', `${p.heldBy} (lease until ${p.heldUntil ?? '?'}); figures are that server's`]);
  sections.push(`Pipeline ${p.name}\n${formatFields(overview)}`);

  const snap = p.snapshot;
  if (snap !== undefined) {
    const fields: [string, string][] = [
      [
        'progress',
        `${progressBar(snapshotFraction(snap))} ${formatPercent(snapshotFraction(snap))}${snap.done ? ' done' : ''}`,
      ],
      ['partitions', `${formatCount(snap.partitionsDone)} of ${formatCount(snap.partitionsTotal)} done`],
      [
        'rows',
        `${formatCount(snap.rowsRead)} read${snap.rowsEstimated > 0 ? ` of about ${formatCount(snap.rowsEstimated)}` : ''}`,
      ],
    ];
    if (!snap.done) fields.push(['ETA', snap.etaSeconds === undefined ? 'not known yet' : formatLag(snap.etaSeconds)]);
    sections.push(`Snapshot\n${formatFields(fields)}`);
  } else {
    sections.push(
      `Snapshot\n${formatFields([['progress', p.replicationType === 'cdc' ? 'none (cdc pipelines skip the snapshot)' : 'not planned yet']])}`,
    );
  }

  if (p.tables.length > 0) {
    const rows = p.tables.map((t) => [
      t.table,
      formatCount(t.rowsSnapshotted),
      t.partitionsTotal > 0 ? `${t.partitionsDone}/${t.partitionsTotal}` : '-',
      formatCount(t.events),
      formatLag(t.lagSeconds),
    ]);
    sections.push(`Tables\n${indent(formatTable(['TABLE', 'SNAPSHOT ROWS', 'PARTITIONS', 'EVENTS', 'LAG'], rows))}`);
  }

  if (p.sinks.length > 0) {
    const rows = p.sinks.map((s) => [...sinkCells(s), latencySummary(s.writeLatency)]);
    sections.push(`Sinks\n${indent(formatTable([...SINK_HEADER, 'WRITE LATENCY'], rows))}`);
    for (const s of p.sinks) if (s.error) sections.push(`Sink ${s.name} error\n  ${s.error}`);
  }

  const source = p.source;
  const wal: [string, string][] = [];
  if (source?.retainedWalBytes === undefined) {
    wal.push(['retained', 'not reported (yet)']);
  } else {
    wal.push(['retained', formatBytes(source.retainedWalBytes)]);
    const safe = source.safeWalBytes;
    if (typeof safe === 'number') {
      wal.push(['safe', `${formatBytes(safe)} more before the slot may be invalidated`]);
      wal.push(['used', `${formatPercent(walShare(source) ?? 0)} of the slot's limit (warnings at 50% and 80%)`]);
    } else {
      wal.push(['safe', 'no limit on the server (max_slot_wal_keep_size = -1)']);
    }
  }
  if (source?.polledAt) wal.push(['measured', source.polledAt]);
  sections.push(`Source WAL\n${formatFields(wal)}`);

  sections.push(`Warnings\n${p.warnings.length === 0 ? '  none' : p.warnings.map((w) => `  ! ${w}`).join('\n')}`);
  return sections.join('\n\n');
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}
