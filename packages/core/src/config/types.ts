import type { TableRef } from '../contract/connector.js';
import type { Locator } from './yaml-document.js';

export const REPLICATION_TYPES = ['cdc_backfill', 'cdc', 'snapshot', 'query'] as const;
export type ReplicationType = (typeof REPLICATION_TYPES)[number];

export const FILTER_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'not_in', 'is_null', 'not_null'] as const;
export type FilterOp = (typeof FILTER_OPS)[number];

export interface ConnectionConfig {
  name: string;
  /** Connector type: a short name (`postgres`), a package name, or a `./path` relative to the config folder. */
  type: string;
  dsn?: string;
  properties: Record<string, unknown>;
  /**
   * The connection's YAML node as written, `${env:…}` references kept: what a stored
   * definition holds. Present when the config was read from YAML (`parseConfig`).
   */
  written?: Record<string, unknown>;
}

export interface TargetMappingFilter {
  column: string;
  op: FilterOp;
  /** Absent for `is_null` / `not_null`; an array for `in` / `not_in`. */
  value?: unknown;
}

/** Per-sink projection and row filter for one source table. */
export interface TargetMapping {
  /** Source table, canonical spelling (see `formatTableName`). */
  table: string;
  tableRef: TableRef;
  /** Columns to keep, in this order; absent = all columns. */
  columns?: string[];
  /** Rows are kept when every condition holds. */
  filter?: TargetMappingFilter[];
}

export interface SinkConfig {
  /** Stable id within the pipeline: `${index}:${connection}` (index in `sinks`, 0 for `sink`). */
  name: string;
  connection: string;
  properties: Record<string, unknown>;
  target_mappings: TargetMapping[];
  /**
   * What happens to an event this sink can never write (too large for the target, a value
   * the format cannot carry): stop the pipeline (`fail`, the default), write it to the
   * dead-letter target and go on (`dead_letter`), or count, log and go on (`skip`).
   */
  on_error: SinkErrorPolicy;
  /** Where dead letters go for a sink without its own dead-letter target (a JSON-lines file). */
  dead_letter_path?: string;
  /** Bytes this sink's backlog may occupy in its spill log before its lane pauses. */
  max_spill_bytes: number;
}

export type SinkErrorPolicy = 'fail' | 'dead_letter' | 'skip';

/** Default spill budget per sink: 4 GiB. */
export const DEFAULT_MAX_SPILL_BYTES = 4 * 1024 ** 3;

/** A pipeline's `workers`: `auto` or a thread count (0 = inline). */
export type WorkersSetting = 'auto' | number;
/**
 * Pipelines run inline unless they ask for workers: on the 2-core bench machine one worker
 * costs 15–34% more CPU per snapshot row and 50–60 MB more RSS, and gives no steady gain in
 * rows/s (apps/bench/README.md, "S1, workers 0 and 1 alternately"); `auto` pays only where a
 * core is free for it.
 */
export const DEFAULT_WORKERS: WorkersSetting = 0;
/** The most worker threads one pipeline may ask for. */
export const MAX_WORKERS = 64;

export const SNAPSHOT_MODES = ['concurrent', 'blocking'] as const;
export type SnapshotMode = (typeof SNAPSHOT_MODES)[number];

export interface PipelineConfig {
  /** `[A-Za-z0-9_-]{1,40}`; it becomes part of replication slot names. */
  name: string;
  replication_type: ReplicationType;
  source: {
    connection: string;
    /** Canonical spellings (`public."order.items"`), in config order. */
    tables: string[];
    tableRefs: TableRef[];
    properties: Record<string, unknown>;
  };
  /** `sink` is normalised into a one-element `sinks`. */
  sinks: SinkConfig[];
  snapshot: {
    concurrency: number;
    target_rows_per_partition: number;
    /**
     * `concurrent` (default): the stream starts at once and snapshot chunks are merged into it
     * with watermarks; `blocking`: the whole snapshot (from the exported snapshot) first, then
     * the stream from L₀. Absent in definitions stored before the option existed.
     */
    mode?: SnapshotMode;
    /** Concurrent mode: rows per chunk read between two watermarks (the memory bound per worker). */
    chunk_rows?: number;
    /** Concurrent mode: bytes of rows per chunk (as the source sends them), the other half of the bound. */
    chunk_bytes?: number;
  };
  /**
   * What the pipeline does when a streamed table's shape changes (a column added, dropped,
   * renamed or retyped, the key redefined): carry on with the new shape (`propagate`, the
   * default), stop in PAUSED until `resume` accepts it (`pause`), or stop in ERRORED (`fail`).
   * Absent: `propagate`.
   */
  schema_changes?: SchemaChangePolicy;
  /** Only for `query` pipelines. */
  query?: { sql: string; interval_seconds: number };
  /**
   * Worker threads that decode snapshot rows and encode sink records off the main thread:
   * `auto` (one less than the CPUs, none on a single CPU), a count, or 0 (everything on the
   * main thread). Absent (definitions stored before the option existed): {@link DEFAULT_WORKERS}.
   */
  workers?: WorkersSetting;
  /**
   * The pipeline's YAML node as written, `${env:…}` references kept: what a stored
   * definition holds (and whether it used `sink:` or `sinks:`). Present when the config
   * was read from YAML (`parseConfig`).
   */
  written?: Record<string, unknown>;
}

export const SCHEMA_CHANGE_POLICIES = ['propagate', 'pause', 'fail'] as const;
export type SchemaChangePolicy = (typeof SCHEMA_CHANGE_POLICIES)[number];

export interface NanosyncConfig {
  connections: ConnectionConfig[];
  pipelines: PipelineConfig[];
  /** Folder connectors are resolved from (the config file's folder). */
  configDir: string;
  /** The file the config came from, when there is one. */
  file?: string;
  /** Line and column of a YAML path, for issues found after validation (connector properties). */
  locate?: Locator;
}

/** A pipeline as stored: self-contained, `${env:…}` kept as references, literal secrets encrypted. */
export interface StoredPipelineDefinition {
  version: 1;
  /** The pipeline's YAML node as plain data (an ignored `sink` next to `sinks` is dropped). */
  pipeline: unknown;
  /** The YAML nodes of the connections the pipeline uses, by name. */
  connections: Record<string, unknown>;
  /** Folder connectors are resolved from. */
  configDir: string;
}
