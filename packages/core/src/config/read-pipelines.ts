import { availableParallelism } from 'node:os';
import type { TableRef } from '../contract/connector.js';
import { didYouMean, formatPath, type PathSegment } from './issues.js';
import type { ReadConnection } from './read-connections.js';
import { readTargetMappings } from './read-target-mappings.js';
import { parseSchedule } from './schedule.js';
import {
  type Collector,
  checkKeys,
  describe,
  readMap,
  readPositiveInteger,
  readProperties,
  readString,
  type YamlMap,
} from './structure.js';
import { formatTableName, parseTableName } from './table-name.js';
import {
  DEFAULT_MAX_SPILL_BYTES,
  DEFAULT_WORKERS,
  MAX_WORKERS,
  type PipelineConfig,
  REPLICATION_TYPES,
  type ReplicationType,
  SCHEMA_CHANGE_POLICIES,
  SNAPSHOT_MODES,
  type SchemaChangePolicy,
  type SinkConfig,
  type SinkErrorPolicy,
  type SnapshotMode,
  type WorkersSetting,
} from './types.js';

/**
 * The `pipelines:` list, the semantics of a pipeline: names that can become replication
 * slot names, connections that exist, source tables, one or more sinks, and the options
 * that depend on the replication type (snapshot, query).
 */

export const PIPELINE_NAME = /^[A-Za-z0-9_-]{1,40}$/;
export const DEFAULT_TARGET_ROWS_PER_PARTITION = 100_000;
/** Concurrent snapshot: rows read between two watermarks (buffered until the high one is streamed). */
export const DEFAULT_SNAPSHOT_CHUNK_ROWS = 10_000;
/**
 * Concurrent snapshot: bytes of rows (as the source sends them) read between two watermarks;
 * blocking snapshot: bytes per chunk. Binds before `chunk_rows` for rows wider than about
 * 100 bytes. A chunk is decoded whole before it is handed on, and decoded rows take about four
 * times their COPY text in the heap, so 1 MiB keeps a reader's chunk near 4 MiB; at 8 MiB the
 * two readers' chunks were the largest part of a snapshot's memory (S1 peak RSS 220 → 190 MiB,
 * apps/bench/README.md, issue 19 item 4, fourth pass).
 */
export const DEFAULT_SNAPSHOT_CHUNK_BYTES = 1024 * 1024;

/**
 * Partitions read at once unless `snapshot.concurrency` says otherwise: one per core, at least 2
 * (one read while the other is handed on) and at most 4. Each partition being read holds a
 * decoded chunk (`chunk_rows`) in memory, and one more may wait in the sink queue, so this is
 * the largest part of a snapshot's memory; more readers do not make it faster while nanosync,
 * not the database, is what bounds the speed (apps/bench/README.md, issue 19 memory).
 */
export function defaultSnapshotConcurrency(cores: number = availableParallelism()): number {
  return Math.min(4, Math.max(2, cores));
}

export const PIPELINE_KEYS = [
  'name',
  'replication_type',
  'source',
  'sink',
  'sinks',
  'snapshot',
  'query',
  'schema_changes',
  'workers',
];
export const SOURCE_KEYS = ['connection', 'tables', 'properties'];
export const SINK_KEYS = [
  'connection',
  'properties',
  'target_mappings',
  'on_error',
  'dead_letter_path',
  'max_spill_bytes',
];
export const ON_ERROR_POLICIES = ['fail', 'dead_letter', 'skip'] as const;
export const SNAPSHOT_KEYS = ['concurrency', 'target_rows_per_partition', 'mode', 'chunk_rows', 'chunk_bytes'];
export const QUERY_KEYS = ['sql', 'schedule'];

