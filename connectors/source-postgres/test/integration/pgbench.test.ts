import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { PgFixture } from './fixture.js';
import { waitFor } from './e2e/scenario.js';
import { reduceByKey, TablesScenario, tableState } from './e2e/tables.js';

const run = promisify(execFile);
const t = (name: string) => ({ schema: 'public', name });
const initPgbench = async (fx: PgFixture) => {
  await run('pgbench', ['-i', '-s', '2', '-q', fx.adminUrl], { maxBuffer: 16 * 1024 * 1024 });
};

describe('pgbench', () => {
  it('pgbench -i -s 2, pgbench -c 4 -T 30 during the snapshot and a SIGKILL mid-snapshot: accounts, branches and tellers in the sink equal the tables', async () => {
    const captured = [t('pgbench_accounts'), t('pgbench_branches'), t('pgbench_tellers')];
    await using s = await TablesScenario.create({
      ddl: [],
      setup: initPgbench,
      tables: captured,
      snapshot: { concurrency: 2, rows: 5000 },
    });
    const bench = spawn('pgbench', ['-c', '4', '-T', '30', '-n', s.fx.adminUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
    let benchOutput = '';
    bench.stdout.setEncoding('utf8').on('data', (c: string) => {
      benchOutput += c;
    });
    bench.stderr.setEncoding('utf8').on('data', (c: string) => {
      benchOutput += c;
    });
    const benchDone = new Promise<number | null>((resolve) => bench.on('exit', (code) => resolve(code)));

    const first = s.spawn();
    await waitFor(() => s.partitionsDone() >= 5, 'five snapshot partitions done', first);
    expect(s.partitionIds().length).toBeGreaterThan(10);
    first.kill('SIGKILL');
    await first.exited;

    const second = s.spawn();
    await s.waitState(second, 'LIVE_CDC', 240_000);
    expect(await benchDone, benchOutput).toBe(0);
    expect(benchOutput).toMatch(/number of transactions actually processed: [1-9]/);
    await s.fx.admin.query('UPDATE public.pgbench_branches SET bbalance = 987654321 WHERE bid = 1');
    await waitFor(
      async () =>
        (await s.lines()).some((l) => l.table === 'public.pgbench_branches' && l.after?.bbalance === 987654321),
      'the marker update',
      second,
      240_000,
    );

    const held = reduceByKey(await s.lines());
    const keys: Record<string, string> = { pgbench_accounts: 'aid', pgbench_branches: 'bid', pgbench_tellers: 'tid' };
    for (const table of captured) {
      const expected = await tableState(s.fx.admin, table, [keys[table.name]!]);
      const got = held.get(`public.${table.name}`) ?? new Map();
      expect(got.size, table.name).toBe(expected.size);
      expect(Object.fromEntries(got), table.name).toEqual(Object.fromEntries(expected));
    }
  });

  it('pgbench_history (no primary key) is refused before anything is created, naming both fixes', async () => {
    await using s = await TablesScenario.create({
      ddl: [],
      setup: initPgbench,
      tables: [t('pgbench_accounts'), t('pgbench_history')],
      preparePublication: false,
    });
    const result = await s.runCli();
    expect(result.code, result.stderr).toBe(1);
    const output = result.stdout + result.stderr;
    expect(output).toContain('table "public"."pgbench_history" has no usable replica identity');
    expect(output).toContain('ALTER TABLE "public"."pgbench_history" ADD PRIMARY KEY');
    expect(output).toContain('ALTER TABLE "public"."pgbench_history" REPLICA IDENTITY FULL');
    expect(await s.leftovers()).toEqual([]);
  });
});
