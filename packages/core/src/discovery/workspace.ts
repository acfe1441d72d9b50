import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { parse } from 'yaml';

/**
 * Packages of a pnpm workspace, found by name: how a checkout finds connectors that live in
 * its own folders (first-party ones, the examples, a sink being written) without any list
 * to keep. The folders come from `pnpm-workspace.yaml`'s `packages` globs, so a new
 * connector folder under an existing glob is found as soon as it exists.
 */
export interface Workspace {
  root: string;
  /** Package name → its folder. */
  packages: Map<string, string>;
}

/**
 * The pnpm workspace `dir` is part of, or undefined. A folder inside `node_modules` is an
 * installed copy, not a checkout: it never gets a workspace (a CLI installed into someone's
 * monorepo must not pick up that monorepo's packages).
 */
export function findWorkspaceRoot(dir: string): string | undefined {
  const start = resolve(dir);
  if (start.split(sep).includes('node_modules')) return undefined;
  for (let current = start; ; current = dirname(current)) {
    if (existsSync(join(current, 'pnpm-workspace.yaml'))) return current;
    if (dirname(current) === current) return undefined;
  }
}

/**
 * Read a workspace's package folders. Supports the glob forms workspaces use: a folder
 * (`testcontainers`), its children (`connectors/*`) and exclusions (`!connectors/old`).
 */
export function readWorkspace(root: string): Workspace {
  const manifest = parse(readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8')) as { packages?: unknown } | null;
  const patterns = Array.isArray(manifest?.packages)
    ? manifest.packages.filter((p): p is string => typeof p === 'string')
    : [];
  const excluded = new Set(patterns.filter((p) => p.startsWith('!')).map((p) => resolve(root, p.slice(1))));
  const packages = new Map<string, string>();
  for (const pattern of patterns) {
    if (pattern.startsWith('!')) continue;
    for (const dir of expand(root, pattern)) {
      if (excluded.has(dir)) continue;
      const name = packageName(dir);
      if (name !== undefined && !packages.has(name)) packages.set(name, dir);
    }
  }
  return { root, packages };
}

function expand(root: string, pattern: string): string[] {
  const clean = pattern.replace(/\/+$/, '');
  if (!clean.endsWith('/*')) return [resolve(root, clean)];
  const parent = resolve(root, clean.slice(0, -2));
  if (!existsSync(parent)) return [];
  return readdirSync(parent, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && entry.name !== 'node_modules')
    .map((entry) => join(parent, entry.name))
    .sort();
}

function packageName(dir: string): string | undefined {
  try {
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown };
    return typeof manifest.name === 'string' ? manifest.name : undefined;
  } catch {
    return undefined;
  }
}
