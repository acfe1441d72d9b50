import type { SourceMetrics } from '../contract/connector.js';
import type { ChangeBatch, Position } from '../model.js';
import type { PipelineState } from '../state/store.js';

/**
 * What an operator sees of a pipeline: the answer of `engine.list()` / `engine.status()`,
 * served as JSON by the admin API and turned into Prometheus metrics and the dashboard.
 * Plain data only (numbers, strings, arrays): `JSON.stringify` round-trips it.
 */
/** A pipeline waiting to start again after an error that may pass by itself. */
export interface RetryStatus {
  /** Failed attempts in a row so far (1 after the first failure). */
  attempt: number;
  /** After this many, the pipeline stops as ERRORED; 0: no limit (waiting for the state store to come back). */
  maxAttempts: number;
  /** When the next attempt starts (ISO 8601). */
  nextRetryAt: string;
  lastError: string;
}

export interface PipelineStatus {
  name: string;
  state: PipelineState;
  replicationType: string;
  /** Cause of ERRORED, or the last error while RETRYING; redacted. */
  error?: string;
  /** Set while the state is RETRYING. */
  retry?: RetryStatus;
  /**
   * Seconds from a change's commit in the source to the moment every sink had it durably
   * (and the source was acknowledged). 0 once an idle pipeline is caught up; grows while
   * acknowledged changes lag behind pending ones. Absent until the stream delivered something.
   */
  lagSeconds?: number;
  /** Events (stream changes and snapshot rows) per second over the last few seconds. */
  eventsPerSecond: number;
  /** Events (stream changes and snapshot rows) taken from the source by this server since it started. */
  eventsTotal: number;
  /** L₀ as stored (opaque), and in the source's human form when the source is running here. */
  startPosition?: string;
  startPositionText?: string;
  /** Minimum checkpoint over the sinks: where a restart resumes. */
  checkpoint?: string;
  checkpointText?: string;
  /** Position last acknowledged to the source by this server. */
  acknowledgedPosition?: string;
  /**
   * The server that runs the pipeline (the holder of its lease: `host/pid-N` or the name it
   * was started with), this one or another of the fleet; absent while no server runs it.
   */
  server?: string;
  /** Set when another server holds the pipeline's lease and runs it; this server does not. */
  heldBy?: string;
  /** When that lease runs out unless renewed (ISO 8601). */
  heldUntil?: string;
  snapshot?: SnapshotProgress;
  tables: TableStatus[];
  sinks: SinkStatus[];
  source?: SourceStatus;
  /** Active warnings, worst first (retained WAL, stalled). */
  warnings: string[];
  /**
   * What the pipeline waits for while it cannot go on (its source or a sink said so), e.g.
   * `source: replication slot "nanosync_slot_orders" is in use by another process (pid 4711)`;
   * absent while nothing is waited for. The state is then WAITING, unless the pipeline is
   * in a state that says more (DEGRADED).
   */
  waitingFor?: string;
  updatedAt?: string;
  /** The `workers` setting, when the pipeline runs in this process. */
  workers?: WorkersStatus;
}

/** A pipeline's worker threads (`workers: auto | N | 0`). */
export interface WorkersStatus {
  /** As configured: `auto` or a count (0: none). */
  setting: 'auto' | number;
  /** Threads that setting gives on this machine (0: everything runs on the main thread). */
  threads: number;
  /**
   * While the pipeline runs here, once its run decided: `workers` when its snapshot goes
   * through the threads, `inline` when it runs on the main thread (`inlineReason` says why).
   */
  mode?: 'workers' | 'inline';
  inlineReason?: string;
  /** Snapshot chunks the threads decoded and encoded in the current run. */
  chunks?: number;
  /**
   * The change stream, once the current run started streaming with a `workers` setting above
   * 0: `workers` when its batches go through the threads (`batches` of them so far in this
   * run, `inlineBatches` decoded on the main thread instead, each kind of reason logged once),
   * `inline` when the whole stream runs on the main thread (`inlineReason` says why).
   */
  stream?: { mode: 'workers' | 'inline'; inlineReason?: string; batches?: number; inlineBatches?: number };
}

