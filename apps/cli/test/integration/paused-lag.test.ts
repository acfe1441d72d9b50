import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventually, runCli } from './cli-process.js';
import { metricValue, ObservabilityContext, uniqueName } from './observability-fixtures.js';

async function outputText(dir: string): Promise<string> {
  const files = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  let text = '';
  for (const f of files) text += await readFile(join(dir, String(f)), 'utf8').catch(() => '');
  return text;
}

describe('a paused pipeline reports its real lag (real PostgreSQL)', () => {
  it('the age of the oldest change waiting in its slot, in the API, list, metrics and /metrics; resume delivers it', async () => {
    await using ctx = await ObservabilityContext.create();
    await ctx.createTable('orders', 3);
    const name = uniqueName('paused_lag');
    const config = await ctx.writeConfig([{ name, tables: ['public.orders'] }], 100, 'cdc');
    const { url } = await ctx.serve();
    const cli = (...args: string[]) => runCli([...args, '--server', url, '--state', ctx.stateFile]);
    expect((await cli('apply', '--file', config)).code).toBe(0);
    await ctx.waitForStatus(name, 'streaming', (p) => p.state === 'LIVE_CDC' && p.startPosition !== undefined);
    expect((await cli('pipeline', 'pause', name)).code).toBe(0);

    // Paused with nothing waiting: the source says so, and the lag is 0.
    const idle = await ctx.waitForStatus(name, 'nothing waiting', (p) => p.source?.oldestPendingCommitAt === null);
    expect(idle.state).toBe('PAUSED');
    expect(idle.lagSeconds).toBe(0);

    // A change committed while paused: the lag becomes its age, growing from its commit time.
    const before = Date.now();
    await ctx.db.query("INSERT INTO public.orders VALUES (4242, 'while paused')");
    const committedBy = Date.now();
    const waiting = await ctx.waitForStatus(
      name,
      'a change waiting',
      (p) => typeof p.source?.oldestPendingCommitAt === 'string',
    );
    const committedAt = Date.parse(waiting.source!.oldestPendingCommitAt!);
    expect(committedAt).toBeGreaterThanOrEqual(before - 1000);
    expect(committedAt).toBeLessThanOrEqual(committedBy + 1000);
    const readAt = Date.now();
    const status = await ctx.status(name);
    expect(status.state).toBe('PAUSED');
    expect(status.lagSeconds).toBeGreaterThan(0);
    expect(status.lagSeconds!).toBeGreaterThanOrEqual((readAt - committedAt) / 1000 - 0.1);
    expect(status.source!.retainedWalBytes).toBeGreaterThan(0);

    const prom = (await ctx.api('/metrics')).text;
    expect(metricValue(prom, 'ns_pipeline_replication_lag_seconds', { pipeline: name })).toBeGreaterThan(0);
    expect(metricValue(prom, 'ns_slot_retained_wal_bytes', { pipeline: name })).toBeGreaterThan(0);
    const listed = await cli('list', 'pipelines');
    const line = listed.stdout.split('\n').find((l) => l.startsWith(name));
    expect(line).toMatch(/PAUSED/);
    // The LAG cell (formatLag: `0.4s`, `12s`, `1m05s`) is the paused lag, not zero.
    const lagCell = line!.trim().split(/\s+/)[3]!;
    expect(lagCell).toMatch(/^(\d+(\.\d)?s|\d+m\d\ds|\d+h\d\dm)$/);
    expect(lagCell).not.toBe('0.0s');
    const report = await cli('metrics', 'pipeline', name);
    expect(report.stdout).toContain(
      `oldest change not delivered yet committed ${waiting.source!.oldestPendingCommitAt}`,
    );

    // Resume: the slot is free again (the peek does not hold it), the change arrives, the lag is the stream's again.
    expect((await cli('pipeline', 'resume', name)).code).toBe(0);
    await eventually(
      async () => ((await outputText(ctx.outDir)).includes('while paused') ? true : undefined),
      'the change delivered',
    );
    const live = await ctx.waitForStatus(name, 'live again', (p) => p.state === 'LIVE_CDC');
    expect(live.source?.oldestPendingCommitAt).toBeUndefined();
  });
});
