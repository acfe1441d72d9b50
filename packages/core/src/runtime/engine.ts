import { EventEmitter } from 'node:events';
import { formatTableName, parseTableName } from '../config/table-name.js';
import type { StoredPipelineDefinition } from '../config/types.js';
import type { Sink, Source } from '../contract/connector.js';
import type { Logger } from '../contract/logger.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import { describeError } from '../log/logger.js';
import type { Position } from '../model.js';
import { fencedStore } from '../state/fence.js';
import type { LeaseInfo, PartitionRecord, PipelineRecord, PipelineState, StateStore } from '../state/store.js';
import { type FleetView, loadFleetView, mayTakeAnother } from './fleet.js';
import { applyEffects } from './apply-effects.js';
import { LeaseKeeper, type LeaseLoss } from './lease-keeper.js';
import { within } from './backoff.js';
import { PipelineRunner, type StopReason } from './pipeline-runner.js';
import { runPreflight } from './preflight.js';
import { buildPipelineStatus } from './status.js';
import { PipelineStats, type PipelineStatus } from './stats.js';
import { type MaterializedPipeline, type RuntimeOptions, type RuntimeOverrides, runtimeOptions } from './types.js';

export interface EngineOptions {
  store: StateStore;
  logger: Logger;
  /** This server's identity in leases (shown to other servers as the holder). */
  holderId: string;
  /** Turns a stored definition into connectors and config (resolving `${env:…}` now). */
  materialize: (definition: StoredPipelineDefinition) => Promise<MaterializedPipeline>;
  /** Lease lifetime; renewed every third of it. Default 30 s. */
  leaseTtlMs?: number;
  /**
   * How often each held lease is renewed (on its own timer, whatever the pipeline is doing)
   * and the store is re-read for changes made by other servers. Default: a third of the lease.
   */
  reconcileIntervalMs?: number;
  /** Most pipelines this server runs at once (its capacity in a fleet). Default: no limit. */
  maxPipelines?: number;
  /** What this server tells the other servers of a fleet about itself (e.g. its admin URL), kept in the store. */
  serverDetails?: Record<string, unknown>;
  runtime?: RuntimeOverrides;
}

export interface EngineStateEvent {
  pipeline: string;
  state: PipelineState;
  error?: string;
}

export interface EngineWarningEvent {
  pipeline: string;
  message: string;
}

interface EngineEvents {
  state: [EngineStateEvent];
  warning: [EngineWarningEvent];
}

/** What the engine knows of one pipeline beyond the store. */
interface Entry {
  name: string;
  stats: PipelineStats;
  /** The runner of this server, current or last (kept for status after it ended). */
  runner?: PipelineRunner;
  runnerDone: boolean;
  /** Definition hash and config the runner was started with. */
  hash?: string;
  materialized?: MaterializedPipeline;
  /** Lease of another server, as last seen. */
  heldBy?: LeaseInfo;
  /** Epoch of this server's lease the current runner writes with (see LeaseFence). */
  epoch?: number;
  /** Renews this server's lease of the pipeline while it holds it (see {@link LeaseKeeper}). */
  lease?: LeaseKeeper;
  /** Metrics-only source of a paused pipeline (retained WAL keeps growing while paused). */
  monitor?: { source: Source; timer: NodeJS.Timeout; abort: AbortController; idle: () => Promise<void> };
  monitorFailed?: boolean;
}

/**
 * Runs the pipelines of one server.
 *
 * Each pipeline runs in at most one process: before running one, the engine takes its lease
 * in the state store and renews it every `reconcileIntervalMs` on a timer of its own (a
 * {@link LeaseKeeper}: the start-up of the pipeline, a wait for its replication slot or
 * another pipeline's slow stop never delays a renewal); a pipeline whose lease
 * another server holds is reported with `heldBy` and left alone, and taken over once that
 * lease expires. The same periodic pass picks up changes other servers made through the
 * store (a new definition, pause, resume, delete).
 *
 * `start()` also retries pipelines left ERRORED by a previous run of the server (a restart
 * is the usual moment to have fixed the cause); afterwards an ERRORED pipeline stays so
 * until `resume` or an `apply` that changes it.
 */
/** How long `delete --force` waits for the source to drop its slot and publication. */
const FORCED_DROP_TIMEOUT_MS = 15_000;

/** One stored definition as `Engine.definitions()` gives it (for `nanosync plan`). */
export interface StoredDefinitionInfo {
  name: string;
  definition: StoredPipelineDefinition;
  hash: string;
  replicationType?: string;
  state: PipelineState;
  paused: boolean;
  snapshotDone: boolean;
  /** Whether the pipeline recorded its start position (its source set-up exists). */
  started: boolean;
}

