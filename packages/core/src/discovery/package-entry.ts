import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { ErrorCode, NanosyncError } from '../errors.js';
import { packageNameOf } from './candidates.js';

/** Conditions Node applies to `import()`, in the order we accept them. */
const IMPORT_CONDITIONS = new Set(['import', 'node', 'module-sync', 'default']);

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
export function findPackage(specifier: string, fromDir: string): FoundPackage | undefined {
  const { name, subpath } = packageNameOf(specifier);
  for (const folder of nodeModulesFolders(name, fromDir)) {
    const packageDir = join(folder, name);
    if (!existsSync(join(packageDir, 'package.json'))) continue;
    return { packageDir, entry: packageEntry(packageDir, subpath, specifier) };
  }
  return undefined;
}

/** The file to load for a package folder (or a plain folder with an index.js). */
export function packageEntry(packageDir: string, subpath: string, label: string): string {
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
    const target = resolveExports(manifest.exports, subpath);
    if (typeof target !== 'string') {
      throw new NanosyncError(
        ErrorCode.ConnectorInvalid,
        `package "${label}" at ${packageDir} does not export "${subpath}" for import(): its package.json "exports" needs a "${subpath}" entry with an "import" or "default" condition`,
      );
    }
    return join(packageDir, target);
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

function resolveExports(exportsField: unknown, subpath: string): string | undefined {
  const isSubpathMap =
    typeof exportsField === 'object' &&
    exportsField !== null &&
    !Array.isArray(exportsField) &&
    Object.keys(exportsField).some((key) => key.startsWith('.'));
  const target = isSubpathMap
    ? (exportsField as Record<string, unknown>)[subpath]
    : subpath === '.'
      ? exportsField
      : undefined;
  return resolveTarget(target);
}

function resolveTarget(target: unknown): string | undefined {
  if (typeof target === 'string') return target.startsWith('./') ? target : undefined;
  if (Array.isArray(target)) {
    for (const item of target) {
      const found = resolveTarget(item);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (typeof target === 'object' && target !== null) {
    for (const [condition, value] of Object.entries(target)) {
      if (!IMPORT_CONDITIONS.has(condition)) continue;
      const found = resolveTarget(value);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}
