import type { SinkDefinition, SourceDefinition } from '../contract/connector.js';
import type { ConnectorResolver } from '../discovery/resolver.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import { decryptSecret, encryptSecret, isEncryptedSecret, keyedDigest } from '../secrets/cipher.js';
import { dsnHasLiteralPassword, isLiteralSecretValue, isSecretName } from '../secrets/secret-fields.js';
import { type ResolvedConfig, resolvePipelines } from './connectors.js';
import { ConfigError, type ConfigIssue } from './issues.js';
import type { PipelineConfig, SinkErrorPolicy, StoredPipelineDefinition, TargetMapping } from './types.js';
import { validateConfigValue } from './validate.js';

export interface StoredPipeline {
  definition: StoredPipelineDefinition;
  /** Keyed fingerprint of the definition before encryption: equal when the same config is applied again. */
  hash: string;
  replicationType: PipelineConfig['replication_type'];
}

export interface MaterializedPipeline {
  pipeline: PipelineConfig;
  source: { definition: SourceDefinition<unknown>; config: unknown; connection: string };
  sinks: {
    name: string;
    definition: SinkDefinition<unknown>;
    config: unknown;
    mappings: TargetMapping[];
    /** Absent: `fail`. */
    onError?: SinkErrorPolicy;
    /** Absolute (resolved against the config's folder). */
    deadLetterPath?: string;
    /** Absent: the default budget. */
    maxSpillBytes?: number;
  }[];
}

type Node = Record<string, unknown>;

