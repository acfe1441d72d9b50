import { availableParallelism } from 'node:os';
import type { TableRef } from '../contract/connector.js';
import { isPackageType, isPathType } from '../discovery/candidates.js';
import { ErrorCode } from '../errors.js';
import { hasEnvReference, substituteEnv } from './env.js';
import { type ConfigIssue, didYouMean, formatPath, type PathSegment } from './issues.js';
import { parseSchedule } from './schedule.js';
import { formatTableName, parseTableName } from './table-name.js';
import {
  type ConnectionConfig,
  FILTER_OPS,
  type FilterOp,
  type NanosyncConfig,
  type PipelineConfig,
  REPLICATION_TYPES,
  type ReplicationType,
  type SinkConfig,
  type TargetMapping,
  type TargetMappingFilter,
} from './types.js';
import type { Locator } from './yaml-document.js';

export const PIPELINE_NAME = /^[A-Za-z0-9_-]{1,40}$/;
export const CONNECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const SHORT_TYPE = /^[a-z0-9][a-z0-9._-]*$/;
export const DEFAULT_TARGET_ROWS_PER_PARTITION = 100_000;

export function defaultSnapshotConcurrency(): number {
  return Math.max(4, availableParallelism());
}

const TOP_KEYS = ['connections', 'pipelines'];
const CONNECTION_KEYS = ['name', 'type', 'dsn', 'properties'];
const PIPELINE_KEYS = ['name', 'replication_type', 'source', 'sink', 'sinks', 'snapshot', 'query'];
const SOURCE_KEYS = ['connection', 'tables', 'properties'];
const SINK_KEYS = ['connection', 'properties', 'target_mappings'];
const MAPPING_KEYS = ['table', 'columns', 'filter'];
const FILTER_KEYS = ['column', 'op', 'value'];
const SNAPSHOT_KEYS = ['concurrency', 'target_rows_per_partition'];
const QUERY_KEYS = ['sql', 'schedule'];

export interface ValidateOptions {
  env: NodeJS.ProcessEnv;
  /**
   * The variables are resolved elsewhere later (by the server, for `apply`): a variable
   * missing from `env` is not a problem here and its reference stays as written.
   */
  deferEnv?: boolean;
  configDir: string;
  file?: string;
  locate?: Locator;
}

export interface ValidationResult {
  /** Present when there are no issues. */
  config?: NanosyncConfig;
  issues: ConfigIssue[];
  warnings: ConfigIssue[];
}

type YamlMap = Record<string, unknown>;

class Collector {
  readonly issues: ConfigIssue[] = [];
  readonly warnings: ConfigIssue[] = [];
  /** Connections written in the file but rejected: references to them get no second issue. */
  readonly invalidConnections = new Set<string>();
  constructor(private readonly locate: Locator | undefined) {}

  private make(
    path: readonly PathSegment[],
    message: string,
    target: 'key' | 'value',
    code?: ErrorCode,
    at?: readonly PathSegment[],
  ): ConfigIssue {
    const position = this.locate?.(at ?? path, target);
    return {
      path: formatPath(path),
      message,
      ...(position === undefined ? {} : { line: position.line, column: position.column }),
      ...(code === undefined ? {} : { code }),
    };
  }

  /** `at` locates the issue somewhere else than `path` (a missing key is shown at its parent). */
  issue(
    path: readonly PathSegment[],
    message: string,
    options: { code?: ErrorCode; target?: 'key' | 'value'; at?: readonly PathSegment[] } = {},
  ) {
    this.issues.push(this.make(path, message, options.target ?? 'value', options.code, options.at));
  }

  /** A required key that is absent: reported under its own path, located at the parent mapping. */
  missing(parent: readonly PathSegment[], key: string, message: string) {
    const present = this.locate?.([...parent, key], 'key') !== undefined;
    this.issue([...parent, key], message, present ? { target: 'key' } : { at: parent });
  }

  warn(path: readonly PathSegment[], message: string) {
    this.warnings.push(this.make(path, message, 'key'));
  }
}

/** Fields that decide identity or which code runs: they must be written literally. */
function isStructuralField(path: readonly PathSegment[]): boolean {
  const p = path.map((s) => (typeof s === 'number' ? '#' : s)).join('/');
  return [
    'connections/#/name',
    'connections/#/type',
    'pipelines/#/name',
    'pipelines/#/replication_type',
    'pipelines/#/source/connection',
    'pipelines/#/sink/connection',
    'pipelines/#/sinks/#/connection',
  ].includes(p);
}

