import { resolveWorkerCount } from '../config/read-pipelines.js';
import { formatTableName, parseTableName } from '../config/table-name.js';
import { DEFAULT_WORKERS } from '../config/types.js';
import { redact } from '../errors.js';
import { describeError } from '../log/logger.js';
import type { Position } from '../model.js';
import type { LeaseInfo, PartitionRecord, PipelineRecord, PipelineState } from '../state/store.js';
import type { PipelineRunner } from './pipeline-runner.js';
import { compareQueryPositions } from './query-runner.js';
import type { PipelineStats, PipelineStatus, SinkStatus, TableStatus } from './stats.js';
import type { MaterializedPipeline } from './types.js';

/**
 * A pipeline's status as the admin API and metrics show it, built from what the store
 * holds (checkpoints, partition plans, the stored record) and, while it runs in this
 * process, from its runner (state, retry, queues, position formatting) and live counters.
 * The one place that reads a runner's insides for reporting.
 */
export interface StatusInput {
  name: string;
  /** The stored record; undefined for a pipeline known only to this process. */
  record: PipelineRecord | undefined;
  checkpoints: Record<string, Position>;
  partitions: PartitionRecord[];
  stats: PipelineStats;
  /** This process's runner of the pipeline, current or last. */
  runner?: PipelineRunner;
  runnerDone: boolean;
  materialized?: MaterializedPipeline;
  /** Lease of another server, as last seen. */
  heldBy?: LeaseInfo;
  /** The server that runs the pipeline (holder of its lease), if any. */
  server?: string;
  now: number;
}

