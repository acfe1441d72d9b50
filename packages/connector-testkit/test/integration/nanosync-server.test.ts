import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { expect, it } from 'vitest';
import { eventually, NanosyncServer, type OracleRecord, runOracle } from '../../src/index.js';

/** Every complete line the file sink wrote, as oracle records. */
async function sinkRecords(dir: string): Promise<OracleRecord[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: OracleRecord[] = [];
  for (const name of names.filter((n) => n.endsWith('.jsonl')).sort()) {
    const text = await readFile(join(dir, name), 'utf8');
    for (const line of text.split('\n').slice(0, -1)) if (line) out.push(JSON.parse(line) as OracleRecord);
  }
  return out;
}

it('NanosyncServer runs `nanosync run`, reads its admin API, survives a SIGKILL and a restart; the oracle passes', async () => {
  await using postgres = await startPostgres();
  const url = await postgres.createDatabase();
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const dir = await mkdtemp(join(tmpdir(), 'ns-kit-server-'));
  try {
    await db.query('CREATE TABLE public.items (id int PRIMARY KEY, note text)');
    await db.query(`INSERT INTO public.items SELECT g, 'seed' FROM generate_series(1, 200) g`);
    const config = join(dir, 'pipelines.yaml');
    const out = join(dir, 'out');
    await writeFile(
      config,
      `connections:
  - name: pg
    type: postgres
    dsn: ${JSON.stringify(url)}
  - name: out
    type: file
    properties:
      path: ${JSON.stringify(out)}
pipelines:
  - name: items
    source:
      connection: pg
      tables: [public.items]
    sink:
      connection: out
`,
    );
    await using server = await NanosyncServer.start([
      'run',
      '--file',
      config,
      '--state',
      join(dir, 'state', 'state.db'),
    ]);
    expect((await server.api('/v1/pipelines/items', { token: null })).status, 'the API wants the token').toBe(401);
    await server.waitForPipeline<{ state: string }>('items', (p) => p.state === 'LIVE_CDC', 'LIVE_CDC');
    await db.query(`UPDATE public.items SET note = 'first run' WHERE id <= 10`);
    await eventually(
      async () => ((await sinkRecords(out)).some((r) => r.op === 'update') ? true : undefined),
      'updates in the sink',
    );

    const crashed = await server.kill('SIGKILL');
    expect(crashed.signal).toBe('SIGKILL');
    await db.query(`DELETE FROM public.items WHERE id > 190`);
    await db.query(`INSERT INTO public.items VALUES (1000, 'while down')`);
    await server.restart();
    expect(server.processes).toHaveLength(2);
    await server.waitForPipeline<{ state: string }>('items', (p) => p.state === 'LIVE_CDC', 'LIVE_CDC again');

    const table = (await db.query('SELECT id, note FROM public.items')).rows;
    let problems: string[] = [];
    await eventually(
      async () => {
        problems = runOracle({
          records: await sinkRecords(out),
          expected: { 'public.items': table },
          keyColumns: ['id'],
          changes: [
            { table: 'public.items', op: 'insert', key: { id: 1000 }, after: { note: 'while down' } },
            { table: 'public.items', op: 'delete', key: { id: 195 } },
          ],
        });
        return problems.length === 0 ? true : undefined;
      },
      'the sink to converge on the table',
      120_000,
      () => problems.join('\n'),
    );
    const stopped = await server.kill('SIGTERM');
    expect(stopped.code, stopped.stderr.slice(-2000)).toBe(0);
  } finally {
    await db
      .query(
        `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active`,
      )
      .catch(() => undefined);
    await db.end();
    await rm(dir, { recursive: true, force: true });
  }
});
