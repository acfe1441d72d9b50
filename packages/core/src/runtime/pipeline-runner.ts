import { formatTableName } from '../config/table-name.js';
import type { ConnectorContext, DeadLetterTarget, OpenResult, Sink, Source, TableRef } from '../contract/connector.js';
import type { Logger } from '../contract/logger.js';
import { ErrorCode, isRetriable, NanosyncError } from '../errors.js';
import { describeError } from '../log/logger.js';
import type { Position, TableSchema } from '../model.js';
import type { PipelineState, StateStore } from '../state/store.js';
import { Acknowledger } from './acknowledger.js';
import { backoffDelay, sleep, within } from './backoff.js';
import { defaultDeadLetterFile, JsonLinesDeadLetters } from './dead-letters.js';
import { removeSpillFolder, spillDir } from './spill-log.js';
import { DEFAULT_MAX_SPILL_BYTES } from '../config/types.js';
import type { RetryStatus } from './stats.js';
import { FanOut } from './fan-out.js';
import { runPreflight } from './preflight.js';
import { SchemaGuard } from './schema-changes.js';
import { createConnectorMemory } from './connector-memory.js';
import { createEventMapper, type EventMapper, validateMappings } from './mappings.js';
import { compareQueryPositions, runQueryPipeline } from './query-runner.js';
import { type LaneState, SinkLane } from './sink-lane.js';
import { SnapshotCoordinator } from './snapshot-coordinator.js';
import { SnapshotWorkers } from './snapshot-workers.js';
import { resolveWorkerCount } from '../config/read-pipelines.js';
import { runStreamLoop } from './stream-loop.js';
import { StreamWorkers } from './stream-workers.js';
import { workersUnusable } from './workers-unusable.js';
import { WatermarkMerge } from './watermark-merge.js';
import { DEFAULT_SNAPSHOT_CHUNK_BYTES, DEFAULT_SNAPSHOT_CHUNK_ROWS } from '../config/validate.js';
import type { PipelineStats, TableStats } from './stats.js';
import type { MaterializedPipeline, MaterializedSink, RuntimeOptions } from './types.js';

/**
 * Why a runner stops. `pause` leaves the pipeline PAUSED; `shutdown` and `restart` leave the
 * stored state as it was so the next start resumes; `lease-lost` writes nothing (another
 * server owns the pipeline now); `delete` is followed by the source's `drop()`.
 */
export type StopReason = 'pause' | 'shutdown' | 'restart' | 'delete' | 'lease-lost';

export interface PipelineRunnerOptions {
  name: string;
  store: StateStore;
  /** Already bound to the pipeline (`pipeline=name`). */
  logger: Logger;
  /**
   * Unbound logger for the lines that name the pipeline themselves
   * (`INF pipeline resuming name=orders lsn=0/3A1B2C4D`); defaults to `logger`.
   */
  announceLogger?: Logger;
  materialized: MaterializedPipeline;
  stats: PipelineStats;
  runtime: RuntimeOptions;
  onState: (state: PipelineState, error: string | undefined) => void;
  onWarning: (message: string) => void;
  /**
   * Whether this server's lease of the pipeline is still valid by the local clock; every
   * sink write checks it first (see `SinkLane`). Absent: the runner holds no lease.
   */
  leaseValid?: () => boolean;
}

/** The states a connector's wait (`reportWaiting`) shows as WAITING: those that claim progress. */
const SHOWN_AS_WAITING: ReadonlySet<PipelineState> = new Set(['CREATED', 'SNAPSHOTTING', 'LIVE_CDC']);

/** What one attempt created, so that teardown closes exactly that. */
interface AttemptResources {
  source?: Source;
  sinks: { def: MaterializedSink; sink: Sink }[];
  fanOut?: FanOut;
  acker?: Acknowledger;
  coordinator?: SnapshotCoordinator;
  /** The snapshot's worker threads, when it uses them. */
  workers?: SnapshotWorkers;
  /** The change stream's worker threads, when it uses them. */
  streamWorkers?: StreamWorkers;
  snapshot?: OpenResult['snapshot'];
  metricsTimer?: NodeJS.Timeout;
  /**
   * Ends the source's change stream. Not the attempt's signal: on a graceful stop the stream
   * stays open (unread) until the final checkpoint is acknowledged, because a source may
   * report acknowledgements over the stream's own connection (PostgreSQL's standby status
   * updates). Teardown aborts it.
   */
  streamStop: AbortController;
  /** Set when teardown starts: a body still opening things closes them itself. */
  torn?: boolean;
}

/**
 * Runs one pipeline in this process: the order of the handoff, the lifecycle, retries.
 *
 * One run ("attempt"): create the source and sinks → `open` (before any snapshot read; the
 * first run persists the start position L₀) → `describe` → snapshot of the tables that need
 * one (see {@link SnapshotCoordinator}) → release the exported snapshot → stream from the
 * minimum sink checkpoint (or L₀), each batch fanned out to the sink lanes, each durable
 * checkpoint offered to the {@link Acknowledger} as the new minimum over the sinks.
 *
 * Failures: a retriable error from the source restarts the attempt with backoff (from the
 * checkpoints, like a process restart); a sink write that stays failing after its own
 * retries, or any other error, makes the pipeline ERRORED with the cause, stops everything
 * and acknowledges nothing more. A failing state store (down, read-only) makes it RETRYING
 * with the store's error: nothing is acknowledged while no checkpoint can be written; the
 * runner probes the store and resumes from the checkpoint by itself once it accepts writes.
 *
 * Re-snapshot and added tables: a table with pending partitions, or without a stored plan,
 * is snapshotted on the next run. On a pipeline that already streams (a `cdc` →
 * `cdc_backfill` switch clears the plan; a table added to the config has none) the slot is
 * kept: the snapshot is a fresh read (there is no exported snapshot after the first run)
 * that starts after the sinks' checkpoint, so the stream resumed from that checkpoint
 * re-applies every change the read may have missed or already contains — the same overlap
 * rule as a restart mid-snapshot. Snapshot rows carry that resume position.
 */
