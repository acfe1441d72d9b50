import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { type LatencyHistogram, type PipelineStatus, WRITE_LATENCY_BUCKETS } from '../runtime/stats.js';
import type { PipelineState } from '../state/store.js';

/**
 * Every state a pipeline can be in, in lifecycle order. `ns_pipeline_state` has one series
 * per pipeline and state: 1 for the current one, 0 for the others (the Prometheus "state
 * set" idiom, so `ns_pipeline_state{state="ERRORED"} == 1` is an alert rule as it is).
 */
export const PIPELINE_STATES: readonly PipelineState[] = [
  'CREATED',
  'WAITING',
  'SNAPSHOTTING',
  'LIVE_CDC',
  'DEGRADED',
  'RETRYING',
  'PAUSED',
  'ERRORED',
  'COMPLETED',
];

/** Names of the series this exporter writes, for dashboards and tests. */
export const METRIC_NAMES = {
  pipelineState: 'ns_pipeline_state',
  pipelineLastError: 'ns_pipeline_last_error',
  pipelineRetryAttempt: 'ns_pipeline_retry_attempt',
  pipelineNextRetry: 'ns_pipeline_next_retry_timestamp_seconds',
  replicationLag: 'ns_pipeline_replication_lag_seconds',
  pipelineWarnings: 'ns_pipeline_warnings',
  sourceEvents: 'ns_source_events_total',
  tableLag: 'ns_table_replication_lag_seconds',
  sinkRowsWritten: 'ns_sink_rows_written_total',
  sinkWriteErrors: 'ns_sink_write_errors_total',
  sinkDeadLetters: 'ns_sink_dead_letters_total',
  sinkSkippedEvents: 'ns_sink_skipped_events_total',
  sinkWriteLatency: 'ns_sink_write_latency_seconds',
  sinkLag: 'ns_sink_replication_lag_seconds',
  sinkQueueEvents: 'ns_sink_queue_events',
  sinkSpillBytes: 'ns_sink_spill_bytes',
  sinkSpillEvents: 'ns_sink_spill_events',
  snapshotPartitions: 'ns_snapshot_partitions_total',
  snapshotPartitionsCompleted: 'ns_snapshot_partitions_completed_total',
  snapshotRows: 'ns_snapshot_rows_total',
  snapshotRowsEstimated: 'ns_snapshot_rows_estimated',
  slotRetainedWal: 'ns_slot_retained_wal_bytes',
  slotSafeWal: 'ns_slot_safe_wal_bytes',
} as const;

type Labels = Record<string, string>;

/**
 * Prometheus view of the pipelines of one server.
 *
 * Nothing is recorded on the hot path: the runtime already keeps its counters, and each
 * scrape asks `list()` once and lets every metric's `collect()` copy the figures out of that
 * answer. Counters therefore restart from zero with the server, as Prometheus expects of a
 * process restart.
 *
 * One exporter (and one prom-client `Registry`) per server: two servers in one process
 * (tests) never see each other's series.
 */