export interface SnapshotProgress {
  partitionsTotal: number;
  partitionsDone: number;
  /** Rows read: from completed partitions, plus partitions in progress in this run. */
  rowsRead: number;
  /** Sum of the planner's estimates (0 when the source gives none). */
  rowsEstimated: number;
  /** Seconds left at the read rate of this run, when there is a rate and an estimate. */
  etaSeconds?: number;
  done: boolean;
}

export interface TableStatus {
  /** `schema.table` */
  table: string;
  rowsSnapshotted: number;
  rowsEstimated: number;
  /** Stream changes (insert/update/delete) taken from the source for this table. */
  events: number;
  /** Lag of this table's latest change when it was acknowledged; 0 after an idle catch-up. */
  lagSeconds?: number;
  partitionsTotal: number;
  partitionsDone: number;
}

/** Cumulative histogram in Prometheus shape: `count` of observations ≤ `le` seconds; `+Inf` = `count`. */
export interface LatencyHistogram {
  buckets: { le: number; count: number }[];
  count: number;
  /** Sum of observed seconds. */
  sum: number;
}

export interface SinkStatus {
  /** Stable id within the pipeline, `${index}:${connection}`. */
  name: string;
  /** Events written durably (after this sink's target_mappings) since this server started. */
  rowsWritten: number;
  /** Failed write attempts (each retry counts). */
  writeErrors: number;
  /** Events the sink could not write, put in its dead-letter target / skipped, since this server started. */
  deadLetters?: number;
  skippedEvents?: number;
  /**
   * Batches encoded ahead of the write that this sink wrote, since this server started (absent:
   * none): by the pipeline's worker threads, or with `workers: 0` from snapshot chunks' JSON text.
   */
  encodedWrites?: number;
  checkpoint?: string;
  checkpointText?: string;
  /** Events waiting in this sink's queue, and their approximate size. */
  queueDepth: number;
  queueBytes: number;
  /**
   * While the pipeline runs here: `running`, `spilling` (its backlog is in the spill log),
   * `paused` (the spill log is full: it takes no events and holds the slot back) or
   * `errored` (it stopped with `error`; the other sinks continue, the pipeline is DEGRADED).
   */
  state?: 'running' | 'spilling' | 'paused' | 'errored';
  error?: string;
  /** Events and bytes in the spill log. */
  spillEvents?: number;
  spillBytes?: number;
  /** Commit → durable-in-this-sink lag, like the pipeline's but for this sink alone. */
  lagSeconds?: number;
  writeLatency: LatencyHistogram;
}

export interface SourceStatus {
  retainedWalBytes?: number;
  /** Bytes left before the server may invalidate the slot; `null` = no limit configured. */
  safeWalBytes?: number | null;
  headPosition?: string;
  confirmedPosition?: string;
  /** When the source was last asked (ISO 8601). */
  polledAt?: string;
  /**
   * Paused pipeline: commit time (ISO 8601) of the oldest change not delivered yet, `null`
   * when nothing is waiting. The pipeline's lag is counted from it while it is paused.
   */
  oldestPendingCommitAt?: string | null;
}

