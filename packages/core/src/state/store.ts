import type { Position } from '../model.js';

/**
 * `RETRYING`: the last attempt failed with an error that may pass by itself, and the next
 * one is scheduled (see `PipelineStatus.retry`). Kept in memory only: a restarted server
 * starts the pipeline afresh.
 */
/**
 * `WAITING`: the run cannot go on until something another process holds is free (its source
 * or a sink said so: a replication slot active for another walsender); `PipelineStatus.waitingFor`
 * says what and who holds it (on the server running the pipeline). Shown over CREATED,
 * SNAPSHOTTING and LIVE_CDC, and stored while it lasts, so every server of a fleet lists it.
 */
/** `DEGRADED`: streaming, but one or more of several sinks stopped with an error (the others continue). */
export type PipelineState =
  | 'CREATED'
  | 'WAITING'
  | 'SNAPSHOTTING'
  | 'LIVE_CDC'
  | 'DEGRADED'
  | 'RETRYING'
  | 'PAUSED'
  | 'ERRORED'
  | 'COMPLETED';

export interface PipelineRecord {
  name: string;
  /** The pipeline definition as applied, with `${env:…}` kept as references and literal secrets encrypted. */
  definition: unknown;
  /** Hash of the normalised definition, for `apply` to report created / updated / unchanged. */
  definitionHash: string;
  /**
   * `replication_type` of the applied definition, so `apply` can tell a `cdc` → `cdc_backfill`
   * switch (which asks for a re-snapshot) without decoding the stored definition.
   */
  replicationType?: string;
  state: PipelineState;
  /** Cause of ERRORED, already redacted. */
  error?: string;
  /** L₀, set once by the first successful `open`. */
  startPosition?: Position;
  /** Whether the snapshot phase (if any) finished for the current start position. */
  snapshotDone: boolean;
  /** Set by pause; the runtime does not start a paused pipeline. */
  paused: boolean;
  createdAt: string;
  updatedAt: string;
}

export type PartitionStatus = 'pending' | 'done';

export interface PartitionRecord {
  pipeline: string;
  /** `schema.table` */
  table: string;
  id: string;
  /** Position in the plan (0-based), for "partition=35/128" progress. */
  ordinal: number;
  bounds: unknown;
  estimatedRows?: number;
  status: PartitionStatus;
  rowsRead?: number;
}

/**
 * One chunk of a snapshot partition (the concurrent snapshot's watermark-bracketed reads, and
 * the blocking snapshot's reads when the source reads bounded chunks): recorded with its exact
 * bounds as `read` before its rows go to any sink, and as `done` once every sink holds them. A
 * restart resumes the partition after its last `done` chunk and reads a `read` chunk again
 * only within the bounds it had, under the same id. A partition's chunks are forgotten when
 * the partition is marked done.
 */
export interface ChunkRecord {
  pipeline: string;
  /** `schema.table` */
  table: string;
  /** The id of the partition ({@link PartitionRecord.id}). */
  partition: string;
  /** 0-based position of the chunk in its partition. */
  ordinal: number;
  /** Unique id, carried by the chunk's events (`ChangeEvent.chunk`); the same when the chunk is read again. */
  id: string;
  /** Where the chunk starts: the source's cursor (the `next` of the chunk before); null at the partition's start. */
  after: unknown;
  /** Where it ends: the `next` its read returned; null when it reached the partition's end. */
  next: unknown;
  status: 'read' | 'done';
  /** Once done: the position its rows carry (the high watermark in concurrent mode). */
  position?: Position;
  /** Once done: the rows it gave the sinks. */
  rows?: number;
}

export interface LeaseInfo {
  pipeline: string;
  holder: string;
  expiresAt: string;
  /** Fencing epoch of this lease (see {@link LeaseFence}). */
  epoch?: number;
}

/**
 * Proof of holding a pipeline's lease: the holder and the epoch `acquireLease` returned.
 * The epoch goes up every time the lease is taken (first time, after expiry or release, by
 * another holder), never on renewal while held. A write given a fence is made only if the
 * lease still has that holder and epoch, checked in the same transaction; otherwise it is
 * refused with `PipelineLeaseHeld`, so a server that lost its lease (frozen past the lease
 * time, partitioned away) cannot overwrite what the new holder wrote.
 */
export interface LeaseFence {
  holder: string;
  epoch: number;
}

/**
 * A server of a fleet sharing one store, as it announced itself: registered at start,
 * renewed with its leases, gone when it stops cleanly or stops renewing. The engine uses
 * the live ones to spread pipelines (fewest running first).
 */