/** What `Engine.delete` could not clean up (only with `force`). */
export interface DeleteResult {
  leftBehind?: { error: string; steps: string[] };
}

export class Engine extends EventEmitter<EngineEvents> {
  private readonly store: StateStore;
  private readonly logger: Logger;
  private readonly holderId: string;
  private readonly leaseTtlMs: number;
  private readonly reconcileIntervalMs: number;
  private readonly maxPipelines: number;
  private readonly runtime: RuntimeOptions;
  /** The other servers' loads as read at the start of the current pass (see {@link mayTakeAnother}). */
  private fleet: FleetView | undefined;
  private readonly entries = new Map<string, Entry>();
  private readonly locks = new Map<string, Promise<void>>();
  private started = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> | undefined;

  constructor(private readonly options: EngineOptions) {
    super();
    this.store = options.store;
    this.logger = options.logger;
    this.holderId = options.holderId;
    this.leaseTtlMs = options.leaseTtlMs ?? 30_000;
    this.reconcileIntervalMs = options.reconcileIntervalMs ?? Math.max(50, Math.floor(this.leaseTtlMs / 3));
    this.maxPipelines = options.maxPipelines ?? Number.POSITIVE_INFINITY;
    this.runtime = runtimeOptions(options.runtime);
  }

  /** Start every pipeline that is not paused or completed and whose lease this server gets. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.reconcile(true);
    this.timer = setInterval(() => void this.reconcile(false), this.reconcileIntervalMs);
    this.timer.unref();
  }

  /**
   * Store a pipeline definition. Unchanged hash → nothing happens. New → created and
   * started. Changed → the running pipeline is stopped at a checkpoint and started again
   * with the new definition, from that checkpoint. What else changes (a re-snapshot, a new
   * slot, a snapshot of added tables) is decided by {@link applyEffects}, which `nanosync
   * plan` uses to describe it.
   */
  async apply(
    name: string,
    definition: StoredPipelineDefinition,
    hash: string,
    replicationType: string,
  ): Promise<'created' | 'updated' | 'unchanged'> {
    return this.withLock(name, async () => {
      const existing = await this.store.getPipeline(name);
      const changed =
        existing === undefined ||
        existing.definitionHash !== hash ||
        (existing.replicationType ?? replicationType) !== replicationType;
      if (changed) await this.checkBeforeApply(name, definition);
      if (existing === undefined) {
        await this.store.upsertPipeline({
          name,
          definition,
          definitionHash: hash,
          replicationType,
          state: 'CREATED',
          snapshotDone: false,
          paused: false,
        });
        this.logger.info('pipeline created', { name, type: replicationType });
        if (this.started && !this.stopped) await this.startIfLeased(name, true);
        return 'created';
      }
      if (existing.definitionHash === hash && (existing.replicationType ?? replicationType) === replicationType)
        return 'unchanged';

      const entry = this.entry(name);
      if (entry.runner && !entry.runnerDone) await this.stopRunner(entry, 'restart');
      const effects = applyEffects(existing, replicationType);
      if (effects.resnapshotAll) {
        await this.store.clearPartitions(name);
        if (replicationType !== 'snapshot')
          this.logger.info('replication type changed from cdc to cdc_backfill: the tables will be snapshotted again', {
            name,
          });
      }
      if (effects.clearCheckpoints) await this.store.clearCheckpoints(name);
      await this.store.upsertPipeline({
        name,
        definition,
        definitionHash: hash,
        replicationType,
        state: existing.paused ? 'PAUSED' : 'CREATED',
        snapshotDone: effects.snapshotDone,
        paused: existing.paused,
      });
      // A completed snapshot pipeline dropped its slot: the next run opens a new one.
      if (effects.newSlot) await this.store.updatePipeline(name, { startPosition: undefined });
      this.logger.info('pipeline updated', { name, type: replicationType });
      if (!existing.paused && this.started && !this.stopped) await this.startIfLeased(name, true);
      return 'updated';
    });
  }