/** Seconds; the prom-client default buckets, so the exported histogram needs no re-bucketing. */
export const WRITE_LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class LatencyRecorder {
  private readonly counts = new Array<number>(WRITE_LATENCY_BUCKETS.length).fill(0);
  private count = 0;
  private sum = 0;

  observe(seconds: number): void {
    this.count++;
    this.sum += seconds;
    for (let i = 0; i < WRITE_LATENCY_BUCKETS.length; i++) {
      if (seconds <= WRITE_LATENCY_BUCKETS[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }

  snapshot(): LatencyHistogram {
    let running = 0;
    const buckets = WRITE_LATENCY_BUCKETS.map((le, i) => {
      running += this.counts[i]!;
      return { le, count: running };
    });
    return { buckets, count: this.count, sum: this.sum };
  }
}

/** Events per second over a sliding window of whole seconds; O(1) per call, fixed memory. */
export class RateWindow {
  private readonly slots: number[];
  private lastSecond = 0;
  private firstSecond: number | undefined;

  constructor(private readonly windowSeconds = 10) {
    this.slots = new Array<number>(windowSeconds).fill(0);
  }

  add(n: number, nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    this.advance(second);
    this.firstSecond ??= second;
    this.slots[second % this.windowSeconds]! += n;
  }

  rate(nowMs: number): number {
    const second = Math.floor(nowMs / 1000);
    this.advance(second);
    if (this.firstSecond === undefined) return 0;
    let total = 0;
    for (const n of this.slots) total += n;
    // Seconds covered: the window, or less right after the first event.
    const covered = Math.min(this.windowSeconds, second - this.firstSecond + 1);
    return total / Math.max(1, covered);
  }

  private advance(second: number): void {
    if (second <= this.lastSecond) return;
    const gap = Math.min(this.windowSeconds, second - this.lastSecond);
    for (let i = 1; i <= gap; i++) this.slots[(this.lastSecond + i) % this.windowSeconds] = 0;
    this.lastSecond = second;
  }
}

export class TableStats {
  rowsSnapshotted = 0;
  rowsEstimated = 0;
  events = 0;
  partitionsTotal = 0;
  partitionsDone = 0;
  lagMs: number | undefined;

  constructor(readonly table: string) {}
}

export class SinkStats {
  rowsWritten = 0;
  writeErrors = 0;
  /** Events this sink could not write, put in its dead-letter target (`on_error: dead_letter`). */
  deadLetters = 0;
  /** Events this sink could not write, dropped (`on_error: skip`). */
  skippedEvents = 0;
  /** Batches a worker thread encoded that this sink wrote (`Sink.writeEncoded`). */
  encodedWrites = 0;
  lagMs: number | undefined;
  readonly latency = new LatencyRecorder();

  constructor(readonly name: string) {}
}

/** Unacknowledged stretches tracked one by one; beyond this they are merged. */
const MAX_PENDING_ACKS = 4096;

/** A stretch of the stream waiting to be acknowledged: its end position and newest commit time. */
interface PendingAck {
  position: Position;
  commitMs: number | undefined;
  tables: TableStats[];
}

export interface WarningThresholds {
  /** Confirmed position unchanged this long while the source head moves → "stalled". */
  stallAfterMs: number;
}

/**
 * Counters and gauges of one pipeline, kept by the engine across runs (a restart of the
 * pipeline keeps the totals; a restart of the server starts them again, like any counter).
 * Updated on the hot path once per batch, never per event beyond a table counter.
 */
export class PipelineStats {
  eventsTotal = 0;
  readonly rate = new RateWindow();
  readonly tables = new Map<string, TableStats>();
  readonly sinks = new Map<string, SinkStats>();
  source: SourceStatus | undefined;
  acknowledgedPosition: Position | undefined;
  snapshotActive = false;
  /** The tables of the snapshot run in progress (see {@link startSnapshot}). */
  private snapshotTables: ReadonlySet<string> = new Set();
  private snapshotStartedAt = 0;
  private snapshotRowsAtStart = 0;
  private lagMs: number | undefined;
  private readonly pending: PendingAck[] = [];
  private pendingHead = 0;
  /** Events since the last batch with a safePosition (a transaction spread over batches). */
  private openCommitMs: number | undefined;
  private openTables: TableStats[] = [];
  private readonly warnings = new Map<string, string>();
  private confirmed: { position: Position | undefined; since: number; head: Position | undefined } | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  table(name: string): TableStats {
    let stats = this.tables.get(name);
    if (stats === undefined) {
      stats = new TableStats(name);
      this.tables.set(name, stats);
    }
    return stats;
  }

  sink(name: string): SinkStats {
    let stats = this.sinks.get(name);
    if (stats === undefined) {
      stats = new SinkStats(name);
      this.sinks.set(name, stats);
    }
    return stats;
  }

  /**
   * A stream batch left the source. `tableOf` maps an event to its table's stats (cached by
   * the caller); `commitMs` is the batch's newest commit time, parsed once by the caller.
   */
  onStreamBatch(
    batch: ChangeBatch,
    tableOf: (event: ChangeBatch['events'][number]) => TableStats,
    commitMs: number | undefined,
  ): void {
    const events = batch.events;
    const raw = batch.raw;
    const n = raw !== undefined ? raw.count : events.length;
    if (n > 0) {
      this.eventsTotal += n;
      this.rate.add(n, this.now());
      let last: TableStats | undefined;
      if (raw !== undefined) {
        // Undecoded (for the worker threads): the source counted the events per table.
        for (const { table, events: count } of raw.tables) {
          const t = tableOf({ table } as ChangeBatch['events'][number]);
          t.events += count;
          if (!this.openTables.includes(t)) this.openTables.push(t);
        }
      }
      for (let i = 0; i < events.length; i++) {
        const t = tableOf(events[i]!);
        t.events++;
        if (t !== last && !this.openTables.includes(t)) this.openTables.push(t);
        last = t;
      }
      if (
        commitMs !== undefined &&
        !Number.isNaN(commitMs) &&
        (this.openCommitMs === undefined || commitMs > this.openCommitMs)
      )
        this.openCommitMs = commitMs;
    }
    if (batch.safePosition === undefined) return;
    const keepalive = this.openTables.length === 0 && this.openCommitMs === undefined;
    const tail = this.pending.length > this.pendingHead ? this.pending[this.pending.length - 1] : undefined;
    if (keepalive && tail !== undefined && tail.commitMs === undefined && tail.tables.length === 0) {
      // Consecutive keepalives: keep one entry, so an unacknowledged idle stretch stays O(1).
      tail.position = batch.safePosition;
      return;
    }
    if (tail !== undefined && this.pending.length - this.pendingHead >= MAX_PENDING_ACKS) {
      // Far behind (e.g. every event filtered away for a stuck sink): coarser lag, fixed memory.
      tail.position = batch.safePosition;
      if (this.openCommitMs !== undefined && (tail.commitMs === undefined || this.openCommitMs > tail.commitMs))
        tail.commitMs = this.openCommitMs;
      for (const t of this.openTables) if (!tail.tables.includes(t)) tail.tables.push(t);
      this.openCommitMs = undefined;
      this.openTables = [];
      return;
    }
    this.pending.push({ position: batch.safePosition, commitMs: this.openCommitMs, tables: this.openTables });
    this.openCommitMs = undefined;
    this.openTables = [];
  }

  /** The source was acknowledged up to `position`: everything up to it is in every sink. */
  onAcknowledged(position: Position, compare: (a: Position, b: Position) => number): void {
    this.acknowledgedPosition = position;
    const now = this.now();
    while (this.pendingHead < this.pending.length) {
      const entry = this.pending[this.pendingHead]!;
      if (compare(entry.position, position) > 0) break;
      this.pendingHead++;
      if (entry.commitMs !== undefined) {
        this.lagMs = Math.max(0, now - entry.commitMs);
        for (const t of entry.tables) t.lagMs = this.lagMs;
      } else if (
        entry.tables.length === 0 &&
        this.pendingHead === this.pending.length &&
        this.openTables.length === 0
      ) {
        // A keepalive with nothing after it: caught up.
        this.lagMs = 0;
        for (const t of this.tables.values()) if (t.lagMs !== undefined) t.lagMs = 0;
      }
    }
    if (this.pendingHead > 64 && this.pendingHead * 2 > this.pending.length) {
      this.pending.splice(0, this.pendingHead);
      this.pendingHead = 0;
    }
  }

  /** Forget in-flight lag bookkeeping (a new run starts from the checkpoint). */
  resetInFlight(): void {
    // A new run streams again: the paused figure no longer stands for the lag.
    if (this.source !== undefined) delete this.source.oldestPendingCommitAt;
    this.pending.length = 0;
    this.pendingHead = 0;
    this.openCommitMs = undefined;
    this.openTables = [];
  }

  onSnapshotRows(table: TableStats, n: number): void {
    this.eventsTotal += n;
    this.rate.add(n, this.now());
    table.rowsSnapshotted += n;
  }

  /**
   * A snapshot run begins, of `tables` only (a re-snapshot or a table added later reads some
   * tables; the others keep the figures of their finished snapshot). Their figures start from
   * zero until the run has loaded or made their plans ({@link snapshotPlanned}).
   */
  startSnapshot(tables: readonly string[]): void {
    this.snapshotActive = true;
    this.snapshotTables = new Set(tables);
    for (const name of tables) {
      const t = this.table(name);
      t.partitionsTotal = 0;
      t.partitionsDone = 0;
      t.rowsSnapshotted = 0;
      t.rowsEstimated = 0;
    }
    this.snapshotStartedAt = this.now();
    this.snapshotRowsAtStart = 0;
  }

  /** The run's plans are loaded (partitions done earlier counted): the read rate is measured from here. */
  snapshotPlanned(): void {
    this.snapshotStartedAt = this.now();
    this.snapshotRowsAtStart = this.snapshotRows();
  }

  endSnapshot(): void {
    this.snapshotActive = false;
    this.snapshotTables = new Set();
  }

  /** Whether a snapshot run of this server is reading `table` now. */
  snapshotting(table: string): boolean {
    return this.snapshotActive && this.snapshotTables.has(table);
  }

  lagSeconds(): number | undefined {
    const pending = this.source?.oldestPendingCommitAt;
    if (pending !== undefined) {
      // Paused: nothing is acknowledged any more; the lag is the age of the oldest change waiting.
      return pending === null ? 0 : Math.max(0, this.now() - Date.parse(pending)) / 1000;
    }
    let lag = this.lagMs;
    const oldest = this.oldestPendingCommitMs();
    if (oldest !== undefined) lag = Math.max(lag ?? 0, this.now() - oldest);
    return lag === undefined ? undefined : lag / 1000;
  }

  snapshotProgress(tables: readonly string[]): SnapshotProgress | undefined {
    let partitionsTotal = 0;
    let partitionsDone = 0;
    let rowsRead = 0;
    let rowsEstimated = 0;
    for (const name of tables) {
      const t = this.tables.get(name);
      if (t === undefined) continue;
      partitionsTotal += t.partitionsTotal;
      partitionsDone += t.partitionsDone;
      rowsRead += t.rowsSnapshotted;
      rowsEstimated += t.rowsEstimated;
    }
    if (partitionsTotal === 0) return undefined;
    const progress: SnapshotProgress = {
      partitionsTotal,
      partitionsDone,
      rowsRead,
      rowsEstimated,
      done: partitionsDone >= partitionsTotal,
    };
    if (this.snapshotActive && rowsEstimated > rowsRead) {
      const elapsed = (this.now() - this.snapshotStartedAt) / 1000;
      const readThisRun = rowsRead - this.snapshotRowsAtStart;
      if (elapsed > 0 && readThisRun > 0)
        progress.etaSeconds = Math.round((rowsEstimated - rowsRead) / (readThisRun / elapsed));
    }
    return progress;
  }

  /**
   * New source figures. Returns the warnings that appeared with them (to be logged once);
   * `activeWarnings()` has all current ones. `checkStall` is off for a paused pipeline,
   * which is not expected to move.
   */
  onSourceMetrics(metrics: SourceMetrics, thresholds: WarningThresholds, checkStall: boolean): string[] {
    const now = this.now();
    this.source = { polledAt: new Date(now).toISOString() };
    if (metrics.retainedBytes !== undefined) this.source.retainedWalBytes = metrics.retainedBytes;
    if (metrics.safeBytes !== undefined) this.source.safeWalBytes = metrics.safeBytes;
    if (metrics.headPosition !== undefined) this.source.headPosition = metrics.headPosition;
    if (metrics.confirmedPosition !== undefined) this.source.confirmedPosition = metrics.confirmedPosition;
    if (metrics.oldestPendingCommitAt !== undefined) this.source.oldestPendingCommitAt = metrics.oldestPendingCommitAt;
    const added: string[] = [];
    const set = (key: string, message: string | undefined) => {
      if (message === undefined) {
        this.warnings.delete(key);
      } else if (this.warnings.get(key) !== message) {
        if (!this.warnings.has(key)) added.push(message);
        this.warnings.set(key, message);
      }
    };

    const retained = metrics.retainedBytes;
    const safe = metrics.safeBytes;
    let walWarning: string | undefined;
    if (retained !== undefined && typeof safe === 'number') {
      const limit = retained + Math.max(0, safe);
      const share = limit > 0 ? retained / limit : 0;
      if (share >= 0.5) {
        const pct = Math.floor(share * 100);
        walWarning = `retained WAL is ${pct}% of the slot's limit (${formatBytes(retained)} of ${formatBytes(limit)}, ${share >= 0.8 ? 'over 80%' : 'over 50%'}); the slot is invalidated when it reaches 100%`;
      }
    }
    // Two keys so crossing 80% is a new warning even when 50% was already reported.
    const over80 =
      walWarning !== undefined &&
      retained !== undefined &&
      typeof safe === 'number' &&
      retained / (retained + Math.max(0, safe)) >= 0.8;
    set('wal-80', over80 ? walWarning : undefined);
    set('wal-50', over80 ? undefined : walWarning);

    const confirmed = metrics.confirmedPosition ?? this.acknowledgedPosition;
    const head = metrics.headPosition;
    let stalled: string | undefined;
    if (!checkStall) {
      this.confirmed = undefined;
    } else if (this.confirmed === undefined || this.confirmed.position !== confirmed) {
      this.confirmed = { position: confirmed, since: now, head };
    } else {
      this.confirmed.head ??= head;
      const idleMs = now - this.confirmed.since;
      if (
        head !== undefined &&
        this.confirmed.head !== undefined &&
        head !== this.confirmed.head &&
        idleMs >= thresholds.stallAfterMs
      ) {
        stalled = `stalled: the confirmed position has not moved for ${Math.round(idleMs / 1000)} s while the source kept writing`;
      }
    }
    set('stalled', stalled);
    return added;
  }

  /** Drop warnings that only make sense while the pipeline runs (it stopped or errored). */
  clearRunWarnings(): void {
    this.warnings.delete('stalled');
    this.confirmed = undefined;
  }

  activeWarnings(): string[] {
    const order = ['wal-80', 'stalled', 'wal-50'];
    return [...this.warnings.entries()]
      .sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]))
      .map(([, message]) => message);
  }

  private snapshotRows(): number {
    let n = 0;
    for (const name of this.snapshotTables) n += this.tables.get(name)?.rowsSnapshotted ?? 0;
    return n;
  }

  private oldestPendingCommitMs(): number | undefined {
    for (let i = this.pendingHead; i < this.pending.length; i++) {
      const ms = this.pending[i]!.commitMs;
      if (ms !== undefined) return ms;
    }
    return this.openCommitMs;
  }
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