function isNode(value: unknown): value is Node {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** JSON with object keys sorted at every level: the same data always gives the same text. */
export function stableStringify(value: unknown): string {
  if (Array.isArray(value))
    return `[${value.map((item) => (item === undefined ? 'null' : stableStringify(item))).join(',')}]`;
  if (isNode(value)) {
    const entries = Object.keys(value)
      .filter((key) => value[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${stableStringify(value[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * One self-contained stored definition per pipeline: the pipeline's YAML node and the
 * nodes of the connections it uses, as written (`written`: `${env:…}` references kept),
 * with literal secrets encrypted (DSNs with a literal password as a whole; properties named
 * secret by the connector or by their name). The connectors were resolved once, by
 * `resolveConfig`; their secret property names come from there.
 */
export async function toStoredDefinitions(
  resolved: ResolvedConfig,
  options: { secretKey: Buffer; configDir?: string },
): Promise<Map<string, StoredPipeline>> {
  const { config } = resolved;
  const configDir = options.configDir ?? config.configDir;
  const result = new Map<string, StoredPipeline>();
  for (const materialized of resolved.pipelines) {
    const { pipeline } = materialized;
    if (pipeline.written === undefined) {
      throw new NanosyncError(
        ErrorCode.Internal,
        `pipeline "${pipeline.name}" has no YAML node as written: only a config read by parseConfig/loadConfigFile can be stored`,
      );
    }
    const pipelineNode = structuredClone(pipeline.written);
    if (pipelineNode.sinks !== undefined) delete pipelineNode.sink;
    const connections: Record<string, unknown> = {};
    for (const name of [pipeline.source.connection, ...pipeline.sinks.map((s) => s.connection)]) {
      const connection = config.connections.find((c) => c.name === name);
      if (connection?.written === undefined) {
        throw new NanosyncError(
          ErrorCode.Internal,
          `connection "${name}" of pipeline "${pipeline.name}" has no YAML node as written`,
        );
      }
      connections[name] = structuredClone(connection.written);
    }
    const plain: StoredPipelineDefinition = { version: 1, pipeline: pipelineNode, connections, configDir };
    const hash = keyedDigest(stableStringify(plain), options.secretKey);

    const secretNames = secretNamesFor(materialized);
    const definition = structuredClone(plain);
    const encrypt = (value: unknown) => encryptSecret(JSON.stringify(value), options.secretKey);
    for (const [name, node] of Object.entries(definition.connections)) {
      if (!isNode(node)) continue;
      if (typeof node.dsn === 'string' && dsnHasLiteralPassword(node.dsn)) node.dsn = encrypt(node.dsn);
      if (isNode(node.properties)) encryptTree(node.properties, secretNames.connections.get(name) ?? [], encrypt);
    }
    const stored = definition.pipeline as Node;
    if (isNode(stored.source) && isNode(stored.source.properties)) {
      encryptTree(stored.source.properties, secretNames.source, encrypt);
    }
    const sinkNodes = Array.isArray(stored.sinks) ? stored.sinks : [stored.sink];
    sinkNodes.forEach((sink, k) => {
      if (isNode(sink) && isNode(sink.properties)) encryptTree(sink.properties, secretNames.sinks[k] ?? [], encrypt);
    });
    result.set(pipeline.name, { definition, hash, replicationType: pipeline.replication_type });
  }
  return result;
}

function encryptTree(node: Node, secretNames: readonly string[], encrypt: (value: unknown) => string): void {
  for (const [key, value] of Object.entries(node)) {
    if (isSecretName(key, secretNames)) {
      if (isLiteralSecretValue(value)) node[key] = encrypt(value);
    } else if (key === 'dsn' && typeof value === 'string' && dsnHasLiteralPassword(value)) {
      node[key] = encrypt(value);
    } else if (isNode(value)) {
      encryptTree(value, secretNames, encrypt);
    } else if (Array.isArray(value)) {
      for (const item of value) if (isNode(item)) encryptTree(item, secretNames, encrypt);
    }
  }
}

/** The secret property names of a pipeline's connectors: per connection (every role it has here), source, sinks. */
function secretNamesFor(materialized: MaterializedPipeline): {
  connections: Map<string, string[]>;
  source: string[];
  sinks: string[][];
} {
  const connections = new Map<string, string[]>();
  const add = (connectionName: string, names: readonly string[] = []): string[] => {
    connections.set(connectionName, [...new Set([...(connections.get(connectionName) ?? []), ...names])]);
    return [...names];
  };
  const source = add(materialized.source.connection, materialized.source.definition.secretProperties);
  const sinks = materialized.pipeline.sinks.map((sink, k) =>
    add(sink.connection, materialized.sinks[k]?.definition.secretProperties),
  );
  return { connections, source, sinks };
}

/**
 * A copy of `value` with every encrypted secret in it decrypted (anywhere in the tree);
 * `where` names the place in errors (a wrong key names the field that failed).
 */
export function decryptTree(value: unknown, key: Buffer, where: string): unknown {
  if (isEncryptedSecret(value)) return JSON.parse(decryptSecret(value, key, where));
  if (Array.isArray(value)) return value.map((item, i) => decryptTree(item, key, `${where}[${i}]`));
  if (isNode(value)) {
    const copy: Node = {};
    for (const [k, item] of Object.entries(value)) copy[k] = decryptTree(item, key, `${where}.${k}`);
    return copy;
  }
  return value;
}

/**
 * Turn a stored definition back into something the runtime can start: decrypt secrets,
 * resolve `${env:…}` against `env` (now, at run time), validate again, load the connectors
 * and parse their configs. Throws {@link ConfigError} naming the pipeline and the paths.
 */
export async function materializePipeline(
  definition: StoredPipelineDefinition,
  options: { env?: NodeJS.ProcessEnv; secretKey: Buffer; resolve: ConnectorResolver },
): Promise<MaterializedPipeline> {
  const pipelineName = isNode(definition.pipeline) ? String(definition.pipeline.name) : '?';
  const subject = `stored definition of pipeline "${pipelineName}"`;
  const names = Object.keys(definition.connections);
  const decrypted = {
    connections: names.map((name) =>
      decryptTree(definition.connections[name], options.secretKey, `connection "${name}"`),
    ),
    pipelines: [decryptTree(definition.pipeline, options.secretKey, `pipeline "${pipelineName}"`)],
  };
  const renamePaths = (issues: ConfigIssue[]): ConfigIssue[] =>
    issues.map((issue) => ({
      ...issue,
      path: issue.path.replace(
        /^connections\[(\d+)\]/,
        (_, index: string) => `connections[${JSON.stringify(names[Number(index)])}]`,
      ),
    }));

  const validated = validateConfigValue(decrypted, {
    env: options.env ?? process.env,
    configDir: definition.configDir,
  });
  if (validated.config === undefined) throw new ConfigError(renamePaths(validated.issues), { file: subject });
  const resolved = await resolvePipelines(validated.config, options.resolve);
  if (resolved.issues.length > 0) throw new ConfigError(renamePaths(resolved.issues), { file: subject });
  const [materialized] = resolved.pipelines;
  if (materialized === undefined || resolved.pipelines.length !== 1) {
    throw new NanosyncError(ErrorCode.Internal, `${subject} holds ${resolved.pipelines.length} pipelines, not 1`);
  }
  return materialized;
}

/** The secret property names that apply to a stored definition's connectors, for `redactConfig`. */
export async function secretNamesOfDefinition(
  definition: StoredPipelineDefinition,
  resolve: ConnectorResolver,
): Promise<string[]> {
  const names = new Set<string>();
  const pipeline = isNode(definition.pipeline) ? definition.pipeline : {};
  const typeOf = (connection: unknown) => {
    const node = definition.connections[String(connection)];
    return isNode(node) && typeof node.type === 'string' ? node.type : undefined;
  };
  const uses: ['source' | 'sink', unknown][] = [];
  if (isNode(pipeline.source)) uses.push(['source', pipeline.source.connection]);
  const sinks = Array.isArray(pipeline.sinks) ? pipeline.sinks : [pipeline.sink];
  for (const sink of sinks) if (isNode(sink)) uses.push(['sink', sink.connection]);
  for (const [kind, connection] of uses) {
    const type = typeOf(connection);
    if (type === undefined) continue;
    try {
      const found = await resolve(kind, type, definition.configDir);
      for (const name of found.secretProperties ?? []) names.add(name);
    } catch {
      // Unresolvable connector: the default secret names still apply.
    }
  }
  return [...names];
}
