import { existsSync, statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CONNECTOR_API_VERSION, type ConnectorDefinition } from '../contract/connector.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import { type ConnectorKind, connectorCandidates, isPackageType, isPathType, packageNameOf } from './candidates.js';
import { findPackage, importConditions, nodeModulesFolders, packageEntry, processConditions } from './package-entry.js';
import { readWorkspace } from './workspace.js';

/**
 * Finds the connector definition for a connection `type` used as `kind`, resolving
 * packages from `fromDir` (the config file's folder). Rejects with ConnectorNotFound
 * or ConnectorInvalid.
 */
export type ConnectorResolver = (kind: ConnectorKind, type: string, fromDir: string) => Promise<ConnectorDefinition>;

export interface ConnectorResolverOptions {
  /**
   * Connectors a host embeds, by package name, as lazy imports
   * (`{ '@nanosync/sink-memory': async () => ({ default: memorySink }) }`); checked before
   * anything on disk. For embedding hosts and tests: the CLI has none, it finds its own
   * connectors like any other package.
   */
  builtins?: Record<string, () => Promise<unknown>>;
  /** Folders searched after the config's folder, typically the CLI's own install. */
  fallbackDirs?: string[];
  /**
   * A pnpm workspace root whose packages are found by name, after every `node_modules`
   * folder (see `findWorkspaceRoot`): how a checkout runs connectors that live in it.
   */
  workspace?: string;
  /**
   * Export conditions matched in packages' `exports` maps besides Node's import ones and
   * those this process was started with (`--conditions`); e.g. `@nanosync/source` for a host
   * running from TypeScript sources.
   */
  conditions?: string[];
}

/**
 * Resolution order for each candidate name: the `builtins` map, then `node_modules`
 * upwards from the config's folder, then from each fallback folder, then the workspace's
 * packages. Successful loads are cached; failures are not, so installing the package and
 * retrying works.
 */
export function createConnectorResolver(options: ConnectorResolverOptions = {}): ConnectorResolver {
  const cache = new Map<string, Promise<ConnectorDefinition>>();
  return (kind, type, fromDir) => {
    const key = `${kind}\u0000${type}\u0000${fromDir}`;
    const cached = cache.get(key);
    if (cached !== undefined) return cached;
    const loading = resolveConnector(kind, type, fromDir, options);
    cache.set(key, loading);
    loading.catch(() => cache.delete(key));
    return loading;
  };
}

async function resolveConnector(
  kind: ConnectorKind,
  type: string,
  fromDir: string,
  options: ConnectorResolverOptions,
): Promise<ConnectorDefinition> {
  const conditions = importConditions([...processConditions(), ...(options.conditions ?? [])]);
  if (isPathType(type)) return loadPath(kind, type, fromDir, conditions);
  const candidates = connectorCandidates(kind, type);
  const dirs = [fromDir, ...(options.fallbackDirs ?? [])];
  const searched: string[] = [];
  for (const candidate of candidates) {
    const builtin = options.builtins?.[candidate];
    if (builtin !== undefined) {
      let loaded: unknown;
      try {
        loaded = await builtin();
      } catch (err) {
        throw loadFailure(candidate, 'the built-in connectors', err);
      }
      return checkDefinition(loaded, kind, `built-in connector "${candidate}"`);
    }
    for (const dir of dirs) {
      const found = findPackage(candidate, dir, conditions);
      if (found === undefined) {
        for (const folder of nodeModulesFolders(packageNameOf(candidate).name, dir)) {
          if (!searched.includes(folder)) searched.push(folder);
        }
        continue;
      }
      return importAndCheck(found.entry, kind, `package "${candidate}" (${found.entry})`, candidate);
    }
  }
  if (options.workspace !== undefined) {
    const workspace = readWorkspace(options.workspace);
    for (const candidate of candidates) {
      const { name, subpath } = packageNameOf(candidate);
      const packageDir = workspace.packages.get(name);
      if (packageDir === undefined) continue;
      const entry = packageEntry(packageDir, subpath, candidate, conditions);
      return importAndCheck(entry, kind, `workspace package "${candidate}" (${entry})`, candidate);
    }
    searched.push(`the packages of the workspace at ${options.workspace}`);
  }
  throw notFound(kind, type, fromDir, candidates, searched, options.builtins !== undefined);
}

async function loadPath(
  kind: ConnectorKind,
  type: string,
  fromDir: string,
  conditions: ReadonlySet<string>,
): Promise<ConnectorDefinition> {
  const target = resolvePath(fromDir, type);
  if (!existsSync(target)) {
    throw new NanosyncError(
      ErrorCode.ConnectorNotFound,
      `no ${kind} connector at "${type}": ${target} does not exist (paths are relative to the config file's folder, ${fromDir})`,
    );
  }
  const entry = statSync(target).isDirectory() ? packageEntry(target, '.', type, conditions) : target;
  return importAndCheck(entry, kind, `connector "${type}" (${entry})`, type);
}

