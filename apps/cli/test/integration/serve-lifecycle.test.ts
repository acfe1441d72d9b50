import { join } from 'node:path';
import { openSqliteStateStore } from '@nanosync/core/host';
import { latestByKey, readJsonLines } from '@nanosync/sink-file';
import { describe, expect, it } from 'vitest';
import { eventually, runCli, startServing } from './cli-process.js';
import { CliTestContext, LITERAL_SECRET, uniqueName } from './fixtures.js';

async function records(file: string) {
  return readJsonLines(file).catch(() => []);
}

describe('serve + client commands against a real PostgreSQL', () => {
  it('apply, list, pause, resume and delete a pipeline; secrets never shown', async () => {
    await using ctx = await CliTestContext.create(100);
    const name = uniqueName('cli_life');
    const config = await ctx.writeConfig('pipelines.yaml', { pipeline: name });
    const { proc, server } = await startServing(['serve', '--state', ctx.stateFile]);
    await using _server = proc;
    const seen: string[] = [];
    const client = async (...args: string[]) => {
      const result = await runCli([...args, '--server', server, '--state', ctx.stateFile]);
      seen.push(result.stdout, result.stderr);
      return result;
    };
    const stateOf = async () => {
      const listed = await client('list', 'pipelines');
      return listed.stdout.match(new RegExp(`^${name}\\s+(\\S+)\\s+cdc_backfill`, 'm'))?.[1];
    };

    const created = await client('apply', '--file', config);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout.trim()).toBe(`${name} created`);
    const again = await client('apply', '--file', config);
    expect(again.stdout.trim()).toBe(`${name} unchanged`);

    const file = join(ctx.outDir, 'public.orders.jsonl');
    await eventually(
      async () => (latestByKey(await records(file)).size === 100 ? true : undefined),
      'the snapshot in the file',
    );
    await ctx.db.query("INSERT INTO public.orders VALUES (1001, 'live', 1)");
    await eventually(
      async () => ((await records(file)).some((r) => r.op === 'insert' && r.key.id === '1001') ? true : undefined),
      'a live insert',
    );
    expect(await stateOf()).toBe('LIVE_CDC');

    const paused = await client('pipeline', 'pause', name);
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout.trim()).toBe(`${name} paused`);
    expect(await stateOf()).toBe('PAUSED');
    await ctx.db.query("INSERT INTO public.orders VALUES (1002, 'while paused', 2)");

    const resumed = await client('pipeline', 'resume', name);
    expect(resumed.stdout.trim()).toBe(`${name} resumed`);
    await eventually(
      async () => ((await records(file)).some((r) => r.key.id === '1002') ? true : undefined),
      'the change made while paused',
    );
    await eventually(async () => ((await stateOf()) === 'LIVE_CDC' ? true : undefined), 'LIVE_CDC after resume');

    const json = await client('list', 'pipelines', '--json');
    expect(JSON.parse(json.stdout).map((p: { name: string }) => p.name)).toContain(name);

    const deleted = await client('pipeline', 'delete', name);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout.trim()).toBe(`${name} deleted`);
    expect((await client('list', 'pipelines')).stdout).not.toContain(name);
    expect(await ctx.slotsAndPublications()).toEqual({ slots: [], publications: [] });
    const missing = await client('pipeline', 'pause', name);
    expect(missing.code).toBe(1);

    proc.kill('SIGTERM');
    await proc.exited;
    for (const text of [...seen, proc.stdout, proc.stderr]) expect(text).not.toContain(LITERAL_SECRET);
  });

  it('SIGTERM checkpoints before exiting, and a restart replays nothing already delivered', async () => {
    await using ctx = await CliTestContext.create(50);
    const name = uniqueName('cli_term');
    const config = await ctx.writeConfig('pipelines.yaml', { pipeline: name });
    const file = join(ctx.outDir, 'public.orders.jsonl');

    const first = await startServing(['serve', '--state', ctx.stateFile]);
    await using firstProc = first.proc;
    const applied = await runCli(['apply', '--file', config, '--server', first.server, '--state', ctx.stateFile]);
    expect(applied.code, applied.stderr).toBe(0);
    await eventually(
      async () => ((await records(file)).filter((r) => r.op === 'read').length === 50 ? true : undefined),
      'the snapshot',
    );
    for (let id = 2001; id <= 2010; id++) await ctx.db.query("INSERT INTO public.orders VALUES ($1, 'live', 1)", [id]);
    await eventually(
      async () => ((await records(file)).some((r) => r.op === 'insert' && r.key.id === '2010') ? true : undefined),
      'the live rows',
    );

    firstProc.kill('SIGTERM');
    const exit = await firstProc.exited;
    expect(exit.code, exit.stderr).toBe(0);
    expect(exit.stderr).toMatch(/stopped cleanly/);

    // Every event in the file is covered by the checkpoint the server wrote on the way out.
    const streamed = (await records(file)).filter((r) => r.op !== 'read');
    const lastPosition = streamed
      .map((r) => r.position)
      .sort()
      .at(-1)!;
    const store = await openSqliteStateStore(ctx.stateFile);
    const checkpoints = Object.values(await store.getCheckpoints(name));
    await store.close();
    expect(checkpoints.length, `no checkpoint after SIGTERM; server log:\n${exit.stderr}`).toBeGreaterThan(0);
    for (const checkpoint of checkpoints)
      expect(checkpoint >= lastPosition, `${checkpoint} >= ${lastPosition}`).toBe(true);

    const second = await startServing(['serve', '--state', ctx.stateFile]);
    await using secondProc = second.proc;
    await ctx.db.query("INSERT INTO public.orders VALUES (2011, 'after restart', 1)");
    await eventually(
      async () => ((await records(file)).some((r) => r.key.id === '2011') ? true : undefined),
      'the row inserted after the restart',
    );
    const after = (await records(file)).filter((r) => r.op !== 'read');
    const positions = after.map((r) => r.position);
    expect(new Set(positions).size).toBe(positions.length);
    expect((await records(file)).filter((r) => r.op === 'read')).toHaveLength(50);
    secondProc.kill('SIGTERM');
    expect((await secondProc.exited).code).toBe(0);
  });

  it('run --file serves and applies in one process', async () => {
    await using ctx = await CliTestContext.create(20);
    const name = uniqueName('cli_run');
    const config = await ctx.writeConfig('pipelines.yaml', { pipeline: name });
    const { proc, server } = await startServing(['run', '--file', config, '--state', ctx.stateFile]);
    await using _proc = proc;
    expect(proc.stdout).toContain(`${name} created`);
    const file = join(ctx.outDir, 'public.orders.jsonl');
    await eventually(async () => (latestByKey(await records(file)).size === 20 ? true : undefined), 'the snapshot');
    const listed = await runCli(['list', 'pipelines', '--server', server, '--state', ctx.stateFile]);
    expect(listed.stdout).toMatch(new RegExp(`^${name}\\s+\\S+\\s+cdc_backfill`, 'm'));
    proc.kill('SIGINT');
    expect((await proc.exited).code).toBe(0);
    expect(proc.output).not.toContain(LITERAL_SECRET);
  });
});