  /**
   * A new or changed definition is checked against the real source and sinks before it is
   * stored (their `check()`, creating nothing): a table without replica identity, a missing
   * privilege or a bad sink setting refuses the `apply` itself, naming each fix. Failures
   * that may pass by themselves (a service not reachable yet) do not refuse it; the
   * pipeline's own start retries them. A definition that cannot be materialized is left to
   * the start to report, as before.
   */
  private async checkBeforeApply(name: string, definition: StoredPipelineDefinition): Promise<void> {
    let materialized: MaterializedPipeline;
    try {
      materialized = await this.options.materialize(definition);
    } catch {
      return;
    }
    const logger = this.logger.child({ pipeline: name });
    const context = (role: string) => ({
      pipeline: name,
      logger: logger.child({ connector: role }),
      signal: new AbortController().signal,
    });
    const sinks: { name: string; sink: Sink }[] = [];
    let source: Source | undefined;
    try {
      source = await materialized.source.definition.create(materialized.source.config, context('source'));
      for (const def of materialized.sinks)
        sinks.push({ name: def.name, sink: await def.definition.create(def.config, context(`sink ${def.name}`)) });
      const { pipeline } = materialized;
      await runPreflight({
        pipeline: name,
        source: pipeline.replication_type === 'query' ? undefined : { source, tables: pipeline.source.tableRefs },
        sinks,
        logger,
        ignoreRetriable: true,
      });
    } finally {
      await Promise.all([
        ...sinks.map(({ sink }) =>
          within(
            sink.close().catch(() => {}),
            5_000,
          ),
        ),
        source
          ? within(
              source.close().catch(() => {}),
              5_000,
            )
          : Promise.resolve(),
      ]);
    }
  }

  /** Checkpoint and stop the pipeline; it stays stopped (across restarts) until `resume`. */
  async pause(name: string): Promise<void> {
    await this.withLock(name, async () => {
      await this.mustGet(name);
      await this.store.updatePipeline(name, { paused: true });
      const entry = this.entry(name);
      if (entry.runner && !entry.runnerDone) {
        await this.stopRunner(entry, 'pause');
      } else if (entry.heldBy === undefined || Date.parse(entry.heldBy.expiresAt) < Date.now()) {
        // Not running anywhere (or nowhere that renews): pausing is just the flag and the state.
        await this.store.updatePipeline(name, { state: 'PAUSED', error: undefined });
        this.emit('state', { pipeline: name, state: 'PAUSED' });
      }
      // Otherwise the server holding it sees the flag on its next pass and pauses it there.
      this.logger.info('pipeline pause requested', { name });
      if (!this.stopped) await this.startMonitor(entry);
    });
  }

  /** Clear the pause (or an error) and start the pipeline from its checkpoint. */
  async resume(name: string): Promise<void> {
    await this.withLock(name, async () => {
      const record = await this.mustGet(name);
      const entry = this.entry(name);
      await this.stopMonitor(entry);
      const running = entry.runner !== undefined && !entry.runnerDone;
      // A DEGRADED pipeline runs, but one sink stopped: restarting brings that sink back from its checkpoint.
      const failed = entry.runner?.state === 'ERRORED' || entry.runner?.state === 'DEGRADED';
      if (running && !record.paused && !failed) return;
      if (running) await this.stopRunner(entry, 'restart');
      const state: PipelineState =
        record.state === 'PAUSED' || record.state === 'ERRORED' || record.state === 'DEGRADED'
          ? 'CREATED'
          : record.state;
      await this.store.updatePipeline(name, { paused: false, state, error: undefined });
      this.logger.info('pipeline resumed', { name });
      if (this.started && !this.stopped) await this.startIfLeased(name, true);
    });
  }

  /**
   * Read some of a pipeline's tables again (every one of them when `tables` is empty): their
   * snapshot plans are removed and the pipeline restarts from its checkpoint, so the next
   * run snapshots exactly those tables — concurrently with the stream in `snapshot.mode:
   * concurrent`, with the same guarantees and progress reporting as the first snapshot. The
   * slot and the sinks' checkpoints stay. Returns the tables, spelled canonically. Refused for
   * `cdc` and `query` pipelines, for a table the pipeline does not capture, and while another
   * server holds the pipeline.
   */
  async resnapshot(name: string, tables: readonly string[]): Promise<string[]> {
    let chosen: string[] = [];
    await this.withLock(name, async () => {
      const record = await this.mustGet(name);
      const materialized = await this.options.materialize(record.definition as StoredPipelineDefinition);
      const pipeline = materialized.pipeline;
      if (pipeline.replication_type !== 'cdc_backfill' && pipeline.replication_type !== 'snapshot') {
        throw new NanosyncError(
          ErrorCode.ConfigInvalid,
          `pipeline ${name} is a ${pipeline.replication_type} pipeline; only cdc_backfill and snapshot pipelines take snapshots`,
        );
      }
      const captured = pipeline.source.tables;
      chosen = [];
      for (const text of tables) {
        const parsed = parseTableName(text);
        const canonical = parsed.ok ? formatTableName(parsed.ref) : undefined;
        if (canonical === undefined || !captured.includes(canonical)) {
          throw new NanosyncError(
            ErrorCode.ConfigInvalid,
            `pipeline ${name} does not capture table ${text}${parsed.ok ? '' : ` (${parsed.message})`}; its tables are ${captured.join(', ')}`,
          );
        }
        if (!chosen.includes(canonical)) chosen.push(canonical);
      }
      if (chosen.length === 0) chosen = [...captured];
      const lease = await this.store.acquireLease(name, this.holderId, this.leaseTtlMs);
      if (!lease.acquired) {
        throw new NanosyncError(
          ErrorCode.PipelineLeaseHeld,
          `pipeline ${name} is running on ${lease.lease.holder} (lease until ${lease.lease.expiresAt}); ask that server to re-snapshot it`,
        );
      }
      const entry = this.entry(name);
      this.holdLease(entry, lease.epoch);
      if (entry.runner && !entry.runnerDone) await this.stopRunner(entry, 'restart');
      for (const table of chosen) await this.store.clearPartitions(name, undefined, table);
      await this.store.updatePipeline(name, {
        snapshotDone: false,
        ...(record.paused ? {} : { state: 'CREATED' as const, error: undefined }),
      });
      this.logger.info('re-snapshot requested', { name, tables: chosen.join(', ') });
      if (!record.paused && this.started && !this.stopped) await this.startIfLeased(name, true);
      else await this.letLeaseGo(entry, true);
    });
    return chosen;
  }