export class PipelineRunner {
  /** Where the run is in its lifecycle (what the store gets); `state` shows WAITING over it. */
  private phase: PipelineState = 'CREATED';
  error: string | undefined;
  /** Set while RETRYING: which attempt failed, when the next starts, and why. */
  retry: RetryStatus | undefined;
  /** The current attempt's source and sinks, for status (positions in human form, queues). */
  source: Source | undefined;
  fanOut: FanOut | undefined;
  acknowledged: Position | undefined;
  /**
   * Whether this run's snapshot goes through worker threads (`threads`), or why it runs on the
   * main thread; undefined until a run decided it.
   */
  workers: { threads: number; chunks: () => number } | { inline: string } | undefined;
  /**
   * Whether this run's change stream goes through worker threads, or why not; undefined until
   * a run with `workers` above 0 started streaming.
   */
  streamWorkers: { batches: () => number; inlineBatches: () => number } | { inline: string } | undefined;
  /** Reasons already logged for running inline (each once per runner). */
  private readonly inlineLogged = new Set<string>();
  /** What the current attempt's connectors said they wait for (role → what); see `ConnectorContext.reportWaiting`. */
  private readonly waiting = new Map<string, string>();
  /** The store writes of the state, one after the other (see `recordState`). */
  private stateWrites: Promise<void> = Promise.resolve();
  private stopReason: StopReason | undefined;
  private readonly stopController = new AbortController();
  private loopDone: Promise<void> | undefined;
  private deadline = Number.POSITIVE_INFINITY;
  private failures = 0;
  private readonly logger: Logger;
  private readonly tableStats = new WeakMap<TableSchema, TableStats>();

  constructor(private readonly options: PipelineRunnerOptions) {
    this.logger = options.logger;
  }

  get name(): string {
    return this.options.name;
  }

  get stopping(): boolean {
    return this.stopReason !== undefined;
  }

  /**
   * The state shown: WAITING while a connector of the running attempt says it cannot go on
   * (`waitingFor`; a replication slot another process holds) and the run claims progress
   * (CREATED, SNAPSHOTTING, LIVE_CDC), so that a stuck start never shows LIVE_CDC. Stored
   * too (see `recordState`), so that the other servers of a fleet list it.
   */
  get state(): PipelineState {
    return this.waiting.size > 0 && SHOWN_AS_WAITING.has(this.phase) ? 'WAITING' : this.phase;
  }

  /** What the pipeline waits for now (`source: replication slot … is in use by …`), for status. */
  get waitingFor(): string | undefined {
    if (this.waiting.size === 0) return undefined;
    return [...this.waiting].map(([role, what]) => `${role}: ${what}`).join('; ');
  }

  start(): void {
    this.loopDone ??= this.loop();
  }

  /** Resolves when the runner has nothing left running (after a stop, COMPLETED or ERRORED). */
  get done(): Promise<void> {
    return this.loopDone ?? Promise.resolve();
  }

  /**
   * Stop: reads end, queued events are written and checkpointed (within
   * `runtime.stopTimeoutMs`; what does not make it is replayed on the next start), the
   * source is acknowledged at the final checkpoint, and sinks and source are closed.
   */
  async stop(reason: StopReason): Promise<void> {
    this.stopReason ??= reason;
    this.deadline = Math.min(this.deadline, Date.now() + this.options.runtime.stopTimeoutMs);
    this.stopController.abort();
    if (this.loopDone === undefined) return;
    // A safety net against a connector that ignores every signal: give up waiting.
    await within(this.loopDone, this.options.runtime.stopTimeoutMs + 1_500);
  }

  private async loop(): Promise<void> {
    const { runtime } = this.options;
    while (!this.stopping) {
      let outcome: 'completed' | 'stopped';
      try {
        outcome = await this.runOnce();
      } catch (err) {
        if (this.stopping) break;
        const message = describeError(err);
        if (isRetriable(err) && this.failures + 1 < runtime.retry.maxAttempts) {
          this.failures++;
          const delay = backoffDelay(this.failures, runtime.retry);
          this.logger.warn('pipeline failed, restarting from its checkpoint', {
            attempt: this.failures,
            retry_in_ms: delay,
            error: message,
          });
          // In memory only: the stored state stays what the pipeline last reached.
          this.phase = 'RETRYING';
          this.error = message;
          this.retry = {
            attempt: this.failures,
            maxAttempts: runtime.retry.maxAttempts,
            nextRetryAt: new Date(Date.now() + delay).toISOString(),
            lastError: message,
          };
          this.options.onState('RETRYING', message);
          await sleep(delay, this.stopController.signal);
          continue;
        }
        if (NanosyncError.is(err, ErrorCode.StateUnavailable)) {
          // The state store is down or read-only: no checkpoint can be written, so nothing
          // more is acknowledged and the source keeps everything after the last checkpoint.
          // RETRYING (naming the store) until it accepts writes again, then from the checkpoint.
          if (await this.waitForStore(message)) {
            this.failures = 0;
            continue;
          }
          return;
        }
        if (NanosyncError.is(err, ErrorCode.SchemaChangePaused)) {
          // `schema_changes: pause`: stays paused (across restarts) until `resume` accepts the change.
          this.logger.warn('pipeline paused on a schema change', { error: message });
          await this.options.store.updatePipeline(this.options.name, { paused: true }).catch((e: unknown) => {
            this.logger.warn('could not record the pause', { error: describeError(e) });
          });
          await this.setState('PAUSED', message);
          return;
        }
        this.logger.error('pipeline stopped with an error', { error: message });
        // Another server took the lease over: what is stored is its state now, leave it alone.
        if (NanosyncError.is(err, ErrorCode.PipelineLeaseHeld)) this.stopReason = 'lease-lost';
        else if (!NanosyncError.is(err, ErrorCode.SchemaChanged)) await this.abandonFreshStart();
        await this.setState('ERRORED', message);
        return;
      }
      if (outcome === 'completed') {
        await this.setState('COMPLETED');
        this.logger.info('pipeline completed');
        return;
      }
    }
    if (this.stopReason === 'pause') {
      await this.setState('PAUSED');
      this.logger.info('pipeline paused');
    }
    this.options.stats.clearRunWarnings();
  }

