import { resolve as resolvePath } from 'node:path';
import type {
  ConnectorDefinition,
  SinkDefinition,
  SinkTableProblem,
  SourceDefinition,
  TableRef,
} from '../contract/connector.js';
import type { ConnectorKind } from '../discovery/candidates.js';
import type { ConnectorResolver } from '../discovery/resolver.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import { collectSecretStrings, scrubSecrets } from '../secrets/secret-fields.js';
import { ConfigError, type ConfigIssue, formatPath, type PathSegment } from './issues.js';
import { writtenWithSingleSink } from './read-pipelines.js';
import type { MaterializedPipeline } from './stored-definition.js';
import type { ConnectionConfig, NanosyncConfig, PipelineConfig } from './types.js';
import type { Locator } from './yaml-document.js';

/** A connector's config object and where each of its top-level keys was written. */
export interface ConnectorInput {
  value: Record<string, unknown>;
  /** Top-level key → YAML path of the field that supplied it (the pipeline's properties win). */
  origins: Map<string, PathSegment[]>;
  /** Where issues about the object as a whole (or a missing key) are reported. */
  basePath: PathSegment[];
  /** Where a missing key could be set, for the hint. */
  connectionPropertiesPath: PathSegment[];
}

/**
 * `{ dsn?, ...connection.properties, ...pipeline properties }`, the object a connector's
 * `configSchema` validates, with every key's origin.
 */
export function buildConnectorInput(
  connection: ConnectionConfig,
  connectionIndex: number,
  properties: Record<string, unknown>,
  propertiesPath: PathSegment[],
): ConnectorInput {
  const value: Record<string, unknown> = {};
  const origins = new Map<string, PathSegment[]>();
  const connectionPath: PathSegment[] = ['connections', connectionIndex];
  if (connection.dsn !== undefined) {
    value.dsn = connection.dsn;
    origins.set('dsn', [...connectionPath, 'dsn']);
  }
  for (const [key, item] of Object.entries(connection.properties)) {
    value[key] = item;
    origins.set(key, [...connectionPath, 'properties', key]);
  }
  for (const [key, item] of Object.entries(properties)) {
    value[key] = item;
    origins.set(key, [...propertiesPath, key]);
  }
  return { value, origins, basePath: propertiesPath, connectionPropertiesPath: [...connectionPath, 'properties'] };
}

/** A validated config whose connectors are loaded, once, for every pipeline. */
export interface ResolvedConfig {
  config: NanosyncConfig;
  /**
   * One object per pipeline, in the config's order: the pipeline, its source and its sinks,
   * each with the connector definition and the connector's parsed config. This is what the
   * engine runs and what `toStoredDefinitions` stores (secret property names included).
   */
  pipelines: MaterializedPipeline[];
}

/**
 * Resolve the connector of every connection in the role it is used in (each connection and
 * role once), and run each connector's `configSchema` on the object built for each
 * pipeline. Issue paths point at the YAML field that supplied the offending key. The
 * pipelines are returned only when there are no issues.
 */