/** Copy of `value` with `${env:…}` resolved in every string scalar; problems become issues. */
function resolveEnv(
  value: unknown,
  path: PathSegment[],
  env: NodeJS.ProcessEnv,
  out: Collector,
  deferEnv = false,
): unknown {
  if (typeof value === 'string') {
    if (isStructuralField(path) && hasEnvReference(value)) {
      out.issue(
        path,
        'environment references are not allowed here: this field names something and must be written literally',
        {
          code: ErrorCode.ConfigInvalid,
        },
      );
      return value;
    }
    const result = substituteEnv(value, env, { keepMissing: deferEnv });
    for (const problem of result.problems) out.issue(path, problem, { code: ErrorCode.ConfigMissingEnv });
    return result.value;
  }
  if (Array.isArray(value)) return value.map((item, i) => resolveEnv(item, [...path, i], env, out, deferEnv));
  if (isPlainMap(value)) {
    const copy: YamlMap = {};
    for (const [key, item] of Object.entries(value)) copy[key] = resolveEnv(item, [...path, key], env, out, deferEnv);
    return copy;
  }
  return value;
}

function isPlainMap(value: unknown): value is YamlMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (isPlainMap(value)) return 'a mapping';
  return `a ${typeof value}`;
}

/**
 * Validate a parsed config (plain data, `${env:…}` unresolved). Every problem is
 * collected with its YAML path; the config is returned only when there are none.
 */
export function validateConfigValue(raw: unknown, options: ValidateOptions): ValidationResult {
  const out = new Collector(options.locate);
  const root = resolveEnv(raw, [], options.env, out, options.deferEnv);
  const config = readRoot(root, out);
  const result: ValidationResult = { issues: byPosition(out.issues), warnings: byPosition(out.warnings) };
  if (out.issues.length === 0 && config !== undefined) {
    result.config = {
      ...config,
      configDir: options.configDir,
      ...(options.file === undefined ? {} : { file: options.file }),
    };
  }
  return result;
}

/** Issues in file order; those without a position keep their relative order after the rest. */
function byPosition(issues: ConfigIssue[]): ConfigIssue[] {
  const key = (issue: ConfigIssue) => (issue.line ?? Number.MAX_SAFE_INTEGER) * 100_000 + (issue.column ?? 0);
  return issues
    .map((issue, index) => ({ issue, index }))
    .sort((a, b) => key(a.issue) - key(b.issue) || a.index - b.index)
    .map(({ issue }) => issue);
}

function readMap(value: unknown, path: PathSegment[], what: string, out: Collector): YamlMap | undefined {
  if (isPlainMap(value)) return value;
  out.issue(path, `${what} must be a mapping, found ${describe(value)}`);
  return undefined;
}

function checkKeys(map: YamlMap, allowed: readonly string[], path: PathSegment[], out: Collector, where: string) {
  for (const key of Object.keys(map)) {
    if (allowed.includes(key)) continue;
    out.issue(
      [...path, key],
      `unknown key "${key}" in ${where}${didYouMean(key, allowed)}; allowed: ${allowed.join(', ')}`,
      {
        code: ErrorCode.ConfigUnknownKey,
        target: 'key',
      },
    );
  }
}

function readString(
  map: YamlMap,
  key: string,
  path: PathSegment[],
  out: Collector,
  required: boolean,
): string | undefined {
  const value = map[key];
  if (value === undefined || value === null) {
    if (required) out.missing(path, key, `${key} is required`);
    return undefined;
  }
  if (typeof value !== 'string') {
    const hint = typeof value === 'number' || typeof value === 'boolean' ? '; put it in quotes' : '';
    out.issue([...path, key], `${key} must be a string, found ${describe(value)}${hint}`);
    return undefined;
  }
  if (value.trim() === '') {
    out.issue([...path, key], `${key} must not be empty`);
    return undefined;
  }
  return value;
}

function readProperties(map: YamlMap, path: PathSegment[], out: Collector): Record<string, unknown> {
  const value = map.properties;
  if (value === undefined || value === null) return {};
  return readMap(value, [...path, 'properties'], 'properties', out) ?? {};
}

function readPositiveInteger(value: unknown, path: PathSegment[], out: Collector, max: number): number | undefined {
  let n: number | undefined;
  if (typeof value === 'number' && Number.isInteger(value)) n = value;
  else if (typeof value === 'string' && /^\d+$/.test(value.trim())) n = Number(value.trim());
  if (n === undefined || n < 1 || n > max) {
    out.issue(
      path,
      `must be a whole number from 1 to ${max}, found ${typeof value === 'string' ? JSON.stringify(value) : describe(value)}`,
    );
    return undefined;
  }
  return n;
}

