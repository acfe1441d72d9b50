import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runNanosync } from '@nanosync/connector-testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectorResolver } from '../../src/connectors.js';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
const cliManifest = JSON.parse(readFileSync(join(REPO_ROOT, 'apps/cli/package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

/** Every connector package in the checkout, read from the folders (no list kept here either). */
function workspaceConnectors(): { name: string; kind: 'source' | 'sink'; type: string }[] {
  const found: { name: string; kind: 'source' | 'sink'; type: string }[] = [];
  for (const parent of ['connectors', 'examples']) {
    for (const folder of readdirSync(join(REPO_ROOT, parent))) {
      const { name } = JSON.parse(readFileSync(join(REPO_ROOT, parent, folder, 'package.json'), 'utf8')) as {
        name: string;
      };
      const match = /^(?:@nanosync\/|nanosync-)(source|sink)-(.+)$/.exec(name);
      if (match) found.push({ name, kind: match[1] as 'source' | 'sink', type: match[2]! });
    }
  }
  return found;
}

let elsewhere: string;
beforeAll(async () => {
  // A config folder with no node_modules: nothing can come from the config's side.
  elsewhere = await mkdtemp(join(tmpdir(), 'ns-cli-discovery-'));
});
afterAll(async () => {
  await rm(elsewhere, { recursive: true, force: true });
});

describe('the CLI finds connectors without a list of its own', () => {
  it('the checkout has the connectors this test expects, the example sink among them and not a CLI dependency', () => {
    const names = workspaceConnectors().map((c) => c.name);
    expect(names).toEqual(
      expect.arrayContaining([
        '@nanosync/source-postgres',
        '@nanosync/source-sqlserver',
        '@nanosync/sink-kafka',
        '@nanosync/sink-file',
        '@nanosync/sink-bigquery',
        'nanosync-sink-sqlite',
      ]),
    );
    expect(Object.keys(cliManifest.dependencies)).not.toContain('nanosync-sink-sqlite');
    expect(readFileSync(join(REPO_ROOT, 'apps/cli/src/connectors.ts'), 'utf8')).not.toMatch(/sink-|source-/);
  });

  it.each(workspaceConnectors())('type $type as a $kind resolves to $name by its short name', async (connector) => {
    const definition = await connectorResolver()(connector.kind, connector.type, elsewhere);
    expect(definition.kind).toBe(connector.kind);
    expect(definition.type).toBe(connector.type);
  });

  // Two CLI processes started from the TypeScript sources: generous time on a loaded machine.
  it(
    '`nanosync validate` accepts a config whose sink is the example package, found by `type: sqlite`',
    {
      timeout: 120_000,
    },
    async () => {
      const config = join(elsewhere, 'nanosync.yaml');
      await writeFile(
        config,
        `connections:
  - name: pg
    type: postgres
    dsn: postgres://app@127.0.0.1:5432/shop
  - name: local
    type: sqlite
    properties:
      path: ./replica.sqlite
pipelines:
  - name: orders
    source:
      connection: pg
      tables: [public.orders]
    sink:
      connection: local
`,
      );
      const result = await runNanosync(['validate', '--file', config], { cwd: elsewhere });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);

      // The same file with a property the example sink does not know: its own schema ran.
      await writeFile(config, readFileSync(config, 'utf8').replace('path:', 'pathh:'));
      const bad = await runNanosync(['validate', '--file', config], { cwd: elsewhere });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('connections[1].properties.pathh');
    },
  );
});
