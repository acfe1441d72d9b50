import { ErrorCode } from '../errors.js';
import { hasEnvReference, substituteEnv } from './env.js';
import type { ConfigIssue, PathSegment } from './issues.js';
import { readConnections } from './read-connections.js';
import { readPipelines } from './read-pipelines.js';
import { Collector, checkKeys, isPlainMap, readMap, type YamlMap } from './structure.js';
import type { NanosyncConfig } from './types.js';
import type { Locator } from './yaml-document.js';

/**
 * Config validation, the entry: `${env:…}` references resolved, then the file read section
 * by section. The concerns live in their own files: the shape readers and the issue
 * collector (`structure.ts`), connections (`read-connections.ts`), pipeline semantics
 * (`read-pipelines.ts`, `read-target-mappings.ts`); each connector's properties are checked
 * afterwards, once connectors are resolved (`connectors.ts`).
 */

export { CONNECTION_NAME } from './read-connections.js';
export {
  DEFAULT_SNAPSHOT_CHUNK_BYTES,
  DEFAULT_SNAPSHOT_CHUNK_ROWS,
  DEFAULT_TARGET_ROWS_PER_PARTITION,
  defaultSnapshotConcurrency,
  PIPELINE_NAME,
  resolveWorkerCount,
  writtenWithSingleSink,
} from './read-pipelines.js';

export const TOP_KEYS = ['connections', 'pipelines'];

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

/**
 * Validate a parsed config (plain data, `${env:…}` unresolved). Every problem is
 * collected with its YAML path; the config is returned only when there are none.
 */
export function validateConfigValue(raw: unknown, options: ValidateOptions): ValidationResult {
  const out = new Collector(options.locate, raw);
  const root = resolveEnv(raw, [], options.env, out, options.deferEnv);
  const config = readRoot(root, out);
  const result: ValidationResult = { issues: byPosition(out.issues), warnings: byPosition(out.warnings) };
  if (out.issues.length === 0 && config !== undefined) {
    result.config = {
      ...config,
      configDir: options.configDir,
      ...(options.file === undefined ? {} : { file: options.file }),
      ...(options.locate === undefined ? {} : { locate: options.locate }),
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