  /**
   * Every start: the source's and every sink's `check()` before anything is opened (see
   * {@link runPreflight}). `tables` undefined: a query pipeline, whose source needs no
   * replication set-up, so only the sinks are checked.
   */
  private async preflight(tables: TableRef[] | undefined, res: AttemptResources): Promise<void> {
    await runPreflight({
      pipeline: this.options.name,
      source: tables !== undefined && res.source ? { source: res.source, tables } : undefined,
      sinks: res.sinks.map(({ def, sink }) => ({ name: def.name, sink })),
      logger: this.logger,
      onWarning: (warning) => this.options.onWarning(warning),
    });
  }

  /**
   * The pipeline stops with an error and never got anywhere (no sink checkpoint, no snapshot
   * partition done): remove what its start created on the source (slot, the publication it
   * made) and forget the start position, so the source is as it was and the next start is a
   * first start again.
   */
  private async abandonFreshStart(): Promise<void> {
    const { store, name, materialized } = this.options;
    if (materialized.pipeline.replication_type === 'query') return;
    try {
      const record = await store.getPipeline(name);
      if (record === undefined) return;
      if (Object.keys(await store.getCheckpoints(name)).length > 0) return;
      if ((await store.listPartitions(name)).some((p) => p.status === 'done')) return;
      const source = await materialized.source.definition.create(materialized.source.config, {
        pipeline: name,
        logger: this.logger.child({ connector: 'source' }),
        signal: new AbortController().signal,
      });
      try {
        if (source.abandon !== undefined) {
          await source.abandon();
          this.logger.debug('the source removed what the failed first start created');
        }
      } finally {
        await source.close().catch(() => {});
      }
      if (record.startPosition !== undefined || record.snapshotDone) {
        await store.clearPartitions(name);
        await store.updatePipeline(name, { startPosition: undefined, snapshotDone: false });
      }
    } catch (err) {
      this.logger.warn('could not remove what the failed start created on the source', {
        error: describeError(err),
      });
    }
  }

  /**
   * Probe the store every `storeProbeIntervalMs` with a fenced write that changes nothing but
   * the record's time, RETRYING meanwhile (in memory: the store cannot take it). True once
   * the probe is written; false on a stop, or when the probe is refused because another
   * server took the lease while the store was away (this runner then stops: lease-lost).
   */
  private async waitForStore(message: string): Promise<boolean> {
    const { store, name, runtime } = this.options;
    this.logger.warn('the state store cannot be written; nothing more is acknowledged until it can', {
      error: message,
      retry_every_ms: runtime.storeProbeIntervalMs,
    });
    for (let attempt = 1; !this.stopping; attempt++) {
      this.phase = 'RETRYING';
      this.error = message;
      this.retry = {
        attempt,
        maxAttempts: 0,
        nextRetryAt: new Date(Date.now() + runtime.storeProbeIntervalMs).toISOString(),
        lastError: message,
      };
      this.options.onState('RETRYING', message);
      await sleep(runtime.storeProbeIntervalMs, this.stopController.signal);
      if (this.stopping) return false;
      try {
        await store.updatePipeline(name, {});
        this.logger.info('state store is writable again; restarting from the checkpoint');
        return true;
      } catch (err) {
        if (NanosyncError.is(err, ErrorCode.PipelineLeaseHeld)) {
          this.logger.warn('the pipeline was taken over while the state store was away; stopping here', {
            error: describeError(err),
          });
          this.stopReason = 'lease-lost';
          this.phase = 'ERRORED';
          this.error = describeError(err);
          this.retry = undefined;
          this.options.onState('ERRORED', this.error);
          return false;
        }
        message = describeError(err);
      }
    }
    return false;
  }

  private async setState(state: PipelineState, error?: string): Promise<void> {
    this.phase = state;
    this.error = error;
    this.retry = undefined;
    await this.recordState();
    this.options.onState(this.state, error);
  }

  /**
   * Store the state shown (WAITING included, so that every server of a fleet lists it, and
   * leaves it once the wait ends), after the writes asked for before: each write stores the
   * state as it is when it runs, so the last one stored is the current one. Nothing is stored
   * once another server owns the pipeline or it is being deleted.
   */
  private recordState(): Promise<void> {
    this.stateWrites = this.stateWrites.then(async () => {
      if (this.stopReason === 'lease-lost' || this.stopReason === 'delete') return;
      const state = this.state;
      if (state === 'RETRYING') return;
      try {
        await this.options.store.updatePipeline(this.options.name, { state, error: this.error });
      } catch (err) {
        this.logger.warn('could not record the pipeline state', { state, error: describeError(err) });
      }
    });
    return this.stateWrites;
  }