function readRoot(root: unknown, out: Collector): Omit<NanosyncConfig, 'configDir' | 'file'> | undefined {
  if (root === undefined || root === null) {
    out.issue([], 'the config is empty; it needs connections: and pipelines:');
    return undefined;
  }
  const top = readMap(root, [], 'the config', out);
  if (top === undefined) return undefined;
  checkKeys(top, TOP_KEYS, [], out, 'the top level');

  const connections = readConnections(top, out);
  const byName = new Map(connections.map((c) => [c.config.name, c]));
  const pipelines = readPipelines(top, byName, out);

  const used = new Set<string>();
  for (const p of pipelines) {
    used.add(p.source.connection);
    for (const s of p.sinks) used.add(s.connection);
  }
  for (const c of connections) {
    if (!used.has(c.config.name)) out.warn(c.path, `connection "${c.config.name}" is not used by any pipeline`);
  }
  return { connections: connections.map((c) => c.config), pipelines };
}

interface ReadConnection {
  config: ConnectionConfig;
  path: PathSegment[];
}

function readConnections(top: YamlMap, out: Collector): ReadConnection[] {
  const list = top.connections;
  if (list === undefined || list === null) {
    out.missing([], 'connections', 'connections is required: a list of { name, type, dsn or properties }');
    return [];
  }
  if (!Array.isArray(list)) {
    out.issue(['connections'], `connections must be a list, found ${describe(list)}`);
    return [];
  }
  const result: ReadConnection[] = [];
  const seen = new Set<string>();
  list.forEach((item, i) => {
    const path: PathSegment[] = ['connections', i];
    const map = readMap(item, path, 'a connection', out);
    if (map === undefined) return;
    checkKeys(map, CONNECTION_KEYS, path, out, 'a connection');
    const name = readString(map, 'name', path, out, true);
    const type = readString(map, 'type', path, out, true);
    const dsn = readString(map, 'dsn', path, out, false);
    const properties = readProperties(map, path, out);
    let ok = name !== undefined && type !== undefined;
    if (name !== undefined && !CONNECTION_NAME.test(name)) {
      out.issue(
        [...path, 'name'],
        `connection name "${name}" must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`,
      );
      ok = false;
    }
    if (name !== undefined && seen.has(name)) {
      out.issue([...path, 'name'], `connection name "${name}" is used more than once`);
      ok = false;
    }
    if (name !== undefined) seen.add(name);
    if (type !== undefined && !isPackageType(type) && !isPathType(type) && !SHORT_TYPE.test(type)) {
      const hint = SHORT_TYPE.test(type.toLowerCase()) ? ` (did you mean "${type.toLowerCase()}"?)` : '';
      out.issue(
        [...path, 'type'],
        `connector type "${type}" must be lowercase letters, digits, ".", "_" or "-", a package name or a ./path${hint}`,
      );
      ok = false;
    }
    if (!ok && name !== undefined) out.invalidConnections.add(name);
    if (ok) {
      result.push({
        config: { name: name!, type: type!, ...(dsn === undefined ? {} : { dsn }), properties },
        path,
      });
    }
  });
  return result;
}

function readPipelines(top: YamlMap, connections: Map<string, ReadConnection>, out: Collector): PipelineConfig[] {
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

  if (out.issues.length > before || name === undefined || source === undefined || sinks === undefined) return undefined;
  const pipeline: PipelineConfig = {
    name,
    replication_type: replicationType,
    source,
    sinks,
    snapshot,
    ...(query === undefined ? {} : { query }),
  };
  if (map.sinks === undefined) Object.defineProperty(pipeline, SINGLE_SINK, { value: true, enumerable: false });
  return pipeline;
}

const SINGLE_SINK = Symbol.for('nanosync.config.singleSink');

/** True when the pipeline was written with the singular `sink:` (its YAML path is `pipelines[i].sink`). */
export function writtenWithSingleSink(pipeline: PipelineConfig): boolean {
  return (pipeline as unknown as { [SINGLE_SINK]?: boolean })[SINGLE_SINK] === true;
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
  if (connection === undefined || mappings === undefined) return undefined;
  return { name: `${index}:${connection}`, connection, properties, target_mappings: mappings };
}