export async function resolvePipelines(
  config: NanosyncConfig,
  resolve: ConnectorResolver,
): Promise<{ issues: ConfigIssue[]; pipelines: MaterializedPipeline[] }> {
  const locate = config.locate;
  const issues: ConfigIssue[] = [];
  const connectionIndex = new Map(config.connections.map((c, i) => [c.name, i]));

  const definitions = new Map<string, ConnectorDefinition | undefined>();
  const resolveFor = async (kind: ConnectorKind, connectionName: string): Promise<ConnectorDefinition | undefined> => {
    const key = `${kind}:${connectionName}`;
    if (definitions.has(key)) return definitions.get(key);
    const index = connectionIndex.get(connectionName)!;
    const connection = config.connections[index]!;
    let definition: ConnectorDefinition | undefined;
    try {
      definition = await resolve(kind, connection.type, config.configDir);
      if (definition.kind !== kind) {
        throw new NanosyncError(
          ErrorCode.ConnectorInvalid,
          `connector for type "${connection.type}" is a ${definition.kind} connector, but the connection is used as a ${kind}`,
        );
      }
    } catch (err) {
      definition = undefined;
      const message = err instanceof Error ? err.message : String(err);
      issues.push(
        located(
          locate,
          ['connections', index, 'type'],
          `connection "${connectionName}" used as a ${kind}: ${message}`,
          {
            code: NanosyncError.is(err) ? err.code : ErrorCode.ConnectorInvalid,
          },
        ),
      );
    }
    definitions.set(key, definition);
    return definition;
  };

  const pipelines: MaterializedPipeline[] = [];
  for (const [i, pipeline] of config.pipelines.entries()) {
    let complete = true;
    let source: MaterializedPipeline['source'] | undefined;
    const sourceDefinition = await resolveFor('source', pipeline.source.connection);
    if (sourceDefinition !== undefined) {
      const input = inputFor(config, connectionIndex, pipeline.source.connection, pipeline.source.properties, [
        'pipelines',
        i,
        'source',
        'properties',
      ]);
      const parsed = parseConnectorConfig(
        sourceDefinition,
        input,
        locate,
        `source connection "${pipeline.source.connection}"`,
      );
      issues.push(...parsed.issues);
      if (parsed.issues.length === 0) {
        source = {
          definition: sourceDefinition as SourceDefinition<unknown>,
          config: parsed.config,
          connection: pipeline.source.connection,
        };
      }
    }
    const sinks: MaterializedPipeline['sinks'] = [];
    for (const [k, sink] of pipeline.sinks.entries()) {
      const sinkDefinition = await resolveFor('sink', sink.connection);
      if (sinkDefinition === undefined) {
        complete = false;
        continue;
      }
      const input = inputFor(config, connectionIndex, sink.connection, sink.properties, [
        ...sinkPath(pipeline, i, k),
        'properties',
      ]);
      const parsed = parseConnectorConfig(sinkDefinition, input, locate, `sink connection "${sink.connection}"`);
      const asSink = sinkDefinition as SinkDefinition<unknown>;
      if (parsed.issues.length === 0 && asSink.checkTables !== undefined) {
        parsed.issues.push(
          ...checkSinkTables(asSink, parsed.config, pipeline.source.tableRefs, {
            locate,
            input,
            sinkPath: sinkPath(pipeline, i, k),
            role: `sink connection "${sink.connection}"`,
          }),
        );
      }
      issues.push(...parsed.issues);
      if (parsed.issues.length > 0) {
        complete = false;
        continue;
      }
      sinks.push({
        name: sink.name,
        definition: sinkDefinition as SinkDefinition<unknown>,
        config: parsed.config,
        mappings: sink.target_mappings,
        onError: sink.on_error,
        ...(sink.dead_letter_path !== undefined
          ? { deadLetterPath: resolvePath(config.configDir, sink.dead_letter_path) }
          : {}),
        maxSpillBytes: sink.max_spill_bytes,
      });
    }
    if (complete && source !== undefined) pipelines.push({ pipeline, source, sinks });
  }
  return { issues, pipelines: issues.length === 0 ? pipelines : [] };
}

/** The issues {@link resolvePipelines} finds (none: every connector loads and accepts its properties). */
export async function validateConnectors(
  config: NanosyncConfig,
  options: { resolve: ConnectorResolver },
): Promise<ConfigIssue[]> {
  return (await resolvePipelines(config, options.resolve)).issues;
}

/** {@link resolvePipelines}, throwing a {@link ConfigError} (naming the config's file) that lists every issue. */
export async function resolveConfig(config: NanosyncConfig, resolve: ConnectorResolver): Promise<ResolvedConfig> {
  const { issues, pipelines } = await resolvePipelines(config, resolve);
  if (issues.length > 0) throw new ConfigError(issues, config.file === undefined ? {} : { file: config.file });
  return { config, pipelines };
}