  private async runOnce(): Promise<'completed' | 'stopped'> {
    const attempt = new AbortController();
    const stopSignal = this.stopController.signal;
    const onStop = () => attempt.abort();
    if (stopSignal.aborted) attempt.abort();
    else stopSignal.addEventListener('abort', onStop, { once: true });

    let failure: { error: unknown } | undefined;
    let rejectFailed!: (err: unknown) => void;
    const failed = new Promise<never>((_, reject) => {
      rejectFailed = reject;
    });
    failed.catch(() => {});
    const fail = (err: unknown) => {
      if (failure !== undefined || this.stopping) return;
      failure = { error: err };
      attempt.abort();
      rejectFailed(err);
    };
    const stopped = new Promise<'stopped'>((resolve) => {
      if (stopSignal.aborted) resolve('stopped');
      else stopSignal.addEventListener('abort', () => resolve('stopped'), { once: true });
    });

    const res: AttemptResources = { sinks: [], streamStop: new AbortController() };
    const body = this.body(attempt.signal, res, fail);
    body.catch(() => {});
    try {
      const outcome = await Promise.race([body, failed, stopped]);
      if (failure !== undefined) throw failure.error;
      return outcome;
    } catch (err) {
      if (failure === undefined) failure = { error: err };
      throw failure.error;
    } finally {
      stopSignal.removeEventListener('abort', onStop);
      attempt.abort();
      if (this.waiting.size > 0) {
        // The attempt ends waiting: the store must not keep WAITING for it.
        const shown = this.state;
        this.waiting.clear();
        if (shown === 'WAITING') await this.recordState();
      }
      await this.teardown(res, failure === undefined);
    }
  }