async function importAndCheck(
  entry: string,
  kind: ConnectorKind,
  label: string,
  name: string,
): Promise<ConnectorDefinition> {
  let loaded: unknown;
  try {
    loaded = await import(pathToFileURL(entry).href);
  } catch (err) {
    throw loadFailure(name, entry, err);
  }
  return checkDefinition(loaded, kind, label);
}

function loadFailure(name: string, where: string, err: unknown): NanosyncError {
  const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0];
  return new NanosyncError(ErrorCode.ConnectorInvalid, `connector "${name}" failed to load from ${where}: ${reason}`, {
    cause: err,
  });
}

function notFound(
  kind: ConnectorKind,
  type: string,
  fromDir: string,
  candidates: string[],
  searched: string[],
  hadBuiltins: boolean,
): NanosyncError {
  const where = [hadBuiltins ? 'the built-in connectors' : undefined, ...searched].filter((w) => w !== undefined);
  let install: string;
  if (isPackageType(type)) {
    install = `npm i ${packageNameOf(type).name}`;
  } else {
    install = `npm i nanosync-${kind}-${type} (a third-party connector) or npm i @nanosync/${kind}-${type} (a first-party one)`;
  }
  return new NanosyncError(
    ErrorCode.ConnectorNotFound,
    `no ${kind} connector found for type "${type}". Tried ${candidates.map((c) => `"${c}"`).join(', ')} in ${where.join(', ')}. ` +
      `Install it in the config file's folder (${fromDir}): ${install}`,
    { details: { kind, type } },
  );
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (typeof value === 'string') return `"${value}"`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

/**
 * Check that a loaded module is a connector definition of the right kind. Accepts the
 * default export, the module itself (named exports), or a CommonJS module whose
 * `module.exports.default` holds it.
 */
export function checkDefinition(loaded: unknown, kind: ConnectorKind, label: string): ConnectorDefinition {
  let definition: unknown = loaded;
  for (let depth = 0; depth < 2; depth++) {
    if (typeof definition !== 'object' || definition === null) break;
    const inner = (definition as Record<string, unknown>).default;
    if (typeof inner !== 'object' || inner === null) break;
    definition = inner;
  }
  const define = kind === 'source' ? 'defineSource' : 'defineSink';
  const expected =
    `expected the default export to be ${define}({ … }) from @nanosync/core: an object with apiVersion ${CONNECTOR_API_VERSION}, ` +
    `kind "${kind}", type (a string), configSchema (with safeParse()) and create()`;
  if (typeof definition !== 'object' || definition === null) {
    throw new NanosyncError(
      ErrorCode.ConnectorInvalid,
      `${label} is not a nanosync ${kind} connector: ${expected}; found ${describeValue(definition)}`,
    );
  }
  const d = definition as Record<string, unknown>;
  if (typeof d.apiVersion === 'number' && d.apiVersion !== CONNECTOR_API_VERSION) {
    throw new NanosyncError(
      ErrorCode.ConnectorInvalid,
      `${label} is built for connector API version ${d.apiVersion}, but this nanosync supports version ${CONNECTOR_API_VERSION}: ` +
        `install a release of the connector made for API version ${CONNECTOR_API_VERSION}, or a nanosync that supports version ${d.apiVersion}`,
    );
  }
  const found: string[] = [];
  if (d.apiVersion !== CONNECTOR_API_VERSION) found.push(`apiVersion ${describeValue(d.apiVersion)}`);
  if (d.kind !== kind) {
    found.push(
      d.kind === 'source' || d.kind === 'sink'
        ? `kind "${d.kind}" (it is a ${d.kind} connector, used here as a ${kind})`
        : `kind ${describeValue(d.kind)}`,
    );
  }
  if (typeof d.type !== 'string' || d.type === '') found.push(`type ${describeValue(d.type)}`);
  const schema = d.configSchema as { safeParse?: unknown } | undefined;
  if (typeof schema !== 'object' || schema === null || typeof schema.safeParse !== 'function') {
    found.push(`configSchema ${schema === undefined ? 'missing' : 'without safeParse()'}`);
  }
  if (typeof d.create !== 'function') found.push(`create ${describeValue(d.create)}`);
  if (
    d.secretProperties !== undefined &&
    !(Array.isArray(d.secretProperties) && d.secretProperties.every((p) => typeof p === 'string'))
  ) {
    found.push('secretProperties that is not a list of strings');
  }
  if (found.length > 0) {
    throw new NanosyncError(
      ErrorCode.ConnectorInvalid,
      `${label} is not a valid nanosync ${kind} connector: ${expected}; found ${found.join(', ')}`,
    );
  }
  return definition as ConnectorDefinition;
}
