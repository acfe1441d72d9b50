import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli, startServing } from './cli-process.js';
import { CliTestContext, LITERAL_SECRET, uniqueName } from './fixtures.js';

const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-cli-bad-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the server refuses to start with one clear line and exit code 2, creating nothing', () => {
  it('when the port is in use', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const result = await runCli([
        'serve',
        '--listen',
        `127.0.0.1:${port}`,
        '--state',
        join(dir, 'fresh', 'state.db'),
      ]);
      expect(result.code).toBe(2);
      expect(lines(result.stderr)).toHaveLength(1);
      expect(result.stderr).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}.*already in use`));
      await expect(stat(join(dir, 'fresh'))).rejects.toThrow(/ENOENT/);
    } finally {
      blocker.close();
    }
  });

  it('when the state folder cannot be created', async () => {
    await writeFile(join(dir, 'a-file'), 'not a folder');
    const result = await runCli([
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--state',
      join(dir, 'a-file', 'sub', 'state.db'),
    ]);
    expect(result.code).toBe(2);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(/state folder .*a-file\/sub/);
    expect(result.stdout).toBe('');
  });
});

describe('clients', () => {
  it('a wrong token is one line and exit code 2', async () => {
    const { proc, server } = await startServing(['serve', '--state', join(dir, 'state.db')]);
    await using _server = proc;
    const result = await runCli(['list', 'pipelines', '--server', server], {
      env: { NANOSYNC_TOKEN: 'definitely-wrong' },
    });
    expect(result.code).toBe(2);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(/rejected the admin token/);
    const ok = await runCli(['list', 'pipelines', '--server', server, '--state', join(dir, 'state.db')]);
    expect(ok.code, ok.stderr).toBe(0);
  });
});

describe('config errors are reported before anything is created on the source', () => {
  it('run: an unknown source property exits 2 naming the YAML path; no slot, publication or state', async () => {
    await using ctx = await CliTestContext.create(5);
    const config = await ctx.writeConfig('bad.yaml', {
      pipeline: uniqueName('cli_bad'),
      sourceProperties: '        slot_nmae: typo',
    });
    const result = await runCli(['run', '--file', config, '--state', ctx.stateFile, '--listen', '127.0.0.1:0']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/pipelines\[0\]\.source\.properties.*slot_nmae/);
    expect(result.stderr + result.stdout).not.toContain(LITERAL_SECRET);
    expect(await ctx.slotsAndPublications()).toEqual({ slots: [], publications: [] });
    await expect(stat(ctx.stateFile)).rejects.toThrow(/ENOENT/);
  });

  it('apply: an invalid config is not sent to the server', async () => {
    await using ctx = await CliTestContext.create(5);
    const name = uniqueName('cli_bad');
    const config = await ctx.writeConfig('bad.yaml', { pipeline: name, replicationType: 'cdc_sometimes' });
    const { proc, server } = await startServing(['serve', '--state', ctx.stateFile]);
    await using _server = proc;
    const result = await runCli(['apply', '--file', config, '--server', server, '--state', ctx.stateFile]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/pipelines\[0\]\.replication_type/);
    const listed = await runCli(['list', 'pipelines', '--server', server, '--state', ctx.stateFile]);
    expect(listed.stdout).not.toContain(name);
    expect(await ctx.slotsAndPublications()).toEqual({ slots: [], publications: [] });
  });

  it('apply refuses a table that does not exist, naming it, and nothing is created', async () => {
    await using ctx = await CliTestContext.create(5);
    const name = uniqueName('cli_notable');
    const config = await ctx.writeConfig('pipelines.yaml', { pipeline: name, tables: ['public.ordrs'] });
    const { proc, server } = await startServing(['serve', '--state', ctx.stateFile]);
    await using _server = proc;
    const applied = await runCli(['apply', '--file', config, '--server', server, '--state', ctx.stateFile]);
    expect(applied.code).toBe(1);
    expect(applied.stdout + applied.stderr).toMatch(/"public"\."ordrs" does not exist/);
    expect(applied.stdout + applied.stderr).not.toContain(LITERAL_SECRET);
    const listed = (await runCli(['list', 'pipelines', '--server', server, '--state', ctx.stateFile])).stdout;
    expect(listed).not.toMatch(new RegExp(`^${name}\\s`, 'm'));
    expect(await ctx.slotsAndPublications()).toMatchObject({ slots: [], publications: [] });
  });
});
