import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError } from '../../src/index.js';
import { processConditions } from '../../src/discovery/package-entry.js';
import { createConnectorResolver, findWorkspaceRoot, loadConfigFile, validateConnectors } from '../../src/host.js';
import { testSinkDefinition } from './config-fixtures.js';

/** A connector package as a third party would publish it: plain ESM, nothing imported from nanosync. */
const thirdPartySink = `
const configSchema = {
  safeParse(input) {
    if (typeof input.endpoint !== 'string') {
      return { success: false, error: { issues: [{ path: ['endpoint'], message: 'endpoint is required (a URL)' }] } };
    }
    if (input.batch_size !== undefined && !Number.isInteger(input.batch_size)) {
      return { success: false, error: { issues: [{ path: ['batch_size'], message: 'batch_size must be an integer' }] } };
    }
    return { success: true, data: { endpoint: input.endpoint, batchSize: input.batch_size ?? 100 } };
  },
};
export default {
  apiVersion: 1,
  kind: 'sink',
  type: 'acme',
  configSchema,
  secretProperties: ['api_passphrase'],
  create(config) {
    return { async open() {}, async write() {}, async close() {} };
  },
};
`;

async function writePackage(
  root: string,
  name: string,
  files: Record<string, string>,
  manifest: Record<string, unknown>,
) {
  const dir = join(root, 'node_modules', name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', type: 'module', ...manifest }));
  for (const [file, text] of Object.entries(files)) {
    await mkdir(join(dir, file, '..'), { recursive: true });
    await writeFile(join(dir, file), text);
  }
}

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ns-discovery-'));
  // ESM-only exports map: found only by import-condition resolution, not by require.resolve.
  await writePackage(
    root,
    'nanosync-sink-acme',
    { 'dist/index.js': thirdPartySink },
    { exports: { '.': { import: './dist/index.js' } } },
  );
  await writePackage(
    root,
    '@acme/nanosync-source-ledger',
    {
      'index.js':
        "export const apiVersion = 1; export const kind = 'source'; export const type = 'ledger';\n" +
        'export const configSchema = { safeParse: (input) => ({ success: true, data: input }) };\n' +
        'export function create() { throw new Error("not started"); }\n',
    },
    { main: 'index.js' },
  );
  await writePackage(
    root,
    'nanosync-sink-broken',
    { 'index.js': "export default { apiVersion: 1, kind: 'sink', type: 'broken' };\n" },
    {},
  );
  await writePackage(
    root,
    'nanosync-sink-future',
    {
      'index.js':
        "export default { apiVersion: 2, kind: 'sink', type: 'future', configSchema: { safeParse() {} }, create() {} };\n",
    },
    {},
  );
  await writePackage(
    root,
    'nanosync-sink-notasink',
    {
      'index.js':
        "export default { apiVersion: 1, kind: 'source', type: 'notasink', configSchema: { safeParse() {} }, create() {} };\n",
    },
    {},
  );
  await writePackage(root, 'nanosync-sink-syntax', { 'index.js': 'export default {\n' }, {});
  await mkdir(join(root, 'local'), { recursive: true });
  await writeFile(join(root, 'local', 'my-sink.mjs'), thirdPartySink.replace("type: 'acme'", "type: 'local'"));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<NanosyncError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NanosyncError);
  return err as NanosyncError;
}