  /**
   * Stop the pipeline, remove what its source created (`drop()`: slot, publication) and
   * forget its state. Refused while another server holds the pipeline: that server would
   * keep the slot busy.
   */
  /**
   * Stop the pipeline, drop what it owns on the source, remove its state. With `force`, a
   * source that cannot be cleaned up (unreachable, refusing) does not keep the pipeline:
   * its state goes anyway and the result says what was left behind and how to remove it
   * by hand.
   */
  async delete(name: string, options: { force?: boolean } = {}): Promise<DeleteResult> {
    let result: DeleteResult = {};
    await this.withLock(name, async () => {
      let record = await this.mustGet(name);
      const entry = this.entry(name);
      let lease = await this.store.acquireLease(name, this.holderId, this.leaseTtlMs);
      if (!lease.acquired) {
        // Run by another server: pause it through the store, which that server follows on
        // its next pass (stopping at a checkpoint and letting the lease go), then take the
        // lease here. A holder that is gone lets it expire instead; either way the wait is
        // bounded by the lease time.
        const holder = lease.lease.holder;
        this.logger.info('pipeline is run by another server; pausing it there before deleting', { name, holder });
        await this.store.updatePipeline(name, { paused: true });
        const deadline = Date.now() + this.leaseTtlMs + 2 * this.reconcileIntervalMs;
        while (!lease.acquired && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, Math.max(25, Math.floor(this.reconcileIntervalMs / 4))));
          lease = await this.store.acquireLease(name, this.holderId, this.leaseTtlMs);
        }
        if (!lease.acquired) {
          throw new NanosyncError(
            ErrorCode.PipelineLeaseHeld,
            `pipeline ${name} is running on ${lease.lease.holder} (lease until ${lease.lease.expiresAt}) and did not stop within the lease time; it is marked paused — delete it again once it shows PAUSED`,
          );
        }
        record = await this.mustGet(name);
      }
      // Held until the pipeline is gone: dropping the slot can wait for a walsender.
      this.holdLease(entry, lease.epoch);
      if (entry.runner && !entry.runnerDone) await this.stopRunner(entry, 'delete', false);
      await this.stopMonitor(entry);
      if (record.replicationType !== 'query') {
        try {
          await this.dropSource(name, record, options.force === true);
        } catch (err) {
          if (options.force) {
            result = {
              leftBehind: {
                error: describeError(err),
                steps: (err as { manualDropSteps?: string[] }).manualDropSteps ?? [],
              },
            };
            this.logger.warn('pipeline deleted with --force; the source was not cleaned up', {
              name,
              error: describeError(err),
            });
          } else {
            await this.store.updatePipeline(name, { paused: true, state: 'PAUSED' }).catch(() => {});
            await this.letLeaseGo(entry, true);
            throw new NanosyncError(
              ErrorCode.PipelineStopped,
              `pipeline ${name}: removing its replication slot and publication failed (${describeError(err)}); the pipeline is paused and kept — fix the cause and delete it again`,
              { cause: err },
            );
          }
        }
      }
      await this.letLeaseGo(entry, false);
      await this.store.deletePipeline(name);
      this.entries.delete(name);
      this.logger.info('pipeline deleted', { name });
    });
    return result;
  }

  /**
   * The stored definitions with what a plan needs to say what an apply would imply (state,
   * pause, snapshot progress). Secrets stay as stored: encrypted or `${env:…}` references.
   */
  async definitions(): Promise<StoredDefinitionInfo[]> {
    return (await this.store.listPipelines()).map((r) => ({
      name: r.name,
      definition: r.definition as StoredPipelineDefinition,
      hash: r.definitionHash,
      ...(r.replicationType !== undefined ? { replicationType: r.replicationType } : {}),
      state: r.state,
      paused: r.paused,
      snapshotDone: r.snapshotDone,
      started: r.startPosition !== undefined,
    }));
  }

  async list(): Promise<PipelineStatus[]> {
    let records: PipelineRecord[];
    let leases: Map<string, LeaseInfo>;
    try {
      records = await this.store.listPipelines();
      leases = new Map((await this.store.listLeases()).map((l) => [l.pipeline, l]));
    } catch (err) {
      // The store is down: report what this server knows, which is what an operator needs.
      this.logger.debug('state store unreadable while listing', { error: describeError(err) });
      return Promise.all(
        [...this.entries.values()].filter((e) => e.runner).map((e) => this.statusOf(e.name, undefined)),
      );
    }
    return Promise.all(records.map((r) => this.statusOf(r.name, r, leases.get(r.name) ?? null)));
  }

  async status(name: string): Promise<PipelineStatus> {
    let record: PipelineRecord | undefined;
    let lease: LeaseInfo | null | undefined;
    try {
      record = await this.store.getPipeline(name);
      lease = (await this.store.getLease(name)) ?? null;
    } catch (err) {
      if (this.entries.get(name)?.runner === undefined) throw err;
    }
    if (record === undefined && this.entries.get(name)?.runner === undefined) {
      throw new NanosyncError(ErrorCode.PipelineNotFound, `pipeline ${name} does not exist`);
    }
    return this.statusOf(name, record, lease);
  }

  /**
   * Checkpoint and stop every pipeline, release the leases, leave the fleet: the other
   * servers sharing the store take the pipelines on their next pass. Bounded by the
   * runtime's stop budget (< 10 s).
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const stopAll = () =>
      Promise.all(
        [...this.entries.values()].map(async (entry) => {
          void this.stopMonitor(entry);
          if (entry.runner && !entry.runnerDone) await this.stopRunner(entry, 'shutdown');
        }),
      );
    await stopAll();
    // A pass that was starting a pipeline when the stop came: wait for it, stop what it started.
    if (await within(this.reconciling, 500)) await stopAll();
    // A lease taken for something other than a runner (a delete or re-snapshot in progress).
    await Promise.all(
      [...this.entries.values()].filter((entry) => entry.lease).map((entry) => this.letLeaseGo(entry, true)),
    );
    await this.store.removeServer(this.holderId).catch(() => {});
  }

  // ---------------------------------------------------------------------------------------

  /** Pipelines this server runs now (a retrying one included). */
  private runningCount(): number {
    let n = 0;
    for (const entry of this.entries.values()) if (entry.runner && !entry.runnerDone) n++;
    return n;
  }

  private serverDetails(): Record<string, unknown> {
    return {
      ...this.options.serverDetails,
      capacity: Number.isFinite(this.maxPipelines) ? this.maxPipelines : null,
      running: this.runningCount(),
    };
  }

  private entry(name: string): Entry {
    let entry = this.entries.get(name);
    if (entry === undefined) {
      entry = { name, stats: new PipelineStats(), runnerDone: true };
      this.entries.set(name, entry);
    }
    return entry;
  }

  private async mustGet(name: string): Promise<PipelineRecord> {
    const record = await this.store.getPipeline(name);
    if (record === undefined) throw new NanosyncError(ErrorCode.PipelineNotFound, `pipeline ${name} does not exist`);
    return record;
  }

  private async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const chained = previous.then(() => mine);
    this.locks.set(name, chained);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(name) === chained) this.locks.delete(name);
    }
  }

  /**
   * One pass: register this server, follow changes made through the store, start what is
   * free. Leases this server holds are renewed by their keepers, not here: a pass can wait
   * (a pipeline stopping, a start in progress under the same lock) without holding them up.
   */
  private reconcile(retryErrored: boolean): Promise<void> {
    if (this.reconciling) return this.reconciling;
    this.reconciling = this.reconcilePass(retryErrored).finally(() => {
      this.reconciling = undefined;
    });
    return this.reconciling;
  }

  private async reconcilePass(retryErrored: boolean): Promise<void> {
    let records: PipelineRecord[];
    try {
      await this.store.registerServer(this.holderId, this.leaseTtlMs, this.serverDetails());
      records = await this.store.listPipelines();
      this.fleet = await loadFleetView(this.store, this.holderId);
    } catch (err) {
      this.logger.warn('state store unreadable; changes of other servers not followed on this pass', {
        error: describeError(err),
      });
      return;
    }
    const present = new Set(records.map((r) => r.name));
    try {
      for (const record of records) {
        if (this.stopped) return;
        try {
          await this.withLock(record.name, () => this.reconcileOne(record.name, retryErrored));
        } catch (err) {
          this.logger.warn('could not reconcile pipeline', { name: record.name, error: describeError(err) });
        }
      }
    } finally {
      this.fleet = undefined;
    }
    for (const entry of [...this.entries.values()]) {
      if (present.has(entry.name) || this.stopped) continue;
      // Deleted through another server.
      await this.withLock(entry.name, async () => {
        if (entry.runner && !entry.runnerDone) await this.stopRunner(entry, 'lease-lost');
        await this.letLeaseGo(entry, false);
        void this.stopMonitor(entry);
        this.entries.delete(entry.name);
      });
    }
  }

  private async reconcileOne(name: string, retryErrored: boolean): Promise<void> {
    if (this.stopped) return;
    const record = await this.store.getPipeline(name);
    if (record === undefined) return;
    const entry = this.entry(name);
    if (entry.runner && !entry.runnerDone) {
      // The lease is renewed by its keeper; a loss it found is being handled (leaseLost).
      const lease = entry.lease;
      if (lease === undefined || lease.lost) return;
      if (record.paused) {
        await this.stopRunner(entry, 'pause');
        await this.startMonitor(entry);
      } else if (record.definitionHash !== entry.hash) {
        this.logger.info('pipeline definition changed; restarting', { name });
        await this.stopRunner(entry, 'restart', false);
        await this.startRunner(entry, record, lease.epoch);
      }
      return;
    }
    if (record.paused) {
      entry.heldBy = undefined;
      await this.startMonitor(entry);
      return;
    }
    await this.stopMonitor(entry);
    if (record.state === 'COMPLETED') return;
    if (record.state === 'ERRORED' && !retryErrored) return;
    await this.startIfLeased(name, false, record);
  }

  private async startIfLeased(name: string, fresh: boolean, known?: PipelineRecord): Promise<void> {
    const record = fresh || known === undefined ? await this.store.getPipeline(name) : known;
    if (record === undefined || record.paused) return;
    const entry = this.entry(name);
    if (entry.runner && !entry.runnerDone) return;
    if ((await this.store.getLease(name)) === undefined) {
      // Free (new, orphaned, handed over): taken only by a server with capacity and no more
      // pipelines than any other that has room, so a fleet fills up evenly.
      const fleet = this.fleet ?? (await loadFleetView(this.store, this.holderId));
      if (!mayTakeAnother(fleet, this.runningCount(), this.maxPipelines)) {
        entry.heldBy = undefined;
        return;
      }
    }
    const lease = await this.store.acquireLease(name, this.holderId, this.leaseTtlMs);
    if (!lease.acquired) {
      if (entry.heldBy?.holder !== lease.lease.holder)
        this.logger.info('pipeline is run by another server', { name, holder: lease.lease.holder });
      entry.heldBy = lease.lease;
      return;
    }
    entry.heldBy = undefined;
    this.holdLease(entry, lease.epoch);
    await this.startRunner(entry, record, lease.epoch);
  }

  /**
   * This server took (or renewed) the pipeline's lease at `epoch`: keep it renewed from now
   * on, on its own timer, until {@link letLeaseGo} or until the keeper finds it lost.
   */
  private holdLease(entry: Entry, epoch: number): void {
    const current = entry.lease;
    if (current !== undefined && !current.lost && current.epoch === epoch) return;
    // A keeper of an older epoch: the lease lapsed and was taken again; it renews no more.
    void current?.stop();
    const keeper: LeaseKeeper = new LeaseKeeper({
      store: this.store,
      pipeline: entry.name,
      holder: this.holderId,
      epoch,
      ttlMs: this.leaseTtlMs,
      intervalMs: this.reconcileIntervalMs,
      logger: this.logger,
      onLost: (loss) => void this.leaseLost(entry, keeper, loss),
    });
    entry.lease = keeper;
    keeper.start();
  }

  /**
   * Stop renewing the pipeline's lease (waiting for a renewal in flight), then, with
   * `release`, let it go at once so another server may take the pipeline now.
   */
  private async letLeaseGo(entry: Entry, release: boolean): Promise<void> {
    const keeper = entry.lease;
    entry.lease = undefined;
    await keeper?.stop();
    if (release && (keeper === undefined || !keeper.lost))
      await this.store.releaseLease(entry.name, this.holderId).catch(() => {});
  }

  /**
   * The keeper found the lease taken by another server, or lapsed and taken again by its
   * renewal (at a newer epoch, which is kept renewed from now on): stop the runner, whose
   * writes carry the old epoch, without writing anything; the next pass starts over from
   * the store when the lease is still this server's.
   */
  private async leaseLost(entry: Entry, keeper: LeaseKeeper, loss: LeaseLoss): Promise<void> {
    const name = entry.name;
    if (entry.lease !== keeper) return;
    const runner = entry.runner && !entry.runnerDone ? entry.runner : undefined;
    if ('takenBy' in loss) {
      this.logger.warn('lost the pipeline lease to another server; stopping here', {
        name,
        holder: loss.takenBy.holder,
      });
      entry.lease = undefined;
      entry.heldBy = loss.takenBy;
    } else {
      this.logger.warn('the pipeline lease expired and was taken again; restarting from the checkpoint', { name });
      this.holdLease(entry, loss.newEpoch);
    }
    if (runner === undefined) return;
    try {
      await this.withLock(name, async () => {
        if (entry.runner === runner && !entry.runnerDone) await this.stopRunner(entry, 'lease-lost');
      });
    } catch (err) {
      this.logger.warn('could not stop the pipeline after losing its lease', { name, error: describeError(err) });
    }
  }

  /** `epoch`: of the lease just taken; the runner's state writes are fenced with it. */
  private async startRunner(entry: Entry, record: PipelineRecord, epoch: number): Promise<void> {
    const name = entry.name;
    await this.stopMonitor(entry);
    let materialized: MaterializedPipeline;
    try {
      materialized = await this.options.materialize(record.definition as StoredPipelineDefinition);
    } catch (err) {
      const message = describeError(err);
      this.logger.error('pipeline cannot start', { name, error: message });
      await this.store.updatePipeline(name, { state: 'ERRORED', error: message });
      await this.letLeaseGo(entry, true);
      this.emit('state', { pipeline: name, state: 'ERRORED', error: message });
      return;
    }
    if (this.stopped) {
      await this.letLeaseGo(entry, true);
      return;
    }
    // Sink writes are fenced by this keeper's lease (of this epoch), not a later one's.
    const keeper = entry.lease;
    const runner = new PipelineRunner({
      name,
      ...(keeper !== undefined ? { leaseValid: () => keeper.epoch === epoch && keeper.mayWrite() } : {}),
      store: fencedStore(this.store, { holder: this.holderId, epoch }, (refused) =>
        this.logger.warn('a write of this server was refused: the pipeline lease moved on', {
          name,
          error: refused.message,
        }),
      ),
      logger: this.logger.child({ pipeline: name }),
      announceLogger: this.logger,
      materialized,
      stats: entry.stats,
      runtime: this.runtime,
      onState: (state, error) =>
        this.emit('state', error === undefined ? { pipeline: name, state } : { pipeline: name, state, error }),
      onWarning: (message) => this.emit('warning', { pipeline: name, message }),
    });
    entry.runner = runner;
    entry.runnerDone = false;
    entry.epoch = epoch;
    entry.hash = record.definitionHash;
    entry.materialized = materialized;
    runner.start();
    void runner.done.then(async () => {
      if (entry.runner !== runner) return;
      entry.runnerDone = true;
      // ERRORED or COMPLETED on its own: let go of the lease so it shows as free. Under the
      // lock, so that a start that follows (resume) takes the lease after this release.
      if (!runner.stopping)
        await this.withLock(name, async () => {
          if (entry.runner === runner && !runner.stopping) await this.letLeaseGo(entry, true);
        }).catch(() => {});
    });
  }

  private async stopRunner(entry: Entry, reason: StopReason, release = true): Promise<void> {
    const runner = entry.runner;
    if (runner === undefined) return;
    await runner.stop(reason);
    entry.runnerDone = true;
    if (reason === 'pause' && runner.state !== 'PAUSED') {
      await this.store.updatePipeline(entry.name, { state: 'PAUSED', error: undefined }).catch(() => {});
      this.emit('state', { pipeline: entry.name, state: 'PAUSED' });
    }
    // 'lease-lost': the caller decides what becomes of the keeper (see leaseLost).
    if (release && reason !== 'lease-lost') await this.letLeaseGo(entry, true);
  }

  /**
   * `force`: give up after {@link FORCED_DROP_TIMEOUT_MS} (an unreachable host may not
   * answer at all), and attach the source's manual steps to the error.
   */
  private async dropSource(name: string, record: PipelineRecord, force = false): Promise<void> {
    const materialized = await this.options.materialize(record.definition as StoredPipelineDefinition);
    const abort = new AbortController();
    const source = await materialized.source.definition.create(materialized.source.config, {
      pipeline: name,
      logger: this.logger.child({ pipeline: name, connector: 'source' }),
      signal: abort.signal,
    });
    try {
      if (!force) {
        await source.drop();
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${FORCED_DROP_TIMEOUT_MS / 1000} s`)),
          FORCED_DROP_TIMEOUT_MS,
        );
      });
      try {
        await Promise.race([source.drop(), timeout]);
      } catch (err) {
        const steps = source.manualDropSteps?.() ?? [];
        throw Object.assign(err instanceof Error ? err : new Error(String(err)), { manualDropSteps: steps });
      } finally {
        clearTimeout(timer);
      }
    } finally {
      abort.abort();
      await source.close().catch(() => {});
    }
  }

  /**
   * A paused pipeline still holds its slot, and the slot's retained WAL grows: poll the
   * source's metrics so the status and the warnings keep showing it.
   */
  private async startMonitor(entry: Entry): Promise<void> {
    if (entry.monitor || entry.monitorFailed || this.stopped) return;
    try {
      const record = await this.store.getPipeline(entry.name);
      if (
        record === undefined ||
        record.replicationType === 'query' ||
        record.state === 'COMPLETED' ||
        record.startPosition === undefined
      )
        return;
      const materialized =
        entry.materialized ?? (await this.options.materialize(record.definition as StoredPipelineDefinition));
      entry.materialized = materialized;
      const abort = new AbortController();
      const source = await materialized.source.definition.create(materialized.source.config, {
        pipeline: entry.name,
        logger: this.logger.child({ pipeline: entry.name, connector: 'source' }),
        signal: abort.signal,
      });
      if (source.metrics === undefined) {
        await source.close();
        entry.monitorFailed = true;
        return;
      }
      let inFlight: Promise<void> | undefined;
      const poll = async () => {
        try {
          const metrics = await source.metrics!({ pending: true });
          // Resumed or deleted meanwhile: these figures are of a pipeline that moved on.
          if (entry.monitor?.source !== source) return;
          for (const warning of entry.stats.onSourceMetrics(
            metrics,
            { stallAfterMs: this.runtime.stallAfterMs },
            false,
          )) {
            this.logger.warn(warning, { pipeline: entry.name });
            this.emit('warning', { pipeline: entry.name, message: warning });
          }
        } catch (err) {
          this.logger.debug('source metrics unavailable', { pipeline: entry.name, error: describeError(err) });
        }
      };
      // One poll at a time; stopping waits for it (the source may be peeking the slot, which
      // would keep a resumed stream or a delete from taking it).
      const tick = () => {
        inFlight ??= poll().finally(() => {
          inFlight = undefined;
        });
      };
      const timer = setInterval(tick, this.runtime.metricsIntervalMs);
      timer.unref();
      entry.monitor = { source, timer, abort, idle: () => inFlight ?? Promise.resolve() };
      tick();
    } catch (err) {
      entry.monitorFailed = true;
      this.logger.debug('cannot watch the paused pipeline', { pipeline: entry.name, error: describeError(err) });
    }
  }

  /** Stop watching a paused pipeline; resolves once its last poll ended and the source is closed. */
  private async stopMonitor(entry: Entry): Promise<void> {
    const monitor = entry.monitor;
    entry.monitorFailed = false;
    if (monitor === undefined) return;
    entry.monitor = undefined;
    clearInterval(monitor.timer);
    monitor.abort.abort();
    await within(monitor.idle(), 15_000);
    await monitor.source.close().catch(() => {});
  }

  /**
   * `lease`: the pipeline's current lease as just read (null: none), undefined when the
   * store could not be read; it names the server that runs the pipeline.
   */
  private async statusOf(
    name: string,
    record: PipelineRecord | undefined,
    lease?: LeaseInfo | null,
  ): Promise<PipelineStatus> {
    const entry = this.entries.get(name) ?? { name, stats: new PipelineStats(), runnerDone: true };
    let checkpoints: Record<string, Position> = {};
    let partitions: PartitionRecord[] = [];
    try {
      checkpoints = await this.store.getCheckpoints(name);
      partitions = await this.store.listPartitions(name);
    } catch {}
    const runsHere = entry.runner !== undefined && !entry.runnerDone;
    const heldBy = lease
      ? lease.holder === this.holderId
        ? undefined
        : lease
      : lease === null
        ? undefined
        : entry.heldBy;
    const server = runsHere ? this.holderId : lease ? lease.holder : lease === null ? undefined : heldBy?.holder;
    return buildPipelineStatus({ ...entry, heldBy, server, record, checkpoints, partitions, now: Date.now() });
  }
}