  private async body(
    signal: AbortSignal,
    res: AttemptResources,
    fail: (err: unknown) => void,
  ): Promise<'completed' | 'stopped'> {
    const { store, name, materialized, stats, runtime } = this.options;
    const { pipeline } = materialized;
    const type = pipeline.replication_type;
    const record = await store.getPipeline(name);
    if (record === undefined)
      throw new NanosyncError(ErrorCode.PipelineNotFound, `pipeline ${name} is not in the state store`);

    const context = (role: string): ConnectorContext => ({
      pipeline: name,
      logger: this.logger.child({ connector: role }),
      signal,
      reportWaiting: (what) => {
        if (signal.aborted) return;
        const before = this.state;
        if (what === undefined) this.waiting.delete(role);
        else this.waiting.set(role, what);
        const after = this.state;
        if (after !== before) {
          if (after === 'WAITING') this.logger.info('pipeline waiting', { state: before, for: this.waitingFor ?? '' });
          else this.logger.info('pipeline no longer waiting', { state: after });
          void this.recordState();
          this.options.onState(after, this.error);
        }
      },
      ...(this.options.leaseValid !== undefined ? { mayWrite: this.options.leaseValid } : {}),
      memory: createConnectorMemory({
        store,
        pipeline: name,
        role,
        scope: async () => (await store.getPipeline(name))?.startPosition,
      }),
    });
    const source = await materialized.source.definition.create(materialized.source.config, context('source'));
    res.source = source;
    this.source = source;
    if (res.torn) {
      await source.close().catch(() => {});
      return 'stopped';
    }
    for (const def of materialized.sinks) {
      const sink = await def.definition.create(def.config, context(`sink ${def.name}`));
      if (res.torn) {
        await sink.close().catch(() => {});
        return 'stopped';
      }
      res.sinks.push({ def, sink });
    }
    await this.preflight(type === 'query' ? undefined : pipeline.source.tableRefs, res);
    if (res.torn) return 'stopped';
    const checkpoints = await store.getCheckpoints(name);
    stats.resetInFlight();

    if (type === 'query') return this.runQuery(source, res, checkpoints, signal, fail);

    const compare = (a: Position, b: Position) => source.comparePositions(a, b);
    const tables: TableRef[] = pipeline.source.tableRefs;
    const wantsSnapshot = type === 'cdc_backfill' || type === 'snapshot';
    let snapshotRefs: TableRef[] = [];
    if (wantsSnapshot) {
      const pending = new Map<string, number>();
      for (const p of await store.listPartitions(name))
        pending.set(p.table, (pending.get(p.table) ?? 0) + (p.status === 'pending' ? 1 : 0));
      snapshotRefs = tables.filter((ref) => (pending.get(formatTableName(ref)) ?? 1) > 0);
      if (snapshotRefs.length === 0 && !record.snapshotDone) {
        // Every partition was durable, but the process ended before the flag was written (the
        // last partition's record and the flag are two writes): write it now, or it never is.
        await store.updatePipeline(name, { snapshotDone: true });
        record.snapshotDone = true;
      }
    }
    if (type === 'snapshot' && snapshotRefs.length === 0 && record.snapshotDone) {
      // Finished before a crash that came before the state was written: just finish.
      await source.drop();
      return 'completed';
    }

    let storedResume: Position | undefined;
    for (const { def } of res.sinks) {
      const p = checkpoints[def.name] ?? record.startPosition;
      if (p !== undefined && (storedResume === undefined || compare(p, storedResume) < 0)) storedResume = p;
    }
    const announce = this.options.announceLogger ?? this.logger;
    if (record.startPosition !== undefined) {
      announce.info('pipeline resuming', { name, lsn: this.format(storedResume ?? record.startPosition) });
    } else {
      announce.info('pipeline starting', { name, type });
    }

    // Concurrent snapshot (the default for cdc_backfill) needs no exported snapshot: every
    // chunk is its own fresh read between two watermarks.
    const wantsConcurrent =
      type === 'cdc_backfill' &&
      (pipeline.snapshot.mode ?? 'concurrent') === 'concurrent' &&
      source.writeWatermark !== undefined;
    const opened = await source.open(tables, {
      existingStartPosition: record.startPosition,
      checkpoint: storedResume,
      wantSnapshot: snapshotRefs.length > 0 && !wantsConcurrent,
    });
    res.snapshot = opened.snapshot;
    // Stopped (or failed) while opening — slot creation can wait long for older transactions:
    // teardown has already run, so release the exported snapshot here (on PostgreSQL a
    // replication connection pinning the xmin horizon) and start nothing.
    if (res.torn) {
      await this.releaseSnapshot(res);
      return 'stopped';
    }
    const startPosition = record.startPosition ?? opened.startPosition;
    if (record.startPosition === undefined) {
      await store.updatePipeline(name, { startPosition });
      this.logger.info('start position recorded', { lsn: this.format(startPosition) });
    }

    const schemas = await source.describe(tables);
    for (const schema of schemas) this.statsFor(schema);
    const mappers = res.sinks.map(({ def }) => {
      validateMappings(def.name, def.mappings, schemas);
      return createEventMapper(def.mappings);
    });
    for (const [i, { sink }] of res.sinks.entries()) {
      const mapper = mappers[i];
      await sink.open(mapper ? schemas.map((t) => mapper.mapTable(t)) : schemas);
    }
    // Stopped while opening: teardown has run, so start nothing it would not stop.
    if (res.torn) return 'stopped';
    const fanOut = this.createFanOut(res, checkpoints, mappers, compare, fail);
    res.acker = new Acknowledger(
      source,
      compare,
      this.logger,
      (position) => {
        this.acknowledged = position;
        stats.onAcknowledged(position, compare);
      },
      fail,
    );
    this.startMetrics(source, res);
    const resumeFrom = fanOut.resumePosition(startPosition, compare);
    const byKey = new Map(schemas.map((s) => [formatTableName(s), s]));
    const coordinatorFor = (merge: WatermarkMerge | undefined) =>
      new SnapshotCoordinator({
        pipeline: name,
        source,
        store,
        fanOut,
        tables: snapshotRefs
          .map((ref) => byKey.get(formatTableName(ref)))
          .filter((t): t is TableSchema => t !== undefined),
        tableKey: (t) => formatTableName(t),
        position: resumeFrom,
        snapshotToken: opened.snapshot?.token,
        concurrency: pipeline.snapshot.concurrency,
        targetRowsPerPartition:
          merge === undefined
            ? pipeline.snapshot.target_rows_per_partition
            : Math.min(
                pipeline.snapshot.target_rows_per_partition,
                pipeline.snapshot.chunk_rows ?? DEFAULT_SNAPSHOT_CHUNK_ROWS,
              ),
        chunkRows: runtime.snapshotChunkRows,
        concurrentChunk: {
          rows: pipeline.snapshot.chunk_rows ?? DEFAULT_SNAPSHOT_CHUNK_ROWS,
          bytes: pipeline.snapshot.chunk_bytes ?? DEFAULT_SNAPSHOT_CHUNK_BYTES,
        },
        oneChunkInFlight: res.sinks.some(({ sink }) => sink.skipsCommittedChunk === true),
        ...(res.workers !== undefined ? { workers: res.workers } : {}),
        retry: runtime.retry,
        signal,
        logger: this.logger,
        stats,
        ...(merge !== undefined ? { merge } : {}),
      });
    if (snapshotRefs.length > 0) {
      await this.startWorkers(
        res,
        snapshotRefs.map((ref) => byKey.get(formatTableName(ref))).filter((t): t is TableSchema => t !== undefined),
      );
      if (res.torn) return 'stopped';
    } else if (this.workers === undefined) {
      const why = this.workersUnusable();
      if (why !== undefined) this.runInline(why);
    }
    const skipWhatSinksHave = () => {
      for (const lane of fanOut.lanes) {
        lane.skipUpTo(
          lane.checkpoint !== undefined && compare(lane.checkpoint, resumeFrom) > 0 ? lane.checkpoint : undefined,
          compare,
        );
      }
    };
    const loadGuard = () =>
      SchemaGuard.load(
        {
          pipeline: name,
          policy: pipeline.schema_changes ?? 'propagate',
          store,
          startPosition,
          logger: this.logger,
          formatPosition: (p) => this.format(p),
        },
        schemas,
      );
    const stream = async (merge: WatermarkMerge | undefined, schemaGuard: SchemaGuard) => {
      const workers = await this.startStreamWorkers(res, fanOut, schemas);
      if (res.torn) return 'stopped' as const;
      return runStreamLoop({
        schemaGuard,
        pipeline: name,
        source,
        from: resumeFrom,
        tables,
        fanOut,
        merge,
        stats,
        tableStats: (table) => this.statsFor(table),
        signal,
        streamStop: res.streamStop.signal,
        chunk: {
          rows: pipeline.snapshot.chunk_rows ?? DEFAULT_SNAPSHOT_CHUNK_ROWS,
          bytes: pipeline.snapshot.chunk_bytes ?? DEFAULT_SNAPSHOT_CHUNK_BYTES,
        },
        ...(workers !== undefined ? { workers } : {}),
      });
    };

    if (wantsConcurrent && opened.watermarks === true) {
      // Concurrent: the stream starts now; chunks are merged into it (runtime/watermark-merge.ts).
      await this.releaseSnapshot(res);
      const guard = await loadGuard();
      const merge = new WatermarkMerge();
      const onStop = () => merge.abort(new Error('pipeline stopping'));
      signal.addEventListener('abort', onStop, { once: true });
      skipWhatSinksHave();
      const snapshotting = snapshotRefs.length > 0;
      await this.setState(snapshotting ? 'SNAPSHOTTING' : 'LIVE_CDC');
      this.logger.info('cdc streaming', {
        lsn: this.format(resumeFrom),
        ...(snapshotting ? { snapshot: 'concurrent' } : {}),
      });
      const streaming = stream(merge, guard);
      const snapshot = async () => {
        if (!snapshotting) return;
        const coordinator = coordinatorFor(merge);
        res.coordinator = coordinator;
        await coordinator.run();
        if (signal.aborted) return;
        await store.updatePipeline(name, { snapshotDone: true });
        this.logger.info('snapshot complete', {
          tables: snapshotRefs.length,
          mode: 'concurrent',
          rows_dropped: merge.droppedRows,
          ...(res.workers !== undefined && res.workers.threads > 0 ? { worker_chunks: res.workers.chunks } : {}),
        });
        await this.stopWorkers(res);
        await this.setState('LIVE_CDC');
      };
      try {
        const [outcome] = await Promise.all([streaming, snapshot()]);
        return outcome;
      } finally {
        signal.removeEventListener('abort', onStop);
      }
    }
    if (wantsConcurrent && snapshotRefs.length > 0) {
      this.logger.info('the source cannot write watermarks; snapshotting in blocking mode');
    }

    if (snapshotRefs.length > 0) {
      await this.setState('SNAPSHOTTING');
      const coordinator = coordinatorFor(undefined);
      res.coordinator = coordinator;
      await coordinator.run();
      if (signal.aborted) return 'stopped';
      await store.updatePipeline(name, { snapshotDone: true });
      this.logger.info('snapshot complete', {
        tables: snapshotRefs.length,
        ...(res.workers !== undefined && res.workers.threads > 0 ? { worker_chunks: res.workers.chunks } : {}),
      });
      await this.stopWorkers(res);
    }
    await this.releaseSnapshot(res);

    if (type === 'snapshot') {
      await fanOut.drain();
      const errored = fanOut.lanes.find((lane) => lane.state === 'errored');
      if (errored !== undefined) throw errored.error;
      // A snapshot pipeline never streams: remove the slot so it retains no WAL.
      await source.drop();
      return 'completed';
    }

    const guard = await loadGuard();
    await this.setState('LIVE_CDC');
    skipWhatSinksHave();
    this.logger.info('cdc streaming', { lsn: this.format(resumeFrom) });
    return stream(undefined, guard);
  }