describe('discovery: resolving connectors', () => {
  it('loads a real third-party connector from node_modules next to the config file', async () => {
    const file = join(root, 'pipelines.yaml');
    await writeFile(
      file,
      [
        'connections:',
        '  - name: ledger',
        '    type: "@acme/nanosync-source-ledger"',
        '  - name: acme',
        '    type: acme',
        '    properties:',
        '      endpoint: https://acme.example/ingest',
        'pipelines:',
        '  - name: ledger-to-acme',
        '    source: { connection: ledger, tables: [public.entries] }',
        '    sink:',
        '      connection: acme',
        '      properties: { batch_size: 5.5 }',
        '',
      ].join('\n'),
    );
    const { config } = await loadConfigFile(file, { env: {} });
    const resolve = createConnectorResolver({ fallbackDirs: [] });
    const issues = await validateConnectors(config, { resolve });
    expect(issues).toEqual([
      {
        path: 'pipelines[0].sink.properties.batch_size',
        message: 'batch_size must be an integer',
        line: 13,
        column: 33,
      },
    ]);

    const sink = await resolve('sink', 'acme', root);
    expect(sink).toMatchObject({ apiVersion: 1, kind: 'sink', type: 'acme', secretProperties: ['api_passphrase'] });
    expect(sink.configSchema.safeParse({ endpoint: 'https://x' })).toEqual({
      success: true,
      data: { endpoint: 'https://x', batchSize: 100 },
    });
    const source = await resolve('source', '@acme/nanosync-source-ledger', root);
    expect(source).toMatchObject({ kind: 'source', type: 'ledger' });
  });

  it('finds packages from a folder below the one holding node_modules', async () => {
    const nested = join(root, 'configs', 'prod');
    await mkdir(nested, { recursive: true });
    const resolve = createConnectorResolver();
    expect((await resolve('sink', 'acme', nested)).type).toBe('acme');
  });

  it('loads a ./path connector relative to the config folder', async () => {
    const resolve = createConnectorResolver();
    expect((await resolve('sink', './local/my-sink.mjs', root)).type).toBe('local');
    const missing = await rejection(resolve('sink', './local/nope.mjs', root));
    expect(missing.code).toBe(ErrorCode.ConnectorNotFound);
    expect(missing.message).toContain(join(root, 'local', 'nope.mjs'));
  });

  it('prefers the built-in map for first-party names, and searches fallback folders last', async () => {
    let builtinLoads = 0;
    const resolve = createConnectorResolver({
      builtins: {
        '@nanosync/sink-testq': async () => {
          builtinLoads++;
          return { default: testSinkDefinition };
        },
      },
      fallbackDirs: [root],
    });
    const elsewhere = await mkdtemp(join(tmpdir(), 'ns-elsewhere-'));
    try {
      expect(await resolve('sink', 'testq', elsewhere)).toBe(testSinkDefinition);
      expect(await resolve('sink', 'testq', elsewhere)).toBe(testSinkDefinition);
      expect(builtinLoads).toBe(1);
      expect((await resolve('sink', 'acme', elsewhere)).type).toBe('acme');
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  it('names every candidate, the folders searched and the install command when nothing is found', async () => {
    const resolve = createConnectorResolver({ builtins: {}, fallbackDirs: ['/opt/nanosync-cli'] });
    const err = await rejection(resolve('sink', 'foo', root));
    expect(err.code).toBe(ErrorCode.ConnectorNotFound);
    expect(err.message).toContain('no sink connector found for type "foo"');
    expect(err.message).toContain('"@nanosync/sink-foo", "nanosync-sink-foo"');
    expect(err.message).toContain('the built-in connectors');
    expect(err.message).toContain(join(root, 'node_modules'));
    expect(err.message).toContain('/opt/nanosync-cli/node_modules');
    expect(err.message).toContain('npm i nanosync-sink-foo');
    expect(err.message).toContain('npm i @nanosync/sink-foo');
  });

  it('suggests installing a full package name as given', async () => {
    const err = await rejection(createConnectorResolver()('source', '@acme/nanosync-source-missing', root));
    expect(err.message).toContain('npm i @acme/nanosync-source-missing');
  });

  it('rejects a package without create and configSchema, saying what was expected and found', async () => {
    const err = await rejection(createConnectorResolver()('sink', 'broken', root));
    expect(err.code).toBe(ErrorCode.ConnectorInvalid);
    expect(err.message).toContain('package "nanosync-sink-broken"');
    expect(err.message).toContain('defineSink');
    expect(err.message).toMatch(/found configSchema missing, create missing/);
  });

  it('rejects a connector built for another API version, naming both versions', async () => {
    const err = await rejection(createConnectorResolver()('sink', 'future', root));
    expect(err.code).toBe(ErrorCode.ConnectorInvalid);
    expect(err.message).toMatch(/built for connector API version 2, but this nanosync supports version 1/);
  });

  it('rejects a source connector used as a sink', async () => {
    const err = await rejection(createConnectorResolver()('sink', 'notasink', root));
    expect(err.message).toMatch(/kind "source" \(it is a source connector, used here as a sink\)/);
  });

  it('reports a connector that fails to load', async () => {
    const err = await rejection(createConnectorResolver()('sink', 'syntax', root));
    expect(err.code).toBe(ErrorCode.ConnectorInvalid);
    expect(err.message).toMatch(/connector "nanosync-sink-syntax" failed to load from .*index\.js/);
  });

  it('does not remember a failure: installing the package afterwards works', async () => {
    const resolve = createConnectorResolver();
    await rejection(resolve('sink', 'late', root));
    await writePackage(
      root,
      'nanosync-sink-late',
      { 'index.js': thirdPartySink.replace("type: 'acme'", "type: 'late'") },
      {},
    );
    expect((await resolve('sink', 'late', root)).type).toBe('late');
  });
});

describe('discovery: export conditions and workspaces', () => {
  /** A package exporting its sources under a custom condition and a dist entry that was never built. */
  const sourceOnly = (type: string) => ({
    files: { 'src/index.mjs': thirdPartySink.replace("type: 'acme'", `type: '${type}'`) },
    manifest: { exports: { '.': { '@acme/source': './src/index.mjs', import: './dist/index.js' } } },
  });

  it('reads the conditions node was started with, from its arguments and NODE_OPTIONS', () => {
    expect(processConditions(['--conditions=@nanosync/source', '--import', 'tsx'], undefined)).toEqual([
      '@nanosync/source',
    ]);
    expect(processConditions(['-C', 'a'], '--max-old-space-size=100 --conditions b -C=c')).toEqual(['a', 'b', 'c']);
    expect(processConditions([], undefined)).toEqual([]);
  });

  it('honours an extra export condition, and without it names the condition that would load the package', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ns-conditions-'));
    try {
      const { files, manifest } = sourceOnly('cond');
      await writePackage(dir, 'nanosync-sink-cond', files, manifest);
      const withCondition = createConnectorResolver({ conditions: ['@acme/source'] });
      expect((await withCondition('sink', 'cond', dir)).type).toBe('cond');

      const err = await rejection(createConnectorResolver()('sink', 'cond', dir));
      expect(err.code).toBe(ErrorCode.ConnectorInvalid);
      expect(err.message).toContain('has no ./dist/index.js (is it built?)');
      expect(err.message).toContain('--conditions=@acme/source');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('finds a package of a pnpm workspace by name once its folder exists, with no other edit', async () => {
    const workspace = await mkdtemp(join(tmpdir(), 'ns-workspace-'));
    const elsewhere = await mkdtemp(join(tmpdir(), 'ns-elsewhere-'));
    try {
      await writeFile(join(workspace, 'pnpm-workspace.yaml'), 'packages:\n  - sinks/*\n  - "!sinks/retired"\n');
      const resolve = createConnectorResolver({ workspace, conditions: ['@acme/source'] });
      const before = await rejection(resolve('sink', 'fresh', elsewhere));
      expect(before.code).toBe(ErrorCode.ConnectorNotFound);
      expect(before.message).toContain(`the packages of the workspace at ${workspace}`);

      for (const [folder, type] of [
        ['fresh', 'fresh'],
        ['retired', 'retired'],
      ] as const) {
        const dir = join(workspace, 'sinks', folder);
        const { files, manifest } = sourceOnly(type);
        await mkdir(join(dir, 'src'), { recursive: true });
        await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `nanosync-sink-${type}`, ...manifest }));
        for (const [file, text] of Object.entries(files)) await writeFile(join(dir, file), text);
      }
      expect((await resolve('sink', 'fresh', elsewhere)).type).toBe('fresh');
      // Excluded by the workspace file: not a package of the workspace.
      expect((await rejection(resolve('sink', 'retired', elsewhere))).code).toBe(ErrorCode.ConnectorNotFound);

      expect(findWorkspaceRoot(join(workspace, 'sinks', 'fresh', 'src'))).toBe(workspace);
      // An installed copy is not a checkout, even inside someone's workspace.
      expect(findWorkspaceRoot(join(workspace, 'node_modules', 'nanosync', 'dist'))).toBeUndefined();
    } finally {
      await rm(workspace, { recursive: true, force: true });
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});