export interface ServerRecord {
  /** The server's lease holder id. */
  id: string;
  /** Whatever the server tells about itself (admin URL, capacity, version). */
  details: Record<string, unknown>;
  startedAt: string;
  expiresAt: string;
}

/**
 * Durable pipeline state. Every write is committed (fsynced) before the promise resolves:
 * the runtime acknowledges the source only after `saveCheckpoint` resolved, so a store that
 * returns early could let the source release changes the sinks never got.
 */
export interface StateStore {
  getPipeline(name: string): Promise<PipelineRecord | undefined>;
  listPipelines(): Promise<PipelineRecord[]>;
  /**
   * Insert, or replace the definition of an existing pipeline. Replacing keeps its start
   * position, partitions and checkpoints; state, error, snapshotDone and paused are taken
   * from `record` either way.
   */
  upsertPipeline(record: Omit<PipelineRecord, 'createdAt' | 'updatedAt'>): Promise<void>;
  /** Change some fields. A key present with the value `undefined` clears that field (`error`, `startPosition`). */
  updatePipeline(
    name: string,
    patch: Partial<Pick<PipelineRecord, 'state' | 'error' | 'startPosition' | 'snapshotDone' | 'paused'>>,
    fence?: LeaseFence,
  ): Promise<void>;
  /** Remove the pipeline and everything it owns (partitions, checkpoints, lease). */
  deletePipeline(name: string): Promise<void>;

  /** Persist a table's plan once; a second call for the same table is a no-op returning the stored plan. */
  savePartitions(
    pipeline: string,
    table: string,
    partitions: Omit<PartitionRecord, 'pipeline' | 'table' | 'status'>[],
    fence?: LeaseFence,
  ): Promise<PartitionRecord[]>;
  listPartitions(pipeline: string, table?: string): Promise<PartitionRecord[]>;
  /** Mark the partition done and forget its chunk records, in one transaction. */
  markPartitionDone(pipeline: string, table: string, id: string, rowsRead: number, fence?: LeaseFence): Promise<void>;
  /**
   * Insert or replace one chunk record (keyed by pipeline, table, partition and ordinal).
   * Marking its partition done, clearing partitions and deleting the pipeline remove it.
   */
  saveChunk(pipeline: string, chunk: Omit<ChunkRecord, 'pipeline'>, fence?: LeaseFence): Promise<void>;
  /** The chunk records of the pipeline (or of one table), by table, partition and ordinal. */
  listChunks(pipeline: string, table?: string): Promise<ChunkRecord[]>;
  /** Forget every partition of the pipeline, or only those of `table` (`schema.table`): re-snapshot. */
  clearPartitions(pipeline: string, fence?: LeaseFence, table?: string): Promise<void>;

  /** Per-sink checkpoint: the last `safePosition` durable in that sink. Key = sink index/name. */
  saveCheckpoint(pipeline: string, sink: string, position: Position, fence?: LeaseFence): Promise<void>;
  getCheckpoints(pipeline: string): Promise<Record<string, Position>>;
  clearCheckpoints(pipeline: string, fence?: LeaseFence): Promise<void>;

  /**
   * Take or renew the lease for `pipeline`. Returns `{ acquired: true, epoch }` when `holder`
   * now owns it until `now + ttlMs`, or the current holder when someone else does. The epoch
   * is the fence for this holding (see {@link LeaseFence}).
   */
  acquireLease(
    pipeline: string,
    holder: string,
    ttlMs: number,
  ): Promise<{ acquired: true; epoch: number } | { acquired: false; lease: LeaseInfo }>;
  /** The unexpired lease of `pipeline`, if any. */
  getLease(pipeline: string): Promise<LeaseInfo | undefined>;
  /** Give the lease up (it expires at once); its epoch is kept, so the next holder's is higher. */
  releaseLease(pipeline: string, holder: string): Promise<void>;
  /** Every unexpired lease, by pipeline name. */
  listLeases(): Promise<LeaseInfo[]>;

  /** Register the server `id`, or renew its registration, until `now + ttlMs`; `details` replace the stored ones. */
  registerServer(id: string, ttlMs: number, details: Record<string, unknown>): Promise<void>;
  /** The servers whose registration has not expired, by id. */
  listServers(): Promise<ServerRecord[]>;
  /** Forget a server at once (a clean stop). */
  removeServer(id: string): Promise<void>;

  /** Small key/value area for server-level settings (e.g. generated ids). */
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  close(): Promise<void>;
}