export function readPipelines(
  top: YamlMap,
  connections: Map<string, ReadConnection>,
  out: Collector,
): PipelineConfig[] {
  const list = top.pipelines;
  if (list === undefined || list === null) {
    out.missing([], 'pipelines', 'pipelines is required: a list of pipelines');
    return [];
  }
  if (!Array.isArray(list)) {
    out.issue(['pipelines'], `pipelines must be a list, found ${describe(list)}`);
    return [];
  }
  if (list.length === 0) {
    out.issue(['pipelines'], 'pipelines is empty; define at least one pipeline');
    return [];
  }
  const result: PipelineConfig[] = [];
  const seen = new Map<string, string>();
  list.forEach((item, i) => {
    const path: PathSegment[] = ['pipelines', i];
    const pipeline = readPipeline(item, path, connections, out);
    if (pipeline === undefined) return;
    const slotKey = pipeline.name.toLowerCase().replaceAll('-', '_');
    const clash = seen.get(slotKey);
    if (clash !== undefined) {
      const message =
        clash === pipeline.name
          ? `pipeline name "${pipeline.name}" is used more than once`
          : `pipeline name "${pipeline.name}" clashes with "${clash}": names become replication slot names, so they must differ by more than letter case or "-" versus "_"`;
      out.issue([...path, 'name'], message);
      return;
    }
    seen.set(slotKey, pipeline.name);
    result.push(pipeline);
  });
  return result;
}

function readConnectionRef(
  map: YamlMap,
  path: PathSegment[],
  connections: Map<string, ReadConnection>,
  out: Collector,
): string | undefined {
  const name = readString(map, 'connection', path, out, true);
  if (name === undefined) return undefined;
  if (!connections.has(name)) {
    // Already reported where the connection is written.
    if (out.invalidConnections.has(name)) return undefined;
    out.issue(
      [...path, 'connection'],
      `connection "${name}" is not defined under connections${didYouMean(name, [...connections.keys()])}`,
    );
    return undefined;
  }
  return name;
}

function readPipeline(
  item: unknown,
  path: PathSegment[],
  connections: Map<string, ReadConnection>,
  out: Collector,
): PipelineConfig | undefined {
  const map = readMap(item, path, 'a pipeline', out);
  if (map === undefined) return undefined;
  checkKeys(map, PIPELINE_KEYS, path, out, 'a pipeline');
  const before = out.issues.length;

  const name = readString(map, 'name', path, out, true);
  if (name !== undefined && !PIPELINE_NAME.test(name)) {
    out.issue(
      [...path, 'name'],
      `pipeline name "${name}" must be 1-40 letters, digits, "_" or "-" (it becomes part of the replication slot name)`,
    );
  }

  let replicationType: ReplicationType = 'cdc_backfill';
  if (map.replication_type !== undefined && map.replication_type !== null) {
    const value = map.replication_type;
    if (typeof value === 'string' && (REPLICATION_TYPES as readonly string[]).includes(value)) {
      replicationType = value as ReplicationType;
    } else {
      const hint = typeof value === 'string' ? didYouMean(value, REPLICATION_TYPES) : '';
      out.issue(
        [...path, 'replication_type'],
        `replication_type must be one of ${REPLICATION_TYPES.join(', ')}, found ${typeof value === 'string' ? `"${value}"` : describe(value)}${hint}`,
      );
    }
  }

  const source = readSource(map, path, replicationType, connections, out);
  const sinks = readSinks(map, path, name, source?.tableRefs, connections, out);
  const snapshot = readSnapshot(map, path, replicationType, out);
  const query = readQuery(map, path, replicationType, out);
  const schemaChanges = readSchemaChanges(map, path, replicationType, out);
  const workers = readWorkers(map, path, name, out);

  if (out.issues.length > before || name === undefined || source === undefined || sinks === undefined) return undefined;
  const pipeline: PipelineConfig = {
    name,
    replication_type: replicationType,
    source,
    sinks,
    snapshot,
    schema_changes: schemaChanges,
    ...(query === undefined ? {} : { query }),
    ...(workers === undefined ? {} : { workers }),
  };
  const written = out.writtenAt(path);
  if (written !== undefined) pipeline.written = written;
  return pipeline;
}

/** True when the pipeline was written with the singular `sink:` (its YAML path is `pipelines[i].sink`). */
export function writtenWithSingleSink(pipeline: PipelineConfig): boolean {
  return pipeline.written !== undefined && pipeline.written.sinks === undefined;
}

