import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
const RECORDER = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/record-imports.mjs');
const HEAVY = ['node:sqlite', 'prom-client', 'yaml'];

/** The specifiers a fresh Node process resolves while importing `entry` from the sources. */
function specifiersLoadedBy(entry: string): string[] {
  const out = execFileSync(
    process.execPath,
    [
      '--conditions=@nanosync/source',
      '--import',
      'tsx',
      '--import',
      RECORDER,
      '--input-type=module',
      '-e',
      `await import(${JSON.stringify(entry)});`,
    ],
    { cwd: join(REPO_ROOT, 'packages/core'), encoding: 'utf8' },
  );
  return JSON.parse(out) as string[];
}

describe('entry points', () => {
  it('@nanosync/core (the connector API) loads no SQLite, Prometheus or YAML', () => {
    const loaded = specifiersLoadedBy('@nanosync/core');
    expect(loaded.some((s) => s.includes('model'))).toBe(true);
    expect(loaded.filter((s) => HEAVY.includes(s))).toEqual([]);
  });

  it('@nanosync/core/host does load them (so the check above can see them)', () => {
    const loaded = specifiersLoadedBy('@nanosync/core/host');
    expect(HEAVY.filter((s) => !loaded.includes(s))).toEqual([]);
  });
});