function readTargetMappings(
  sink: YamlMap,
  sinkPath: PathSegment[],
  tableRefs: TableRef[] | undefined,
  out: Collector,
): TargetMapping[] | undefined {
  const list = sink.target_mappings;
  const path = [...sinkPath, 'target_mappings'];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) {
    out.issue(path, `target_mappings must be a list, found ${describe(list)}`);
    return undefined;
  }
  const before = out.issues.length;
  const mappings: TargetMapping[] = [];
  const known = (tableRefs ?? []).map(formatTableName);
  list.forEach((item, i) => {
    const itemPath = [...path, i];
    const map = readMap(item, itemPath, 'a target mapping', out);
    if (map === undefined) return;
    checkKeys(map, MAPPING_KEYS, itemPath, out, 'a target mapping');
    const tableText = readString(map, 'table', itemPath, out, true);
    if (tableText === undefined) return;
    const parsed = parseTableName(tableText);
    if (!parsed.ok) {
      out.issue([...itemPath, 'table'], parsed.message);
      return;
    }
    const table = formatTableName(parsed.ref);
    if (tableRefs !== undefined && !known.includes(table)) {
      out.issue(
        [...itemPath, 'table'],
        `table ${table} is not one of the pipeline's source tables (${known.join(', ') || 'none'})${didYouMean(table, known)}`,
      );
      return;
    }
    if (mappings.some((m) => m.table === table)) {
      out.issue([...itemPath, 'table'], `table ${table} has more than one target mapping in this sink`);
      return;
    }
    const mapping: TargetMapping = { table, tableRef: parsed.ref };
    if (map.columns !== undefined) {
      const columns = readColumnList(map.columns, [...itemPath, 'columns'], out);
      if (columns !== undefined) mapping.columns = columns;
    }
    if (map.filter !== undefined) {
      const filter = readFilter(map.filter, [...itemPath, 'filter'], out);
      if (filter !== undefined) mapping.filter = filter;
    }
    mappings.push(mapping);
  });
  return out.issues.length > before ? undefined : mappings;
}

function readColumnList(value: unknown, path: PathSegment[], out: Collector): string[] | undefined {
  if (!Array.isArray(value) || value.length === 0) {
    out.issue(path, `columns must be a non-empty list of column names, found ${describe(value)}`);
    return undefined;
  }
  const columns: string[] = [];
  value.forEach((column, i) => {
    if (typeof column !== 'string' || column === '') {
      out.issue([...path, i], `a column name must be a non-empty string, found ${describe(column)}`);
    } else if (columns.includes(column)) {
      out.issue([...path, i], `column "${column}" is listed more than once`);
    } else {
      columns.push(column);
    }
  });
  return columns.length === value.length ? columns : undefined;
}

function readFilter(value: unknown, path: PathSegment[], out: Collector): TargetMappingFilter[] | undefined {
  if (!Array.isArray(value)) {
    out.issue(path, `filter must be a list of { column, op, value }, found ${describe(value)}`);
    return undefined;
  }
  const conditions: TargetMappingFilter[] = [];
  value.forEach((item, i) => {
    const itemPath = [...path, i];
    const map = readMap(item, itemPath, 'a filter condition', out);
    if (map === undefined) return;
    checkKeys(map, FILTER_KEYS, itemPath, out, 'a filter condition');
    const column = readString(map, 'column', itemPath, out, true);
    const op = map.op;
    if (typeof op !== 'string' || !(FILTER_OPS as readonly string[]).includes(op)) {
      const hint = typeof op === 'string' ? didYouMean(op, FILTER_OPS) : '';
      const found = op === undefined ? 'op is required' : `found ${typeof op === 'string' ? `"${op}"` : describe(op)}`;
      const message = `op must be one of ${FILTER_OPS.join(', ')}; ${found}${hint}`;
      if (op === undefined) out.missing(itemPath, 'op', message);
      else out.issue([...itemPath, 'op'], message);
      return;
    }
    const filterOp = op as FilterOp;
    const hasValue = 'value' in map;
    if (filterOp === 'is_null' || filterOp === 'not_null') {
      if (hasValue) out.issue([...itemPath, 'value'], `op ${filterOp} takes no value`, { target: 'key' });
    } else if (!hasValue) {
      out.issue(itemPath, `op ${filterOp} needs a value`);
    } else if ((filterOp === 'in' || filterOp === 'not_in') && !Array.isArray(map.value)) {
      out.issue([...itemPath, 'value'], `op ${filterOp} needs a list value, found ${describe(map.value)}`);
    } else if (filterOp !== 'in' && filterOp !== 'not_in' && (isPlainMap(map.value) || Array.isArray(map.value))) {
      out.issue([...itemPath, 'value'], `op ${filterOp} needs a single value, found ${describe(map.value)}`);
    }
    if (column === undefined) return;
    conditions.push({ column, op: filterOp, ...(hasValue ? { value: map.value } : {}) });
  });
  return conditions.length === value.length ? conditions : undefined;
}

function readSnapshot(
  pipeline: YamlMap,
  pipelinePath: PathSegment[],
  replicationType: ReplicationType,
  out: Collector,
): PipelineConfig['snapshot'] {
  const snapshot = {
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
  return snapshot;
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