function readSource(
  pipeline: YamlMap,
  pipelinePath: PathSegment[],
  replicationType: ReplicationType,
  connections: Map<string, ReadConnection>,
  out: Collector,
): PipelineConfig['source'] | undefined {
  const path = [...pipelinePath, 'source'];
  if (pipeline.source === undefined || pipeline.source === null) {
    out.missing(pipelinePath, 'source', 'source is required: { connection, tables }');
    return undefined;
  }
  const map = readMap(pipeline.source, path, 'source', out);
  if (map === undefined) return undefined;
  checkKeys(map, SOURCE_KEYS, path, out, 'source');
  const connection = readConnectionRef(map, path, connections, out);
  const properties = readProperties(map, path, out);
  const tables: string[] = [];
  const tableRefs: TableRef[] = [];
  const tablesPath = [...path, 'tables'];
  const list = map.tables;
  if (list === undefined || list === null) {
    if (replicationType !== 'query') out.missing(path, 'tables', 'tables is required: a list like [public.orders]');
  } else if (!Array.isArray(list)) {
    out.issue(tablesPath, `tables must be a list, found ${describe(list)}`);
  } else if (list.length === 0 && replicationType !== 'query') {
    out.issue(tablesPath, 'tables is empty; list at least one table');
  } else {
    list.forEach((entry, j) => {
      if (typeof entry !== 'string') {
        out.issue([...tablesPath, j], `a table must be a string like public.orders, found ${describe(entry)}`);
        return;
      }
      const parsed = parseTableName(entry);
      if (!parsed.ok) {
        out.issue([...tablesPath, j], parsed.message);
        return;
      }
      const canonical = formatTableName(parsed.ref);
      if (tables.includes(canonical)) {
        out.issue([...tablesPath, j], `table ${canonical} is listed more than once`);
        return;
      }
      tables.push(canonical);
      tableRefs.push(parsed.ref);
    });
  }
  if (connection === undefined) return undefined;
  return { connection, tables, tableRefs, properties };
}

function readSinks(
  pipeline: YamlMap,
  pipelinePath: PathSegment[],
  pipelineName: string | undefined,
  tableRefs: TableRef[] | undefined,
  connections: Map<string, ReadConnection>,
  out: Collector,
): SinkConfig[] | undefined {
  const hasSink = pipeline.sink !== undefined;
  const hasSinks = pipeline.sinks !== undefined;
  if (hasSinks) {
    if (hasSink) {
      out.warn(
        [...pipelinePath, 'sink'],
        `pipeline "${pipelineName ?? formatPath(pipelinePath)}" has both sink and sinks; sink is ignored and only sinks are used`,
      );
    }
    const list = pipeline.sinks;
    const path = [...pipelinePath, 'sinks'];
    if (!Array.isArray(list)) {
      out.issue(path, `sinks must be a list, found ${describe(list)}`);
      return undefined;
    }
    if (list.length === 0) {
      out.issue(path, 'sinks is empty; list at least one sink');
      return undefined;
    }
    const sinks = list.map((item, i) => readSink(item, [...path, i], i, tableRefs, connections, out));
    return sinks.every((s) => s !== undefined) ? (sinks as SinkConfig[]) : undefined;
  }
  if (!hasSink || pipeline.sink === null) {
    const message = 'a pipeline needs sink: { connection } or sinks: [ … ]';
    if (hasSink) out.issue([...pipelinePath, 'sink'], message, { target: 'key' });
    else out.issue(pipelinePath, message);
    return undefined;
  }
  const sink = readSink(pipeline.sink, [...pipelinePath, 'sink'], 0, tableRefs, connections, out);
  return sink === undefined ? undefined : [sink];
}

function readSink(
  item: unknown,
  path: PathSegment[],
  index: number,
  tableRefs: TableRef[] | undefined,
  connections: Map<string, ReadConnection>,
  out: Collector,
): SinkConfig | undefined {
  const map = readMap(item, path, 'a sink', out);
  if (map === undefined) return undefined;
  checkKeys(map, SINK_KEYS, path, out, 'a sink');
  const connection = readConnectionRef(map, path, connections, out);
  const properties = readProperties(map, path, out);
  const mappings = readTargetMappings(map, path, tableRefs, out);
  const before = out.issues.length;
  let onError: SinkErrorPolicy = 'fail';
  if (map.on_error !== undefined && map.on_error !== null) {
    const value = map.on_error;
    if (typeof value === 'string' && (ON_ERROR_POLICIES as readonly string[]).includes(value)) {
      onError = value as SinkErrorPolicy;
    } else {
      out.issue(
        [...path, 'on_error'],
        `on_error must be one of ${ON_ERROR_POLICIES.join(', ')}, found ${typeof value === 'string' ? `"${value}"${didYouMean(value, ON_ERROR_POLICIES)}` : describe(value)}`,
      );
    }
  }
  const deadLetterPath = readString(map, 'dead_letter_path', path, out, false);
  let maxSpillBytes = DEFAULT_MAX_SPILL_BYTES;
  if (map.max_spill_bytes !== undefined && map.max_spill_bytes !== null) {
    const n = readByteSize(map.max_spill_bytes, [...path, 'max_spill_bytes'], out);
    if (n !== undefined) maxSpillBytes = n;
  }
  if (connection === undefined || mappings === undefined || out.issues.length > before) return undefined;
  const sink: SinkConfig = {
    name: `${index}:${connection}`,
    connection,
    properties,
    target_mappings: mappings,
    on_error: onError,
    max_spill_bytes: maxSpillBytes,
  };
  if (deadLetterPath !== undefined) sink.dead_letter_path = deadLetterPath;
  return sink;
}

