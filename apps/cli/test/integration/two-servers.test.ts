import { join } from 'node:path';
import { readJsonLines } from '@nanosync/sink-file';
import { describe, expect, it } from 'vitest';
import { eventually, runCli, startServing } from './cli-process.js';
import { CliTestContext, uniqueName } from './fixtures.js';

describe('two servers on one state database', () => {
  it('only one runs the pipeline; the other says who holds it', async () => {
    await using ctx = await CliTestContext.create(30);
    const name = uniqueName('cli_lease');
    const config = await ctx.writeConfig('pipelines.yaml', { pipeline: name });
    const file = join(ctx.outDir, 'public.orders.jsonl');

    const a = await startServing(['serve', '--state', ctx.stateFile]);
    await using aProc = a.proc;
    expect((await runCli(['apply', '--file', config, '--server', a.server, '--state', ctx.stateFile])).code).toBe(0);
    await eventually(
      async () => ((await readJsonLines(file).catch(() => [])).length >= 30 ? true : undefined),
      'the snapshot',
    );

    const b = await startServing(['serve', '--state', ctx.stateFile]);
    await using bProc = b.proc;
    const holder = `pid-${aProc.child.pid}`;
    const fromB = await eventually(async () => {
      const listed = await runCli(['list', 'pipelines', '--server', b.server, '--state', ctx.stateFile]);
      return listed.stdout.includes(holder) ? listed.stdout : undefined;
    }, 'server B to report the lease holder');
    // The holder is the pipeline's SERVER cell; no note below the table repeats it.
    expect(
      fromB
        .split('\n')
        .find((l) => l.startsWith(name))
        ?.trimEnd(),
    ).toMatch(new RegExp(`${holder}$`));
    expect(fromB).not.toContain('run by another server');

    await ctx.db.query("INSERT INTO public.orders VALUES (3001, 'once', 1)");
    await eventually(
      async () => ((await readJsonLines(file)).some((r) => r.key.id === '3001') ? true : undefined),
      'the live insert',
    );
    const all = await readJsonLines(file);
    expect(all.filter((r) => r.op === 'read')).toHaveLength(30);
    const positions = all.filter((r) => r.op !== 'read').map((r) => r.position);
    expect(new Set(positions).size).toBe(positions.length);

    bProc.kill('SIGTERM');
    aProc.kill('SIGTERM');
    expect((await bProc.exited).code).toBe(0);
    expect((await aProc.exited).code).toBe(0);
  });
});
