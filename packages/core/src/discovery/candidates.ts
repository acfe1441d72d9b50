import { isAbsolute } from 'node:path';

export type ConnectorKind = 'source' | 'sink';

/** A `type` that points at a file or folder (`./x`, `../x`, `/abs/x`), resolved from the config file's folder. */
export function isPathType(type: string): boolean {
  return /^\.\.?([/\\]|$)/.test(type) || isAbsolute(type);
}

/** A `type` that is already a package name: scoped, containing a `/`, or following the `nanosync-` convention. */
export function isPackageType(type: string): boolean {
  return !isPathType(type) && (type.startsWith('@') || type.includes('/') || type.startsWith('nanosync-'));
}

/**
 * The package names tried, in order, for a connection `type` used as `kind`.
 *
 * A short name is looked up first under our scope, then under the third-party
 * convention: `postgres` as a source → `@nanosync/source-postgres`, then
 * `nanosync-source-postgres`. Scoped third-party packages cannot be guessed, so a
 * package name (`@acme/nanosync-sink-x`, `nanosync-sink-x`) or a path is used as given.
 */
export function connectorCandidates(kind: ConnectorKind, type: string): string[] {
  if (isPathType(type) || isPackageType(type)) return [type];
  return [`@nanosync/${kind}-${type}`, `nanosync-${kind}-${type}`];
}

/** The npm package name in a specifier (`@a/b/sub` → `@a/b`, `a/sub` → `a`). */
export function packageNameOf(specifier: string): { name: string; subpath: string } {
  const parts = specifier.split('/');
  const count = specifier.startsWith('@') ? 2 : 1;
  const name = parts.slice(0, count).join('/');
  const rest = parts.slice(count).join('/');
  return { name, subpath: rest === '' ? '.' : `./${rest}` };
}
