import type { ConnectorDefinition, SinkDefinition, SourceDefinition } from '../contract/connector.js';
import type { ConnectorResolver } from '../discovery/resolver.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import { decryptSecret, encryptSecret, isEncryptedSecret, keyedDigest } from '../secrets/cipher.js';
import { dsnHasLiteralPassword, isLiteralSecretValue, isSecretName } from '../secrets/secret-fields.js';
import { checkConnectors } from './connectors.js';
import { ConfigError, type ConfigIssue } from './issues.js';
import type { NanosyncConfig, PipelineConfig, StoredPipelineDefinition, TargetMapping } from './types.js';
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
  sinks: { name: string; definition: SinkDefinition<unknown>; config: unknown; mappings: TargetMapping[] }[];
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
 * nodes of the connections it uses, with `${env:…}` references kept as written and
 * literal secrets encrypted (DSNs with a literal password as a whole; properties named
 * secret by the connector or by their name). `config` must be the validated form of
 * `raw` (from `loadConfigFile`).
 */
export async function toStoredDefinitions(
  raw: unknown,
  config: NanosyncConfig,
  options: { secretKey: Buffer; resolve: ConnectorResolver; configDir?: string },
): Promise<Map<string, StoredPipeline>> {
  const configDir = options.configDir ?? config.configDir;
  const rawRoot = raw as { connections?: unknown[]; pipelines?: unknown[] };
  const rawConnections = new Map<string, Node>();
  for (const node of rawRoot.connections ?? []) if (isNode(node)) rawConnections.set(String(node.name), node);

  const result = new Map<string, StoredPipeline>();
  for (const [i, pipeline] of config.pipelines.entries()) {
    const rawPipeline = rawRoot.pipelines?.[i];
    if (!isNode(rawPipeline) || rawPipeline.name !== pipeline.name) {
      throw new NanosyncError(ErrorCode.Internal, `raw config does not match the validated config at pipelines[${i}]`);
    }
    const pipelineNode = structuredClone(rawPipeline);
    if (pipelineNode.sinks !== undefined) delete pipelineNode.sink;
    const connections: Record<string, unknown> = {};
    for (const name of [pipeline.source.connection, ...pipeline.sinks.map((s) => s.connection)]) {
      connections[name] = structuredClone(rawConnections.get(name));
    }
    const plain: StoredPipelineDefinition = { version: 1, pipeline: pipelineNode, connections, configDir };
    const hash = keyedDigest(stableStringify(plain), options.secretKey);

    const secretNames = await secretNamesFor(pipeline, config, options.resolve);
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

async function secretNamesFor(
  pipeline: PipelineConfig,
  config: NanosyncConfig,
  resolve: ConnectorResolver,
): Promise<{ connections: Map<string, string[]>; source: string[]; sinks: string[][] }> {
  const connections = new Map<string, string[]>();
  const lookup = async (kind: 'source' | 'sink', connectionName: string): Promise<string[]> => {
    const connection = config.connections.find((c) => c.name === connectionName)!;
    const definition: ConnectorDefinition = await resolve(kind, connection.type, config.configDir);
    const names = [...(definition.secretProperties ?? [])];
    connections.set(connectionName, [...new Set([...(connections.get(connectionName) ?? []), ...names])]);
    return names;
  };
  const source = await lookup('source', pipeline.source.connection);
  const sinks: string[][] = [];
  for (const sink of pipeline.sinks) sinks.push(await lookup('sink', sink.connection));
  return { connections, source, sinks };
}

function decryptTree(value: unknown, key: Buffer, where: string): unknown {
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
  const config = validated.config;
  const checked = await checkConnectors(config, options.resolve);
  if (checked.issues.length > 0) throw new ConfigError(renamePaths(checked.issues), { file: subject });

  const pipeline = config.pipelines[0]!;
  const connectors = checked.pipelines[0]!;
  return {
    pipeline,
    source: { ...connectors.source!, connection: pipeline.source.connection },
    sinks: pipeline.sinks.map((sink, k) => ({
      name: sink.name,
      definition: connectors.sinks[k]!.definition,
      config: connectors.sinks[k]!.config,
      mappings: sink.target_mappings,
    })),
  };
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
