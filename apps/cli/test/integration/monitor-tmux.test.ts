import { createServer } from 'node:net';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { CliProcess, runCli } from './cli-process.js';
import { killOnExit, metricValue, ObservabilityContext, TmuxSession, uniqueName } from './observability-fixtures.js';

/** The screen line of a pipeline in the list (selected or not). */
function listLine(screen: string, name: string): string | undefined {
  return screen.split('\n').find((l) => new RegExp(`^[› ] ${name}\\s`).test(l));
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('nanosync monitor in a real terminal (tmux)', () => {
  it('shows both pipelines, opens the per-table view with Enter, goes back with Esc, quits with q', async () => {
    await using ctx = await ObservabilityContext.create();
    await ctx.createTable('orders', 120);
    await ctx.createTable('items', 30);
    await ctx.createTable('notes', 7);
    const alpha = uniqueName('mon_a');
    const beta = uniqueName('mon_b');
    const config = await ctx.writeConfig([
      { name: alpha, tables: ['public.orders'] },
      { name: beta, tables: ['public.items', 'public.notes'] },
    ]);
    const { url } = await ctx.serve();
    const applied = await runCli(['apply', '--file', config, '--server', url, '--state', ctx.stateFile]);
    expect(applied.code, applied.stderr).toBe(0);
    for (const name of [alpha, beta])
      await ctx.waitForStatus(name, 'snapshot done', (p) => p.state === 'LIVE_CDC' && p.snapshot?.done === true);
    await ctx.db.query("INSERT INTO public.notes VALUES (100, 'live')");
    await ctx.waitForStatus(
      beta,
      'the live insert',
      (p) => p.tables.find((t) => t.table === 'public.notes')?.events === 1,
    );

    // The monitor finds the token the way every client command does: the file next to --state.
    await using term = await TmuxSession.start(['monitor', '--server', url, '--state', ctx.stateFile]);
    const list = await term.waitForScreen(
      'both pipelines listed',
      (s) => /LIVE_CDC/.test(listLine(s, alpha) ?? '') && /LIVE_CDC/.test(listLine(s, beta) ?? ''),
    );
    expect(list).toContain('● connected');
    expect(list).toMatch(/PIPELINE\s+STATE\s+LAG\s+EVENTS\/S\s+SNAPSHOT/);
    expect(listLine(list, alpha)).toMatch(/^› /);
    expect(listLine(list, alpha)).toContain('100% done');

    await term.sendKeys('Down');
    await term.waitForScreen('the second pipeline selected', (s) => /^› /.test(listLine(s, beta) ?? ''));
    await term.sendKeys('Enter');
    const tables = await term.waitForScreen(
      'the per-table view',
      (s) => s.includes(`nanosync monitor › ${beta}`) && s.includes('public.notes'),
    );
    expect(tables).toMatch(/TABLE\s+ROWS SNAPSHOTTED\s+EVENTS\s+LAG\s+SNAPSHOT/);
    expect(tables).toMatch(/public\.items\s+30\s+0\s/);
    expect(tables).toMatch(/public\.notes\s+7\s+1\s/);
    expect(tables).toMatch(/SINK\s+STATE\s+ROWS WRITTEN\s+ERRORS\s+DEAD LETTERS\s+SKIPPED\s+QUEUE\s+SPILLED\s+LAG/);
    expect(tables).not.toContain('public.orders');
    expect(tables).toContain('Esc back');

    await term.sendKeys('Escape');
    const back = await term.waitForScreen(
      'the list again',
      (s) => s.includes('Enter tables') && listLine(s, alpha) !== undefined,
    );
    expect(listLine(back, beta)).toMatch(/^› /);

    await term.sendKeys('q');
    const code = await waitForExit(term);
    expect(code).toBe(0);
  }, 300_000);

  it('shows a re-snapshot of one table like a first snapshot, after a server restart: its own progress, the other table as it was; /metrics agrees', async () => {
    await using ctx = await ObservabilityContext.create();
    await ctx.createTable('orders', 120);
    // Hundreds of one-page partitions read one at a time: the re-snapshot is still under way
    // when the test sees its first partition done and kills the server.
    await ctx.createTable('big', 60_000);
    await ctx.db.query('ANALYZE public.orders, public.big');
    const name = uniqueName('mon_rs');
    const config = await ctx.writeConfig([{ name, tables: ['public.orders', 'public.big'] }], 100, 'cdc_backfill', 1);
    let { url } = await ctx.serve();
    const applied = await runCli(['apply', '--file', config, '--server', url, '--state', ctx.stateFile]);
    expect(applied.code, applied.stderr).toBe(0);
    await ctx.waitForStatus(name, 'snapshot done', (p) => p.state === 'LIVE_CDC' && p.snapshot?.done === true);
    const ordersPlan = (await ctx.status(name)).tables.find((t) => t.table === 'public.orders')!;
    expect(ordersPlan.partitionsDone).toBe(ordersPlan.partitionsTotal);

    const resnap = await runCli([
      'pipeline',
      'resnapshot',
      name,
      '--table',
      'public.big',
      '--server',
      url,
      '--state',
      ctx.stateFile,
    ]);
    expect(resnap.code, resnap.stderr).toBe(0);
    await ctx.waitForStatus(
      name,
      'the re-snapshot under way',
      (p) => (p.tables.find((t) => t.table === 'public.big')?.partitionsDone ?? 0) >= 1,
    );
    // Killed mid-way, then started again with the table locked: the new server process (its
    // figures start empty) loads the stored plan and its next chunk read waits for the lock,
    // so the re-snapshot stays where it is while the monitor and /metrics are read.
    ctx.server!.proc.kill('SIGKILL');
    await ctx.server!.proc.exited;
    const holder = new pg.Client({ connectionString: ctx.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE public.big IN ACCESS EXCLUSIVE MODE');
      ({ url } = await ctx.serve());
      await ctx.waitForStatus(
        name,
        're-snapshot resumed',
        (p) =>
          p.state === 'SNAPSHOTTING' && p.snapshot?.partitionsTotal !== undefined && p.snapshot.partitionsTotal > 0,
      );
      const during = await ctx.status(name);
      const big = during.tables.find((t) => t.table === 'public.big')!;
      const orders = during.tables.find((t) => t.table === 'public.orders')!;
      expect(during.state).toBe('SNAPSHOTTING');
      expect(big.partitionsDone).toBeGreaterThanOrEqual(1);
      expect(big.partitionsDone).toBeLessThan(big.partitionsTotal);
      // The table not read again keeps its finished snapshot's figures.
      expect(orders).toMatchObject({
        rowsSnapshotted: 120,
        partitionsDone: ordersPlan.partitionsTotal,
        partitionsTotal: ordersPlan.partitionsTotal,
      });
      // The pipeline's progress is the re-snapshot's own.
      expect(during.snapshot).toMatchObject({
        partitionsTotal: big.partitionsTotal,
        partitionsDone: big.partitionsDone,
        rowsRead: big.rowsSnapshotted,
        done: false,
      });

      const prom = (await ctx.api('/metrics')).text;
      const labels = (table: string) => ({ pipeline: name, table });
      expect(metricValue(prom, 'ns_snapshot_partitions_total', labels('public.big'))).toBe(big.partitionsTotal);
      expect(metricValue(prom, 'ns_snapshot_partitions_completed_total', labels('public.big'))).toBe(
        big.partitionsDone,
      );
      expect(metricValue(prom, 'ns_snapshot_rows_total', labels('public.big'))).toBe(big.rowsSnapshotted);
      expect(metricValue(prom, 'ns_snapshot_partitions_completed_total', labels('public.orders'))).toBe(
        ordersPlan.partitionsTotal,
      );
      expect(metricValue(prom, 'ns_snapshot_rows_total', labels('public.orders'))).toBe(120);

      // `metrics pipeline`: the re-snapshot's own progress, the other table as it was.
      const report = await runCli(['metrics', 'pipeline', name, '--server', url, '--state', ctx.stateFile]);
      expect(report.code, report.stderr).toBe(0);
      expect(report.stdout).toMatch(
        new RegExp(`\\n {2}partitions\\s+${big.partitionsDone} of ${big.partitionsTotal} done\\n`),
      );
      expect(report.stdout).toMatch(
        new RegExp(`\\n {2}public\\.orders\\s+120\\s+${ordersPlan.partitionsTotal}/${ordersPlan.partitionsTotal}\\s`),
      );
      expect(report.stdout).toMatch(
        new RegExp(`\\n {2}public\\.big\\s+[\\d,]+\\s+${big.partitionsDone}/${big.partitionsTotal}\\s`),
      );

      await using term = await TmuxSession.start(['monitor', '--server', url, '--state', ctx.stateFile]);
      const list = await term.waitForScreen('the pipeline listed', (s) => /SNAPSHOTTING/.test(listLine(s, name) ?? ''));
      expect(listLine(list, name)).toMatch(/\d+%/);
      expect(listLine(list, name)).not.toContain('100% done');
      await term.sendKeys('Enter');
      const tables = await term.waitForScreen('the per-table view', (s) => s.includes(`nanosync monitor › ${name}`));
      const row = (table: string) => tables.split('\n').find((l) => l.trimStart().startsWith(table)) ?? '';
      expect(row('public.orders')).toMatch(
        new RegExp(`public\\.orders\\s+120\\s.*\\s${ordersPlan.partitionsTotal}/${ordersPlan.partitionsTotal}$`),
      );
      const bigCells = /\s(\d+)\/(\d+)$/.exec(row('public.big').trimEnd());
      expect(bigCells, tables).not.toBeNull();
      expect(Number(bigCells![2])).toBe(big.partitionsTotal);
      expect(Number(bigCells![1])).toBe(big.partitionsDone);
      expect(tables).toMatch(/snapshot \d+%.* of about [\d,]+ rows/);
      await term.sendKeys('q');
      expect(await waitForExit(term)).toBe(0);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end().catch(() => undefined);
    }
    const after = await ctx.waitForStatus(
      name,
      're-snapshot done',
      (p) => p.state === 'LIVE_CDC' && p.snapshot?.done === true,
    );
    const big = after.tables.find((t) => t.table === 'public.big')!;
    expect(big.partitionsDone).toBe(big.partitionsTotal);
    const prom = (await ctx.api('/metrics')).text;
    expect(metricValue(prom, 'ns_snapshot_partitions_completed_total', { pipeline: name, table: 'public.big' })).toBe(
      big.partitionsTotal,
    );
  }, 300_000);

  it('says when the server is down, connects when it comes up, and notices when it goes away', async () => {
    await using ctx = await ObservabilityContext.create();
    const port = await freePort();
    const token = 'monitor-test-token-0123456789';
    const server = `127.0.0.1:${port}`;
    await using term = await TmuxSession.start(['monitor', '--server', server], { env: { NANOSYNC_TOKEN: token } });
    const down = await term.waitForScreen('the server reported down', (s) => s.includes('server unreachable'));
    expect(down).toContain(`no nanosync server answers at http://${server}`);
    expect(down).toContain('no data yet');

    const { proc } = await startOnPort(ctx, port, token);
    const up = await term.waitForScreen('connected once the server is up', (s) => s.includes('● connected'));
    expect(up).toContain('no pipelines');
    expect(up).not.toContain('server unreachable');

    proc.kill('SIGTERM');
    await proc.exited;
    const again = await term.waitForScreen('down again', (s) => s.includes('server unreachable'));
    expect(again).toContain('showing the last figures received');
    expect(await term.exitStatus()).toBeUndefined();

    await term.sendKeys('q');
    expect(await waitForExit(term)).toBe(0);
  }, 300_000);
});

/** `serve` on a given port (the monitor was pointed at it before it existed). */
async function startOnPort(ctx: ObservabilityContext, port: number, token: string) {
  const proc = new CliProcess(['serve', '--state', ctx.stateFile, '--listen', `127.0.0.1:${port}`], {
    env: { NANOSYNC_TOKEN: token },
  });
  killOnExit(proc);
  ctx.server = { proc, url: `http://127.0.0.1:${port}`, token };
  await proc.waitFor(/nanosync serving — Ctrl-C to stop/);
  return ctx.server;
}

async function waitForExit(term: TmuxSession): Promise<number | string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const code = await term.exitStatus();
    if (code !== undefined) return code;
    if (Date.now() > deadline)
      throw new Error(`the monitor did not exit (${await term.describePane()}):\n${await term.capture()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