  /** Why this pipeline cannot use worker threads from its definition alone (undefined: it can). */
  private workersUnusable(): string | undefined {
    const { materialized } = this.options;
    return workersUnusable('snapshot', {
      threads: resolveWorkerCount(materialized.pipeline.workers),
      replicationType: materialized.pipeline.replication_type,
      source: materialized.source.definition,
      sinks: materialized.sinks,
    });
  }

  /**
   * Runs on the main thread: said once per reason, at info, unless the setting asked for no
   * workers or the pipeline is `cdc` (it takes no snapshot, so none runs anywhere; its status
   * still gives the reason).
   */
  private runInline(why: string): void {
    this.workers = { inline: why };
    const { pipeline } = this.options.materialized;
    if (resolveWorkerCount(pipeline.workers) === 0 || pipeline.replication_type === 'cdc') return;
    if (this.inlineLogged.has(why)) return;
    this.inlineLogged.add(why);
    this.logger.info('the snapshot runs on the main thread, without worker threads', { reason: why });
  }

  /**
   * The snapshot's worker threads for this run, when the pipeline asks for them and every
   * part can do its share in a worker: their decoder and encoder setups are taken from the
   * open connectors, then the pool starts (closed by teardown).
   */
  private async startWorkers(res: AttemptResources, tables: TableSchema[]): Promise<void> {
    const { materialized, name, runtime } = this.options;
    const why = this.workersUnusable();
    const threads = resolveWorkerCount(materialized.pipeline.workers);
    // Without threads, the snapshot still takes the tasks' JSON text path on this thread where
    // the parts could run in a worker and the source and every sink take that path (see
    // SnapshotWorkers); the status says the snapshot runs on the main thread either way.
    const jsonInline =
      threads === 0 &&
      workersUnusable('snapshot', {
        threads: 1,
        replicationType: materialized.pipeline.replication_type,
        source: materialized.source.definition,
        sinks: materialized.sinks,
      }) === undefined;
    if (why !== undefined && !jsonInline) {
      this.runInline(why);
      return;
    }
    const started = await SnapshotWorkers.start({
      pipeline: name,
      threads,
      tables,
      source: { definition: materialized.source.definition, source: res.source! },
      sinks: res.sinks.map(({ def, sink }) => ({ name: def.name, definition: def.definition, sink })),
      ...(runtime.workerExecArgv !== undefined ? { execArgv: runtime.workerExecArgv } : {}),
    });
    if (typeof started === 'string') {
      this.runInline(why ?? started);
      return;
    }
    res.workers = started;
    if (res.torn) {
      await started.close().catch(() => {});
      return;
    }
    if (why !== undefined) {
      this.runInline(why);
      this.logger.debug('snapshot chunks go from the source to the sinks as JSON text, on the main thread');
      return;
    }
    this.workers = { threads, chunks: () => started.chunks };
    this.logger.info('snapshot rows are decoded and encoded in worker threads', { threads });
  }

  /**
   * The change stream's worker threads for this run (closed by teardown), when the pipeline
   * asks for workers and every part can do its share in a worker; otherwise undefined, and
   * why is logged once.
   */
  private async startStreamWorkers(
    res: AttemptResources,
    fanOut: FanOut,
    tables: TableSchema[],
  ): Promise<StreamWorkers | undefined> {
    const { materialized, name, runtime } = this.options;
    const threads = resolveWorkerCount(materialized.pipeline.workers);
    const inline = (why: string) => {
      if (threads === 0) return undefined;
      this.streamWorkers = { inline: why };
      if (this.inlineLogged.has(`stream:${why}`)) return undefined;
      this.inlineLogged.add(`stream:${why}`);
      this.logger.info('the change stream is decoded and encoded on the main thread, without worker threads', {
        reason: why,
      });
      return undefined;
    };
    const unusable = (n: number) =>
      workersUnusable('stream', {
        threads: n,
        replicationType: materialized.pipeline.replication_type,
        source: materialized.source.definition,
        sinks: materialized.sinks,
      });
    const why = unusable(threads);
    // Without threads, the stream still takes the tasks' JSON text path on this thread where the
    // parts could run in a worker and the source and every sink take that path (StreamWorkers).
    if (why !== undefined && (threads !== 0 || unusable(1) !== undefined)) return inline(why);
    const started = await StreamWorkers.start({
      pipeline: name,
      threads,
      tables,
      source: { definition: materialized.source.definition, source: res.source! },
      sinks: res.sinks.map(({ def, sink }) => ({ name: def.name, definition: def.definition, sink })),
      lanes: fanOut.lanes,
      logger: this.logger,
      ...(runtime.workerExecArgv !== undefined ? { execArgv: runtime.workerExecArgv } : {}),
    });
    if (typeof started === 'string') return inline(started);
    res.streamWorkers = started;
    if (res.torn) {
      await started.close().catch(() => {});
      return undefined;
    }
    if (threads === 0) {
      this.logger.debug('stream batches go from the source to the sinks as JSON text, on the main thread');
      return started;
    }
    this.streamWorkers = { batches: () => started.batches, inlineBatches: () => started.inlineBatches };
    this.logger.info('stream changes are decoded and encoded in worker threads', { threads });
    return started;
  }

