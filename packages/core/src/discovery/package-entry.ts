import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { ErrorCode, NanosyncError } from '../errors.js';
import { packageNameOf } from './candidates.js';

/** Conditions Node applies to every `import()`. */
const IMPORT_CONDITIONS = ['import', 'node', 'module-sync', 'default'];

/**
 * The extra export conditions this process was started with (`node --conditions=x` or
 * `-C x`, on the command line or in NODE_OPTIONS): Node's own `import()` honours them, so
 * discovery does too. The repository runs from its TypeScript sources this way
 * (`--conditions=@nanosync/source`).
 */
export function processConditions(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string | undefined = process.env.NODE_OPTIONS,
): string[] {
  const args = [...execArgv, ...(nodeOptions ?? '').split(/\s+/).filter((a) => a !== '')];
  const found: string[] = [];
  for (const [i, arg] of args.entries()) {
    const inline = /^(?:--conditions|-C)=(.+)$/.exec(arg);
    if (inline) found.push(inline[1]!);
    else if ((arg === '--conditions' || arg === '-C') && args[i + 1] !== undefined) found.push(args[i + 1]!);
  }
  return found;
}

/** The conditions an `exports` map is matched against: Node's import set plus `extra`. */
export function importConditions(extra: readonly string[] = []): ReadonlySet<string> {
  return new Set([...IMPORT_CONDITIONS, ...extra]);
}

export interface FoundPackage {
  packageDir: string;
  /** The file `import()` should load. */
  entry: string;
}

/**
 * The `node_modules` folders Node would search for `name` starting from `fromDir`
 * (every ancestor's node_modules, then the global folders).
 */
export function nodeModulesFolders(name: string, fromDir: string): string[] {
  const require = createRequire(join(resolve(fromDir), 'noop.js'));
  return require.resolve.paths(name) ?? [];
}

/**
 * Find a package the way `import()` from a file in `fromDir` would, honouring the
 * `exports` map with import conditions. `createRequire().resolve` alone is not enough:
 * it applies `require` conditions and so misses ESM-only packages.
 */
export function findPackage(
  specifier: string,
  fromDir: string,
  conditions: ReadonlySet<string> = importConditions(processConditions()),
): FoundPackage | undefined {
  const { name, subpath } = packageNameOf(specifier);
  for (const folder of nodeModulesFolders(name, fromDir)) {
    const packageDir = join(folder, name);
    if (!existsSync(join(packageDir, 'package.json'))) continue;
    return { packageDir, entry: packageEntry(packageDir, subpath, specifier, conditions) };
  }
  return undefined;
}

/**
 * The file to load for a package folder (or a plain folder with an index.js), with
 * symbolic links resolved the way Node resolves them (a workspace package linked into
 * `node_modules` is loaded once, from its real folder).
 */
export function packageEntry(
  packageDir: string,
  subpath: string,
  label: string,
  conditions: ReadonlySet<string> = importConditions(processConditions()),
): string {
  const entry = unresolvedEntry(packageDir, subpath, label, conditions);
  return existsSync(entry) ? realpathSync(entry) : entry;
}

function unresolvedEntry(packageDir: string, subpath: string, label: string, conditions: ReadonlySet<string>): string {
  const manifestFile = join(packageDir, 'package.json');
  let manifest: { exports?: unknown; main?: unknown } = {};
  if (existsSync(manifestFile)) {
    try {
      manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
    } catch (err) {
      throw new NanosyncError(
        ErrorCode.ConnectorInvalid,
        `package "${label}" has an unreadable package.json at ${manifestFile}`,
        {
          cause: err,
        },
      );
    }
  }
  if (manifest.exports !== undefined && manifest.exports !== null) {
    const target = resolveExports(manifest.exports, subpath, conditions);
    if (typeof target !== 'string') {
      throw new NanosyncError(
        ErrorCode.ConnectorInvalid,
        `package "${label}" at ${packageDir} does not export "${subpath}" for import(): its package.json "exports" needs a "${subpath}" entry with an "import" or "default" condition`,
      );
    }
    const file = join(packageDir, target);
    const offered = existsSync(file)
      ? []
      : conditionTargets(manifest.exports, subpath).filter((c) => !conditions.has(c));
    if (offered.length > 0) {
      // Typically an unbuilt workspace package whose sources are exported under a condition
      // this process was not started with.
      throw new NanosyncError(
        ErrorCode.ConnectorInvalid,
        `package "${label}" at ${packageDir} has no ${target} (is it built?); it also exports "${subpath}" under the condition ${offered.map((c) => `"${c}"`).join(', ')}, which this process was not started with: build the package, or run node with --conditions=${offered[0]}`,
      );
    }
    return file;
  }
  if (subpath !== '.') return withExtension(join(packageDir, subpath));
  const main = typeof manifest.main === 'string' ? manifest.main : 'index.js';
  return withExtension(join(packageDir, main));
}

function withExtension(file: string): string {
  for (const candidate of [file, `${file}.js`, `${file}.mjs`, join(file, 'index.js')]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return file;
}

/** The non-import conditions the subpath's entry of an `exports` map offers (for a hint). */
function conditionTargets(exportsField: unknown, subpath: string): string[] {
  const target = subpathTarget(exportsField, subpath);
  if (typeof target !== 'object' || target === null || Array.isArray(target)) return [];
  return Object.keys(target).filter((c) => !IMPORT_CONDITIONS.includes(c) && c !== 'types' && c !== 'require');
}

function subpathTarget(exportsField: unknown, subpath: string): unknown {
  const isSubpathMap =
    typeof exportsField === 'object' &&
    exportsField !== null &&
    !Array.isArray(exportsField) &&
    Object.keys(exportsField).some((key) => key.startsWith('.'));
  return isSubpathMap ? (exportsField as Record<string, unknown>)[subpath] : subpath === '.' ? exportsField : undefined;
}

function resolveExports(exportsField: unknown, subpath: string, conditions: ReadonlySet<string>): string | undefined {
  return resolveTarget(subpathTarget(exportsField, subpath), conditions);
}

/** Node's rule: the first key of a conditions object that is active wins, in the map's order. */
function resolveTarget(target: unknown, conditions: ReadonlySet<string>): string | undefined {
  if (typeof target === 'string') return target.startsWith('./') ? target : undefined;
  if (Array.isArray(target)) {
    for (const item of target) {
      const found = resolveTarget(item, conditions);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (typeof target === 'object' && target !== null) {
    for (const [condition, value] of Object.entries(target)) {
      if (!conditions.has(condition)) continue;
      const found = resolveTarget(value, conditions);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}