export function buildPipelineStatus(input: StatusInput): PipelineStatus {
  const { name, record, checkpoints, partitions, now } = input;
  const entry = input;
  const runner = input.runner;
  const live = runner !== undefined && !input.runnerDone;
  const stats = input.stats;

  const state: PipelineState = live ? runner.state : (record?.state ?? runner?.state ?? 'CREATED');
  const error = live ? runner.error : (record?.error ?? runner?.error);
  const retry = live && runner.state === 'RETRYING' ? runner.retry : undefined;
  const replicationType = record?.replicationType ?? entry.materialized?.pipeline.replication_type ?? 'cdc_backfill';

  const source = live ? runner.source : undefined;
  const compare =
    replicationType === 'query'
      ? compareQueryPositions
      : source
        ? (a: Position, b: Position) => source.comparePositions(a, b)
        : compareText;
  const format = (p: Position | undefined) => (p === undefined ? undefined : live ? runner.format(p) : p);

  const sinkNames = new Set<string>([
    ...(entry.materialized?.sinks.map((s) => s.name) ?? []),
    ...stats.sinks.keys(),
    ...Object.keys(checkpoints),
  ]);
  const lanes = live ? runner.fanOut?.lanes : undefined;
  const sinks: SinkStatus[] = [...sinkNames].map((sinkName) => {
    const s = stats.sink(sinkName);
    const lane = lanes?.find((l) => l.name === sinkName);
    const checkpoint = lane?.checkpoint ?? checkpoints[sinkName];
    const status: SinkStatus = {
      name: sinkName,
      rowsWritten: s.rowsWritten,
      writeErrors: s.writeErrors,
      deadLetters: s.deadLetters,
      skippedEvents: s.skippedEvents,
      queueDepth: lane?.queuedEvents ?? 0,
      queueBytes: lane?.queuedBytes ?? 0,
      writeLatency: s.latency.snapshot(),
    };
    if (s.encodedWrites > 0) status.encodedWrites = s.encodedWrites;
    if (checkpoint !== undefined) {
      status.checkpoint = checkpoint;
      const text = format(checkpoint);
      if (text !== undefined && text !== checkpoint) status.checkpointText = text;
    }
    if (lane !== undefined) {
      status.state = lane.state;
      status.spillEvents = lane.spilledEvents;
      status.spillBytes = lane.spilledBytes;
      if (lane.state === 'errored') status.error = redact(describeError(lane.error));
    }
    const lagMs = lane?.lagMs() ?? s.lagMs;
    if (lagMs !== undefined) status.lagSeconds = lagMs / 1000;
    return status;
  });

  const tableNames = tableNamesOf(entry, record);
  const partitionsByTable = new Map<string, PartitionRecord[]>();
  for (const p of partitions) {
    const list = partitionsByTable.get(p.table) ?? [];
    list.push(p);
    partitionsByTable.set(p.table, list);
  }
  for (const tableName of partitionsByTable.keys()) if (!tableNames.includes(tableName)) tableNames.push(tableName);
  for (const tableName of stats.tables.keys()) if (!tableNames.includes(tableName)) tableNames.push(tableName);
  const tables: TableStatus[] = tableNames.map((tableName) => {
    const t = stats.tables.get(tableName);
    const planned = partitionsByTable.get(tableName) ?? [];
    const fromStore = {
      total: planned.length,
      done: planned.filter((p) => p.status === 'done').length,
      rows: planned.reduce((n, p) => n + (p.status === 'done' ? (p.rowsRead ?? 0) : 0), 0),
      estimated: planned.reduce((n, p) => n + (p.estimatedRows ?? 0), 0),
    };
    // A table the running snapshot reads: this run's live figures. Any other table: its plan
    // as stored (a re-snapshot of one table leaves the others' finished figures as they are).
    const useStats = t !== undefined && live && stats.snapshotting(tableName);
    const status: TableStatus = {
      table: tableName,
      rowsSnapshotted: useStats ? t.rowsSnapshotted : Math.max(fromStore.rows, t?.rowsSnapshotted ?? 0),
      rowsEstimated: fromStore.estimated || (t?.rowsEstimated ?? 0),
      events: t?.events ?? 0,
      partitionsTotal: fromStore.total,
      partitionsDone: useStats ? t.partitionsDone : fromStore.done,
    };
    if (t?.lagMs !== undefined) status.lagSeconds = t.lagMs / 1000;
    return status;
  });

  const status: PipelineStatus = {
    name,
    state,
    replicationType,
    eventsPerSecond: round(stats.rate.rate(now)),
    eventsTotal: stats.eventsTotal,
    tables,
    sinks,
    warnings: [...laneWarnings(name, sinks), ...stats.activeWarnings()],
  };
  if (error !== undefined) status.error = error;
  if (retry !== undefined) status.retry = { ...retry };
  const waitingFor = live ? runner.waitingFor : undefined;
  if (waitingFor !== undefined) status.waitingFor = waitingFor;
  const lag = stats.lagSeconds();
  if (lag !== undefined) status.lagSeconds = round(lag);
  if (record?.startPosition !== undefined) {
    status.startPosition = record.startPosition;
    const text = format(record.startPosition);
    if (text !== undefined && text !== record.startPosition) status.startPositionText = text;
  }
  let min: Position | undefined;
  let complete = sinks.length > 0;
  for (const s of sinks) {
    if (s.checkpoint === undefined) complete = false;
    else if (min === undefined || compare(s.checkpoint, min) < 0) min = s.checkpoint;
  }
  if (complete && min !== undefined) {
    status.checkpoint = min;
    const text = format(min);
    if (text !== undefined && text !== min) status.checkpointText = text;
  }
  if (stats.acknowledgedPosition !== undefined) status.acknowledgedPosition = stats.acknowledgedPosition;
  if (input.server !== undefined) status.server = input.server;
  if (!live && entry.heldBy !== undefined && Date.parse(entry.heldBy.expiresAt) > now) {
    status.heldBy = entry.heldBy.holder;
    status.heldUntil = entry.heldBy.expiresAt;
  }
  const progress = snapshotProgress(tables, stats, live);
  if (progress !== undefined) status.snapshot = progress;
  if (stats.source !== undefined) status.source = { ...stats.source };
  if (record?.updatedAt !== undefined) status.updatedAt = record.updatedAt;
  const pipeline = entry.materialized?.pipeline;
  if (pipeline !== undefined) {
    const setting = pipeline.workers ?? DEFAULT_WORKERS;
    status.workers = { setting, threads: resolveWorkerCount(setting) };
    const decided = live ? runner.workers : undefined;
    if (decided !== undefined) {
      if ('inline' in decided) {
        status.workers.mode = 'inline';
        status.workers.inlineReason = decided.inline;
      } else {
        status.workers.mode = 'workers';
        status.workers.chunks = decided.chunks();
      }
    }
    const stream = live ? runner.streamWorkers : undefined;
    if (stream !== undefined)
      status.workers.stream =
        'inline' in stream
          ? { mode: 'inline', inlineReason: stream.inline }
          : { mode: 'workers', batches: stream.batches(), inlineBatches: stream.inlineBatches() };
  }
  return status;
}