/** A byte count: a whole number, or a number with a unit (`512MB`, `4GiB`, `10 GB`). 0 turns spilling off. */
function readByteSize(value: unknown, path: PathSegment[], out: Collector, min = 0): number | undefined {
  const name = String(path[path.length - 1]);
  if (typeof value === 'number' && Number.isInteger(value) && value >= min) return value;
  if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?\s*$/i.exec(value);
    if (m) {
      const scale: Record<string, number> = {
        b: 1,
        kb: 1e3,
        kib: 1024,
        mb: 1e6,
        mib: 1024 ** 2,
        gb: 1e9,
        gib: 1024 ** 3,
        tb: 1e12,
        tib: 1024 ** 4,
      };
      const n = Math.floor(Number(m[1]) * scale[(m[2] ?? 'B').toLowerCase()]!);
      if (n >= min) return n;
    }
  }
  out.issue(
    path,
    `${name} must be a number of bytes (${min} or more) or a size such as ${min > 0 ? '16MiB or 64MB' : '512MB or 4GiB'}, found ${typeof value === 'string' ? JSON.stringify(value) : describe(value)}`,
  );
  return undefined;
}

function readSnapshot(
  pipeline: YamlMap,
  pipelinePath: PathSegment[],
  replicationType: ReplicationType,
  out: Collector,
): PipelineConfig['snapshot'] {
  const snapshot: PipelineConfig['snapshot'] = {
    concurrency: defaultSnapshotConcurrency(),
    target_rows_per_partition: DEFAULT_TARGET_ROWS_PER_PARTITION,
  };
  const value = pipeline.snapshot;
  if (value === undefined || value === null) return snapshot;
  const path = [...pipelinePath, 'snapshot'];
  const map = readMap(value, path, 'snapshot', out);
  if (map === undefined) return snapshot;
  checkKeys(map, SNAPSHOT_KEYS, path, out, 'snapshot');
  if (replicationType === 'cdc' || replicationType === 'query') {
    out.warn(path, `snapshot options have no effect on a ${replicationType} pipeline`);
  }
  if (map.concurrency !== undefined) {
    const n = readPositiveInteger(map.concurrency, [...path, 'concurrency'], out, 1024);
    if (n !== undefined) snapshot.concurrency = n;
  }
  if (map.target_rows_per_partition !== undefined) {
    const n = readPositiveInteger(
      map.target_rows_per_partition,
      [...path, 'target_rows_per_partition'],
      out,
      1_000_000_000,
    );
    if (n !== undefined) snapshot.target_rows_per_partition = n;
  }
  if (map.mode !== undefined) {
    const value = map.mode;
    if (typeof value === 'string' && (SNAPSHOT_MODES as readonly string[]).includes(value)) {
      snapshot.mode = value as SnapshotMode;
    } else {
      const hint = typeof value === 'string' ? didYouMean(value, SNAPSHOT_MODES) : '';
      out.issue(
        [...path, 'mode'],
        `snapshot.mode must be one of ${SNAPSHOT_MODES.join(', ')}, found ${typeof value === 'string' ? `"${value}"` : describe(value)}${hint}`,
      );
    }
  }
  if (map.chunk_rows !== undefined) {
    const n = readPositiveInteger(map.chunk_rows, [...path, 'chunk_rows'], out, 10_000_000);
    if (n !== undefined) snapshot.chunk_rows = n;
  }
  if (map.chunk_bytes !== undefined) {
    const n = readByteSize(map.chunk_bytes, [...path, 'chunk_bytes'], out, 1024);
    if (n !== undefined) snapshot.chunk_bytes = n;
  }
  return snapshot;
}