/** The sink's own offline check against the pipeline's tables (see `SinkDefinition.checkTables`). */
function checkSinkTables(
  definition: SinkDefinition<unknown>,
  config: unknown,
  tables: readonly TableRef[],
  where: { locate: Locator | undefined; input: ConnectorInput; sinkPath: PathSegment[]; role: string },
): ConfigIssue[] {
  if (tables.length === 0) return [];
  let problems: SinkTableProblem[];
  try {
    problems = definition.checkTables!(config, tables);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return [located(where.locate, where.sinkPath, `${where.role}: the connector's checkTables threw: ${message}`)];
  }
  return problems.map((problem) => {
    const at =
      problem.property === undefined
        ? where.sinkPath
        : (where.input.origins.get(problem.property) ?? [...where.input.basePath, problem.property]);
    return located(where.locate, at, `${where.role}: ${problem.message}`, { code: ErrorCode.ConfigInvalid });
  });
}

/** `pipelines[i].sink` when the pipeline was written with `sink`, `pipelines[i].sinks[k]` otherwise. */
function sinkPath(pipeline: PipelineConfig, i: number, k: number): PathSegment[] {
  return writtenWithSingleSink(pipeline) ? ['pipelines', i, 'sink'] : ['pipelines', i, 'sinks', k];
}

function inputFor(
  config: NanosyncConfig,
  connectionIndex: Map<string, number>,
  connectionName: string,
  properties: Record<string, unknown>,
  propertiesPath: PathSegment[],
): ConnectorInput {
  const index = connectionIndex.get(connectionName)!;
  return buildConnectorInput(config.connections[index]!, index, properties, propertiesPath);
}

function parseConnectorConfig(
  definition: ConnectorDefinition,
  input: ConnectorInput,
  locate: Locator | undefined,
  role: string,
): { config?: unknown; issues: ConfigIssue[] } {
  let result: ReturnType<ConnectorDefinition['configSchema']['safeParse']>;
  const secrets = collectSecretStrings(input.value, definition.secretProperties ?? []);
  try {
    result = definition.configSchema.safeParse(input.value);
  } catch (err) {
    const message = scrubSecrets(err instanceof Error ? err.message : String(err), secrets);
    return { issues: [located(locate, input.basePath, `${role}: the connector's configSchema threw: ${message}`)] };
  }
  if (result.success) return { config: result.data, issues: [] };
  const issues = result.error.issues.flatMap((issue): ConfigIssue[] => {
    // zod reports every unknown key of an object in one issue at the object; split it so
    // each key is reported where it was written (the connection's or the pipeline's properties).
    const unknownKeys = (issue as { code?: unknown; keys?: unknown }).keys;
    if (
      (issue as { code?: unknown }).code === 'unrecognized_keys' &&
      issue.path.length === 0 &&
      Array.isArray(unknownKeys)
    ) {
      return unknownKeys.map((key) => {
        const name = String(key);
        const at = input.origins.get(name) ?? [...input.basePath, name];
        return located(locate, at, `${role}: unknown property "${name}"`);
      });
    }
    const [first, ...rest] = issue.path;
    const message = scrubSecrets(issue.message, secrets);
    const tail = rest.map((s) => (typeof s === 'number' ? s : String(s)));
    if (typeof first === 'string' && input.origins.has(first)) {
      return [located(locate, [...input.origins.get(first)!, ...tail], message)];
    }
    if (first === undefined) return [located(locate, input.basePath, `${role}: ${message}`)];
    const key = String(first);
    const hint = ` (set ${key} under ${formatPath(input.connectionPropertiesPath)} or ${formatPath(input.basePath)})`;
    return [located(locate, [...input.basePath, key, ...tail], `${message}${hint}`)];
  });
  return { issues };
}

/** An issue at `path`, with line:column of the nearest located ancestor. */
function located(
  locate: Locator | undefined,
  path: PathSegment[],
  message: string,
  extra: { code?: string } = {},
): ConfigIssue {
  let position: { line: number; column: number } | undefined;
  for (let n = path.length; n >= 0 && position === undefined && locate !== undefined; n--) {
    position = locate(path.slice(0, n));
  }
  return {
    path: formatPath(path),
    message,
    ...(position === undefined ? {} : { line: position.line, column: position.column }),
    ...(extra.code === undefined ? {} : { code: extra.code }),
  };
}