  /**
   * The snapshot is done (every chunk it handed to the workers is durable in every sink): its
   * threads are not needed by the stream, so they stop now rather than with the run.
   */
  private async stopWorkers(res: AttemptResources): Promise<void> {
    const workers = res.workers;
    if (workers === undefined) return;
    res.workers = undefined;
    await workers
      .close()
      .catch((err: unknown) => this.logger.warn('stopping the worker threads failed', { error: describeError(err) }));
  }

  private createFanOut(
    res: AttemptResources,
    checkpoints: Record<string, Position>,
    mappers: (EventMapper | undefined)[],
    compare: (a: Position, b: Position) => number,
    fail: (err: unknown) => void,
  ): FanOut {
    const { store, name, runtime, stats } = this.options;
    const lanes: SinkLane[] = res.sinks.map(
      ({ def, sink }, i) =>
        new SinkLane({
          pipeline: name,
          name: def.name,
          sink,
          store,
          mapper: mappers[i],
          maxEvents: runtime.queue.maxEvents,
          maxBytes: runtime.queue.maxBytes,
          maxWriteEvents: runtime.maxWriteEvents,
          retry: runtime.retry,
          onError: def.onError,
          deadLetters: () => this.deadLetterTarget(def, sink),
          stats: stats.sink(def.name),
          logger: this.logger,
          checkpoint: checkpoints[def.name],
          onCheckpoint: () => {
            this.failures = 0;
            res.acker?.offer(fanOut.minCheckpoint(compare));
          },
          onFailure: fail,
          ...(res.sinks.length > 1
            ? { onSinkErrored: (err: unknown) => this.sinkErrored(def.name, err, fanOut, fail) }
            : {}),
          ...this.spillOptions(def, res.sinks.length > 1),
          onPausedDrained: () =>
            fail(
              new NanosyncError(
                ErrorCode.SinkSpillFull,
                `sink ${def.name} caught up with what it took before its spill log filled (max_spill_bytes); reading the stream again from its checkpoint`,
                { retriable: true, details: { sink: def.name } },
              ),
            ),
          onStateChange: (state) => this.laneStateChanged(def, state),
          ...(this.options.leaseValid !== undefined ? { leaseValid: this.options.leaseValid } : {}),
        }),
    );
    const fanOut = new FanOut(lanes);
    res.fanOut = fanOut;
    this.fanOut = fanOut;
    fanOut.start();
    return fanOut;
  }

  /**
   * Spilling needs other sinks to keep going (a single sink holds the source back instead:
   * plain backpressure), a state folder and a budget above 0; the log lives in
   * `<state>/spill/<pipeline>/<sink>`. A sink that does not spill has what an earlier run
   * may have left there removed (the lane does that itself when it spills).
   */
  private spillOptions(def: MaterializedSink, severalSinks: boolean): { spill?: { dir: string; maxBytes: number } } {
    const dataDir = this.options.runtime.dataDir;
    const maxBytes = def.maxSpillBytes ?? DEFAULT_MAX_SPILL_BYTES;
    if (dataDir === undefined) return {};
    const dir = spillDir(dataDir, this.options.name, def.name);
    if (!severalSinks || maxBytes <= 0) {
      removeSpillFolder(dir, def.name);
      return {};
    }
    return { spill: { dir, maxBytes } };
  }

  private laneStateChanged(def: MaterializedSink, state: LaneState): void {
    if (state === 'spilling') {
      this.logger.info('sink is behind: its backlog goes to the spill log', { sink: def.name });
    } else if (state === 'running') {
      this.logger.info('sink caught up with its spill log', { sink: def.name });
    } else if (state === 'paused') {
      const message = `sink ${def.name} is paused: its spill log reached max_spill_bytes (${def.maxSpillBytes ?? DEFAULT_MAX_SPILL_BYTES} bytes); it holds the replication slot back at its checkpoint while the other sinks continue, and is read again from there once it has written its backlog`;
      this.logger.warn(message);
      this.options.onWarning(message);
    }
  }

  /**
   * One sink of several failed for good: it stops alone, the pipeline is DEGRADED and the
   * others go on. Its checkpoint stays where it was, so the acknowledged position (the
   * minimum over the sinks) does not pass it; `resume` or a changed `apply` restarts it from
   * there. When no sink is left running, the pipeline fails as a whole.
   */
  private sinkErrored(sink: string, err: unknown, fanOut: FanOut, fail: (err: unknown) => void): void {
    if (fanOut.lanes.every((lane) => lane.state === 'errored')) {
      fail(err);
      return;
    }
    const message = `sink ${sink} stopped with an error; the other sinks continue: ${describeError(err)}`;
    this.logger.error('sink stopped with an error; the pipeline is DEGRADED and the other sinks continue', {
      sink,
      error: describeError(err),
    });
    void this.setState('DEGRADED', message);
  }

  /** The sink's own dead-letter target, else a JSON-lines file (`dead_letter_path` or under the state folder). */
  private deadLetterTarget(def: MaterializedSink, sink: Sink): DeadLetterTarget {
    const own = sink.deadLetters?.();
    if (own !== undefined) return own;
    const dataDir = this.options.runtime.dataDir;
    const file =
      def.deadLetterPath ??
      (dataDir !== undefined ? defaultDeadLetterFile(dataDir, this.options.name, def.name) : undefined);
    if (file === undefined)
      throw new NanosyncError(
        ErrorCode.ConfigInvalid,
        `sink ${def.name} has on_error: dead_letter, but no dead_letter_path and this server has no state folder to put dead letters in: set dead_letter_path`,
      );
    return new JsonLinesDeadLetters(file);
  }