export class PrometheusExporter {
  readonly registry = new Registry();
  /** The answer of `list()` for the scrape in progress. */
  private current: PipelineStatus[] = [];
  /** Scrapes run one at a time, so `current` belongs to exactly one of them. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly list: () => Promise<PipelineStatus[]>) {
    const registers = [this.registry];
    const each = (fn: (p: PipelineStatus) => void): void => {
      for (const p of this.current) fn(p);
    };

    gauge(
      registers,
      METRIC_NAMES.pipelineState,
      `1 for the state the pipeline is in, 0 for the other states (${PIPELINE_STATES.join(', ')}).`,
      ['pipeline', 'state'],
      (set) =>
        each((p) => {
          const states = PIPELINE_STATES.includes(p.state) ? PIPELINE_STATES : [...PIPELINE_STATES, p.state];
          for (const state of states) set({ pipeline: p.name, state }, state === p.state ? 1 : 0);
        }),
    );

    gauge(
      registers,
      METRIC_NAMES.pipelineLastError,
      'Info metric: 1, with the error text (first 200 characters) as a label, while the pipeline is ERRORED or RETRYING.',
      ['pipeline', 'state', 'error'],
      (set) =>
        each((p) => {
          if (p.error !== undefined && (p.state === 'ERRORED' || p.state === 'RETRYING'))
            set({ pipeline: p.name, state: p.state, error: p.error.slice(0, 200) }, 1);
        }),
    );
    gauge(
      registers,
      METRIC_NAMES.pipelineRetryAttempt,
      'Failed attempts in a row while the pipeline is RETRYING (absent otherwise).',
      ['pipeline'],
      (set) =>
        each((p) => {
          if (p.retry !== undefined) set({ pipeline: p.name }, p.retry.attempt);
        }),
    );
    gauge(
      registers,
      METRIC_NAMES.pipelineNextRetry,
      'Unix time of the next attempt while the pipeline is RETRYING (absent otherwise).',
      ['pipeline'],
      (set) =>
        each((p) => {
          if (p.retry !== undefined) set({ pipeline: p.name }, Date.parse(p.retry.nextRetryAt) / 1000);
        }),
    );

    gauge(
      registers,
      METRIC_NAMES.replicationLag,
      'Seconds from a change being committed in the source to every sink having it durably. Absent until the stream delivered something.',
      ['pipeline'],
      (set) =>
        each((p) => {
          if (p.lagSeconds !== undefined) set({ pipeline: p.name }, p.lagSeconds);
        }),
    );
    gauge(
      registers,
      METRIC_NAMES.pipelineWarnings,
      'Active warnings of the pipeline (retained WAL past 50% or 80% of the limit, stalled slot); the texts are in the admin API and the log.',
      ['pipeline'],
      (set) => each((p) => set({ pipeline: p.name }, p.warnings.length)),
    );
    counter(
      registers,
      METRIC_NAMES.sourceEvents,
      'Changes (inserts, updates, deletes) read from the source stream since the server started, per table. Snapshot rows are counted in ns_snapshot_rows_total.',
      ['pipeline', 'table'],
      (inc) =>
        each((p) => {
          for (const t of p.tables) inc({ pipeline: p.name, table: t.table }, t.events);
        }),
    );
    gauge(
      registers,
      METRIC_NAMES.tableLag,
      "Replication lag of the table's latest change when every sink had it.",
      ['pipeline', 'table'],
      (set) =>
        each((p) => {
          for (const t of p.tables)
            if (t.lagSeconds !== undefined) set({ pipeline: p.name, table: t.table }, t.lagSeconds);
        }),
    );
    counter(
      registers,
      METRIC_NAMES.sinkRowsWritten,
      'Events written durably by the sink since the server started (snapshot rows and changes, after target_mappings).',
      ['pipeline', 'sink'],
      (inc) =>
        each((p) => {
          for (const s of p.sinks) inc({ pipeline: p.name, sink: s.name }, s.rowsWritten);
        }),
    );
    counter(
      registers,
      METRIC_NAMES.sinkWriteErrors,
      'Failed write attempts of the sink since the server started (every retry counts).',
      ['pipeline', 'sink'],
      (inc) =>
        each((p) => {
          for (const s of p.sinks) inc({ pipeline: p.name, sink: s.name }, s.writeErrors);
        }),
    );
    counter(
      registers,
      METRIC_NAMES.sinkDeadLetters,
      'Events the sink could never write that went to its dead-letter target (on_error: dead_letter), since the server started.',
      ['pipeline', 'sink'],
      (inc) =>
        each((p) => {
          for (const s of p.sinks) inc({ pipeline: p.name, sink: s.name }, s.deadLetters ?? 0);
        }),
    );
    counter(
      registers,
      METRIC_NAMES.sinkSkippedEvents,
      'Events the sink could never write that were dropped (on_error: skip), since the server started.',
      ['pipeline', 'sink'],
      (inc) =>
        each((p) => {
          for (const s of p.sinks) inc({ pipeline: p.name, sink: s.name }, s.skippedEvents ?? 0);
        }),
    );
    gauge(
      registers,
      METRIC_NAMES.sinkLag,
      'Seconds from commit in the source to durable in this sink.',
      ['pipeline', 'sink'],
      (set) =>
        each((p) => {
          for (const s of p.sinks)
            if (s.lagSeconds !== undefined) set({ pipeline: p.name, sink: s.name }, s.lagSeconds);
        }),
    );
    gauge(registers, METRIC_NAMES.sinkQueueEvents, "Events waiting in the sink's queue.", ['pipeline', 'sink'], (set) =>
      each((p) => {
        for (const s of p.sinks) set({ pipeline: p.name, sink: s.name }, s.queueDepth);
      }),
    );
    gauge(
      registers,
      METRIC_NAMES.sinkSpillBytes,
      "Bytes of the sink's backlog in its spill log on disk (a sink behind the others of its pipeline; bounded by max_spill_bytes).",
      ['pipeline', 'sink'],
      (set) =>
        each((p) => {
          for (const s of p.sinks) set({ pipeline: p.name, sink: s.name }, s.spillBytes ?? 0);
        }),
    );
    gauge(
      registers,
      METRIC_NAMES.sinkSpillEvents,
      "Events of the sink's backlog in its spill log on disk.",
      ['pipeline', 'sink'],
      (set) =>
        each((p) => {
          for (const s of p.sinks) set({ pipeline: p.name, sink: s.name }, s.spillEvents ?? 0);
        }),
    );

    const latency: Histogram<string> = new Histogram({
      name: METRIC_NAMES.sinkWriteLatency,
      help: 'Duration of successful sink writes (one write carries a batch of events), in seconds.',
      labelNames: ['pipeline', 'sink'],
      buckets: [...WRITE_LATENCY_BUCKETS],
      registers,
      collect: () => {
        latency.reset();
        for (const p of this.current)
          for (const s of p.sinks) fillHistogram(latency, { pipeline: p.name, sink: s.name }, s.writeLatency);
      },
    });

    const snapshotTables = (p: PipelineStatus) =>
      p.tables.filter((t) => t.partitionsTotal > 0 || t.rowsSnapshotted > 0);
    counter(
      registers,
      METRIC_NAMES.snapshotPartitions,
      'Snapshot partitions planned for the table (a new snapshot starts again from zero).',
      ['pipeline', 'table'],
      (inc) =>
        each((p) => {
          for (const t of snapshotTables(p)) inc({ pipeline: p.name, table: t.table }, t.partitionsTotal);
        }),
    );
    counter(
      registers,
      METRIC_NAMES.snapshotPartitionsCompleted,
      'Snapshot partitions whose rows every sink has.',
      ['pipeline', 'table'],
      (inc) =>
        each((p) => {
          for (const t of snapshotTables(p)) inc({ pipeline: p.name, table: t.table }, t.partitionsDone);
        }),
    );
    counter(
      registers,
      METRIC_NAMES.snapshotRows,
      'Rows read by the snapshot of the table (completed partitions, plus partitions in progress in this run).',
      ['pipeline', 'table'],
      (inc) =>
        each((p) => {
          for (const t of snapshotTables(p)) inc({ pipeline: p.name, table: t.table }, t.rowsSnapshotted);
        }),
    );
    gauge(
      registers,
      METRIC_NAMES.snapshotRowsEstimated,
      "The source's estimate of the table's rows when the snapshot was planned (0 when it gives none).",
      ['pipeline', 'table'],
      (set) =>
        each((p) => {
          for (const t of snapshotTables(p)) set({ pipeline: p.name, table: t.table }, t.rowsEstimated);
        }),
    );
    gauge(
      registers,
      METRIC_NAMES.slotRetainedWal,
      "WAL the source server keeps for the pipeline's replication slot, in bytes.",
      ['pipeline'],
      (set) =>
        each((p) => {
          if (p.source?.retainedWalBytes !== undefined) set({ pipeline: p.name }, p.source.retainedWalBytes);
        }),
    );
    gauge(
      registers,
      METRIC_NAMES.slotSafeWal,
      'WAL that can still be written before the source server may invalidate the slot, in bytes. Absent when the server sets no limit (max_slot_wal_keep_size = -1).',
      ['pipeline'],
      (set) =>
        each((p) => {
          const safe = p.source?.safeWalBytes;
          if (typeof safe === 'number') set({ pipeline: p.name }, safe);
        }),
    );
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** One scrape: the Prometheus text exposition of every pipeline, as of now. */
  render(): Promise<string> {
    const run = this.queue.then(async () => {
      this.current = await this.list();
      try {
        return await this.registry.metrics();
      } finally {
        this.current = [];
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function gauge(
  registers: Registry[],
  name: string,
  help: string,
  labelNames: string[],
  collector: (set: (labels: Labels, value: number) => void) => void,
): Gauge<string> {
  const metric: Gauge<string> = new Gauge({
    name,
    help,
    labelNames,
    registers,
    // Start from an empty metric at every scrape, so a deleted pipeline's series disappear.
    collect: () => {
      metric.reset();
      collector((labels, value) => metric.set(labels, value));
    },
  });
  return metric;
}

/** A counter whose value is copied from the runtime's own total at scrape time. */
function counter(
  registers: Registry[],
  name: string,
  help: string,
  labelNames: string[],
  collector: (inc: (labels: Labels, value: number) => void) => void,
): Counter<string> {
  const metric: Counter<string> = new Counter({
    name,
    help,
    labelNames,
    registers,
    collect: () => {
      metric.reset();
      collector((labels, value) => metric.inc(labels, Math.max(0, value)));
    },
  });
  return metric;
}

/** prom-client's per-series histogram state: non-cumulative bucket counts keyed by upper bound. */
interface HistogramSeries {
  labels: Labels;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

/**
 * Copy a cumulative histogram kept by the runtime into a prom-client series. prom-client has
 * no public setter for whole histograms, so this writes its per-series state after `zero()`
 * created it (the exporter's unit test pins the rendered result). A runtime bucket without a
 * matching bound here lands in the next larger bound, or only in `+Inf`.
 */
function fillHistogram(histogram: Histogram<string>, labels: Labels, source: LatencyHistogram): void {
  histogram.zero(labels);
  const series = Object.values((histogram as unknown as { hashMap: Record<string, HistogramSeries> }).hashMap).find(
    (s) => sameLabels(s.labels, labels),
  );
  if (series === undefined) return;
  const bounds = Object.keys(series.bucketValues)
    .map(Number)
    .sort((a, b) => a - b);
  let previous = 0;
  for (const bucket of source.buckets) {
    const increment = bucket.count - previous;
    previous = bucket.count;
    const bound = bounds.find((b) => b >= bucket.le);
    if (bound !== undefined && increment > 0) series.bucketValues[bound]! += increment;
  }
  series.count = source.count;
  series.sum = source.sum;
}

function sameLabels(a: Labels, b: Labels): boolean {
  const keys = Object.keys(b);
  return Object.keys(a).length === keys.length && keys.every((k) => a[k] === b[k]);
}
