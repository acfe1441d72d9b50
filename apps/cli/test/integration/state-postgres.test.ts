import { join } from 'node:path';
import { readJsonLines } from '@nanosync/sink-file';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { eventually, runCli, startServing } from './cli-process.js';
import { CliTestContext, uniqueName } from './fixtures.js';

describe('serve --state postgres://…', () => {
  it('two servers share one PostgreSQL state store: one runs the pipeline, the other takes over at a clean stop', async () => {
    await using ctx = await CliTestContext.create(20);
    const stateUrl = `${await ctx.postgres.createDatabase()}?schema=fleet`;
    // Token and secret key are files in the per-user state folder, shared by both servers here.
    const env = { XDG_STATE_HOME: join(ctx.dir, 'xdg') };
    const name = uniqueName('cli_pgstate');
    const config = await ctx.writeConfig('pipelines.yaml', { pipeline: name });
    const file = join(ctx.outDir, 'public.orders.jsonl');

    const a = await startServing(['serve', '--state', stateUrl], { env });
    await using aProc = a.proc;
    expect((await runCli(['apply', '--file', config, '--server', a.server, '--state', stateUrl], { env })).code).toBe(
      0,
    );
    await eventually(
      async () => ((await readJsonLines(file).catch(() => [])).length >= 20 ? true : undefined),
      'the snapshot',
    );
    const b = await startServing(['serve', '--state', stateUrl], { env });
    await using bProc = b.proc;

    const state = new pg.Client({ connectionString: stateUrl.replace('?schema=fleet', '') });
    await state.connect();
    try {
      const holderOf = async () =>
        (await state.query<{ holder: string }>('SELECT holder FROM fleet.leases WHERE pipeline = $1', [name])).rows[0]
          ?.holder;
      expect(await holderOf()).toBe(`${(await import('node:os')).hostname()}/pid-${aProc.child.pid}`);
      const fromB = await eventually(async () => {
        const listed = await runCli(['list', 'pipelines', '--server', b.server, '--state', stateUrl], { env });
        return listed.stdout.includes(`pid-${aProc.child.pid}`) ? listed.stdout : undefined;
      }, 'server B to report the lease holder');
      // Server A, named in the pipeline's SERVER cell (no separate note repeats it).
      expect(
        fromB
          .split('\n')
          .find((l) => l.startsWith(name))
          ?.trimEnd(),
      ).toMatch(new RegExp(`pid-${aProc.child.pid}$`));
      expect(fromB).not.toContain('run by another server');

      aProc.kill('SIGTERM');
      expect((await aProc.exited).code).toBe(0);
      await eventually(
        async () => ((await holderOf())?.endsWith(`/pid-${bProc.child.pid}`) ? true : undefined),
        'server B to take the pipeline over',
      );
      await ctx.db.query("INSERT INTO public.orders VALUES (4001, 'after takeover', 1)");
      await eventually(
        async () => ((await readJsonLines(file)).some((r) => r.key.id === '4001') ? true : undefined),
        'the insert made after the takeover',
      );
      const all = await readJsonLines(file);
      expect(all.filter((r) => r.op === 'read')).toHaveLength(20);
      const checkpoints = await state.query('SELECT sink FROM fleet.checkpoints WHERE pipeline = $1', [name]);
      expect(checkpoints.rowCount).toBeGreaterThan(0);
    } finally {
      await state.end();
    }
    bProc.kill('SIGTERM');
    expect((await bProc.exited).code).toBe(0);
  });
});