  private startMetrics(source: Source, res: AttemptResources): void {
    if (source.metrics === undefined) return;
    const { stats, runtime } = this.options;
    let busy = false;
    const poll = async () => {
      if (busy) return;
      busy = true;
      try {
        const metrics = await source.metrics!();
        for (const warning of stats.onSourceMetrics(metrics, { stallAfterMs: runtime.stallAfterMs }, true)) {
          this.logger.warn(warning);
          this.options.onWarning(warning);
        }
      } catch (err) {
        this.logger.debug('source metrics unavailable', { error: describeError(err) });
      } finally {
        busy = false;
      }
    };
    void poll();
    res.metricsTimer = setInterval(poll, runtime.metricsIntervalMs);
    res.metricsTimer.unref();
  }

  /**
   * A `query` pipeline: no handoff, its SQL re-run on an interval (runtime/query-runner.ts),
   * each result fanned out to the sinks like a stream batch.
   */
  private async runQuery(
    source: Source,
    res: AttemptResources,
    checkpoints: Record<string, Position>,
    signal: AbortSignal,
    fail: (err: unknown) => void,
  ): Promise<'completed' | 'stopped'> {
    const { name, materialized, stats, runtime } = this.options;
    const { pipeline } = materialized;
    const query = pipeline.query;
    if (query === undefined)
      throw new NanosyncError(ErrorCode.ConfigInvalid, `pipeline ${name} is a query pipeline without query.sql`);
    const mappers = res.sinks.map(({ def }) => createEventMapper(def.mappings));
    if (res.torn) return 'stopped';
    const fanOut = this.createFanOut(res, checkpoints, mappers, compareQueryPositions, fail);
    await this.setState('LIVE_CDC');
    return runQueryPipeline({
      pipeline: name,
      source,
      sql: query.sql,
      intervalSeconds: query.interval_seconds,
      fanOut,
      openSinks: async (table) => {
        for (const [i, { def, sink }] of res.sinks.entries()) {
          const own = def.mappings.filter((m) => m.tableRef.schema === table.schema && m.tableRef.name === table.name);
          validateMappings(def.name, own, [table]);
          await sink.open([mappers[i]?.mapTable(table) ?? table]);
        }
      },
      chunkRows: runtime.snapshotChunkRows,
      signal,
      logger: this.logger,
      stats,
      checkpoint: fanOut.minCheckpoint(compareQueryPositions),
      onRunStart: () => {
        this.failures = 0;
      },
    });
  }

  private async releaseSnapshot(res: AttemptResources): Promise<void> {
    const snapshot = res.snapshot;
    if (snapshot === undefined) return;
    res.snapshot = undefined;
    try {
      await snapshot.release();
    } catch (err) {
      this.logger.warn('releasing the exported snapshot failed', { error: describeError(err) });
    }
  }

  /**
   * Close what the attempt opened. `graceful`: let the lanes write and checkpoint what is
   * queued and acknowledge that, within the stop deadline. Otherwise (a failure) drop the
   * queues and acknowledge nothing more.
   */
  private async teardown(res: AttemptResources, graceful: boolean): Promise<void> {
    res.torn = true;
    if (res.metricsTimer) clearInterval(res.metricsTimer);
    const { fanOut, acker } = res;
    // Finishing on its own (a completed snapshot pipeline) has no stop deadline: use the budget.
    const deadline = Number.isFinite(this.deadline) ? this.deadline : Date.now() + this.options.runtime.stopTimeoutMs;
    if (graceful && fanOut) {
      const remaining = () => Math.max(0, deadline - Date.now());
      const drained = await within(fanOut.drain(), remaining());
      if (!drained)
        this.logger.warn('sinks did not drain before the stop deadline; the rest is replayed on the next start');
      if (res.coordinator) await within(res.coordinator.idle(), remaining());
      if (acker) await within(acker.idle(), remaining());
    }
    res.streamStop.abort();
    acker?.stop();
    fanOut?.stop();
    if (fanOut)
      await Promise.all(
        fanOut.lanes.map((lane) =>
          within(
            lane.closeDeadLetters().catch(() => {}),
            2_000,
          ),
        ),
      );
    await this.releaseSnapshot(res);
    if (res.workers !== undefined) {
      await res.workers
        .close()
        .catch((err: unknown) => this.logger.warn('stopping the worker threads failed', { error: describeError(err) }));
    }
    if (res.streamWorkers !== undefined) {
      await res.streamWorkers
        .close()
        .catch((err: unknown) =>
          this.logger.warn("stopping the change stream's worker threads failed", { error: describeError(err) }),
        );
    }
    const closeTimeout = Math.max(500, Math.min(5_000, deadline - Date.now()));
    await Promise.all(
      res.sinks.map(({ def, sink }) =>
        within(
          sink
            .close()
            .catch((err: unknown) =>
              this.logger.warn('closing a sink failed', { sink: def.name, error: describeError(err) }),
            ),
          closeTimeout,
        ),
      ),
    );
    if (res.source) {
      await within(
        res.source
          .close()
          .catch((err: unknown) => this.logger.warn('closing the source failed', { error: describeError(err) })),
        closeTimeout,
      );
    }
    this.fanOut = undefined;
  }

  private statsFor(table: TableSchema): TableStats {
    let t = this.tableStats.get(table);
    if (t === undefined) {
      t = this.options.stats.table(formatTableName(table));
      this.tableStats.set(table, t);
    }
    return t;
  }

  /** A position in the source's human form (falls back to the raw string). */
  format(position: Position | undefined): string | undefined {
    if (position === undefined) return undefined;
    try {
      return this.source ? this.source.formatPosition(position) : position;
    } catch {
      return position;
    }
  }
}