function tableNamesOf(entry: Pick<StatusInput, 'materialized'>, record: PipelineRecord | undefined): string[] {
  const fromConfig = entry.materialized?.pipeline.source.tableRefs.map(formatTableName);
  if (fromConfig) return [...fromConfig];
  // Not run here: read the table list from the stored YAML node, when it has the usual shape.
  const raw = (record?.definition as { pipeline?: { source?: { tables?: unknown } } } | undefined)?.pipeline?.source
    ?.tables;
  if (!Array.isArray(raw)) return [];
  const names: string[] = [];
  for (const t of raw) {
    if (typeof t !== 'string') continue;
    const parsed = parseTableName(t);
    names.push(parsed.ok ? formatTableName(parsed.ref) : t);
  }
  return names;
}

/**
 * The pipeline's snapshot progress: while a snapshot runs here, that run's tables only (a
 * re-snapshot of one table, or a table added to the list, shows its own progress from 0%,
 * not the finished tables'); otherwise every planned table.
 */
function snapshotProgress(tables: TableStatus[], stats: PipelineStats, live: boolean): PipelineStatus['snapshot'] {
  const running = live ? tables.filter((t) => stats.snapshotting(t.table)) : [];
  const planned =
    running.length > 0 ? running.filter((t) => t.partitionsTotal > 0) : tables.filter((t) => t.partitionsTotal > 0);
  if (planned.length === 0) {
    // Being planned: not done, nothing read yet.
    if (running.length > 0)
      return { partitionsTotal: 0, partitionsDone: 0, rowsRead: 0, rowsEstimated: 0, done: false };
    return undefined;
  }
  const fromStats = live ? stats.snapshotProgress(planned.map((t) => t.table)) : undefined;
  const partitionsTotal = planned.reduce((n, t) => n + t.partitionsTotal, 0);
  const partitionsDone = planned.reduce((n, t) => n + t.partitionsDone, 0);
  const progress = {
    partitionsTotal,
    partitionsDone,
    rowsRead: planned.reduce((n, t) => n + t.rowsSnapshotted, 0),
    rowsEstimated: planned.reduce((n, t) => n + t.rowsEstimated, 0),
    // A run with a table still being planned is not done, whatever the others say.
    done: partitionsDone >= partitionsTotal && planned.length >= running.length,
  } as NonNullable<PipelineStatus['snapshot']>;
  if (fromStats?.etaSeconds !== undefined && !progress.done) progress.etaSeconds = fromStats.etaSeconds;
  return progress;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/** Which sink holds the replication slot back, while one is paused or errored. */
function laneWarnings(pipeline: string, sinks: SinkStatus[]): string[] {
  const out: string[] = [];
  for (const s of sinks) {
    const at = s.checkpointText ?? s.checkpoint ?? 'its first event';
    if (s.state === 'paused')
      out.push(
        `sink ${s.name} holds the replication slot back at ${at}: its spill log is full (max_spill_bytes), so it takes no new events until it has written its backlog; the other sinks continue`,
      );
    else if (s.state === 'errored')
      out.push(
        `sink ${s.name} stopped with an error and holds the replication slot back at ${at}; the other sinks continue. Fix it, then \`nanosync pipeline resume ${pipeline}\` restarts it from there`,
      );
  }
  return out;
}