/**
 * `workers: auto | N | 0`. Undefined when absent (the default applies) or invalid (reported,
 * naming the pipeline and the value found).
 */
function readWorkers(
  pipeline: YamlMap,
  pipelinePath: PathSegment[],
  pipelineName: string | undefined,
  out: Collector,
): WorkersSetting | undefined {
  const value = pipeline.workers;
  if (value === undefined || value === null) return undefined;
  if (value === 'auto') return 'auto';
  let n: number | undefined;
  if (typeof value === 'number' && Number.isInteger(value)) n = value;
  else if (typeof value === 'string' && /^\s*\d+\s*$/.test(value)) n = Number(value.trim());
  if (n !== undefined && n >= 0 && n <= MAX_WORKERS) return n;
  const found = typeof value === 'string' || typeof value === 'number' ? JSON.stringify(value) : describe(value);
  const hint = typeof value === 'string' && !/^\s*-?\d/.test(value) ? didYouMean(value, ['auto']) : '';
  out.issue(
    [...pipelinePath, 'workers'],
    `pipeline "${pipelineName ?? formatPath(pipelinePath)}": workers must be auto, 0 (no worker threads) or a whole number of worker threads up to ${MAX_WORKERS}, found ${found}${hint}`,
  );
  return undefined;
}

/**
 * How many worker threads a pipeline with this `workers` setting runs on a machine with
 * `cores` CPUs: `auto` is one less than the CPUs (so 0 on a single CPU), a number is taken as
 * it is.
 */
export function resolveWorkerCount(setting: WorkersSetting | undefined, cores = availableParallelism()): number {
  const value = setting ?? DEFAULT_WORKERS;
  if (value === 'auto') return Math.max(0, cores - 1);
  return value;
}

function readSchemaChanges(
  pipeline: YamlMap,
  pipelinePath: PathSegment[],
  replicationType: ReplicationType,
  out: Collector,
): SchemaChangePolicy {
  const value = pipeline.schema_changes;
  if (value === undefined || value === null) return 'propagate';
  const path = [...pipelinePath, 'schema_changes'];
  if (typeof value !== 'string' || !(SCHEMA_CHANGE_POLICIES as readonly string[]).includes(value)) {
    const hint = typeof value === 'string' ? didYouMean(value, SCHEMA_CHANGE_POLICIES) : '';
    out.issue(
      path,
      `schema_changes must be one of ${SCHEMA_CHANGE_POLICIES.join(', ')}, found ${typeof value === 'string' ? `"${value}"` : describe(value)}${hint}`,
    );
    return 'propagate';
  }
  if (replicationType === 'snapshot' || replicationType === 'query') {
    out.warn(path, `schema_changes has no effect on a ${replicationType} pipeline (it applies to streamed changes)`);
  }
  return value as SchemaChangePolicy;
}

function readQuery(
  pipeline: YamlMap,
  pipelinePath: PathSegment[],
  replicationType: ReplicationType,
  out: Collector,
): PipelineConfig['query'] | undefined {
  const path = [...pipelinePath, 'query'];
  const value = pipeline.query;
  if (replicationType !== 'query') {
    if (value !== undefined) {
      out.issue(path, `query is only allowed when replication_type is query (this pipeline is ${replicationType})`, {
        target: 'key',
      });
    }
    return undefined;
  }
  if (value === undefined || value === null) {
    out.missing(pipelinePath, 'query', 'a query pipeline needs query: { sql, schedule }');
    return undefined;
  }
  const map = readMap(value, path, 'query', out);
  if (map === undefined) return undefined;
  checkKeys(map, QUERY_KEYS, path, out, 'query');
  const sql = readString(map, 'sql', path, out, true);
  let intervalSeconds: number | undefined;
  if (map.schedule === undefined || map.schedule === null) {
    out.missing(path, 'schedule', 'schedule is required, e.g. "30s", "5m", "1h" or "1d"');
  } else {
    const parsed = parseSchedule(map.schedule);
    if (typeof parsed === 'string') out.issue([...path, 'schedule'], parsed);
    else intervalSeconds = parsed;
  }
  if (sql === undefined || intervalSeconds === undefined) return undefined;
  return { sql, interval_seconds: intervalSeconds };
}
