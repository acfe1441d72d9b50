import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { eventually, runCli, startServing } from './cli-process.js';
import { uniqueName } from './fixtures.js';

describe('pipeline delete --force', () => {
  it('removes the state of a pipeline whose PostgreSQL is gone and prints the SQL that cleans up by hand', async () => {
    await using postgres = await startPostgres({ fresh: true });
    const url = await postgres.createDatabase();
    const dir = await mkdtemp(join(tmpdir(), 'ns-delete-force-'));
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      await db.query('CREATE TABLE public.t (id int PRIMARY KEY)');
      await db.query('INSERT INTO public.t SELECT generate_series(1, 5)');
      const name = uniqueName('gone');
      const config = join(dir, 'p.yaml');
      await writeFile(
        config,
        `connections:
  - name: db
    type: postgres
    dsn: ${JSON.stringify(url)}
  - name: out
    type: file
    properties:
      path: ${JSON.stringify(join(dir, 'out'))}
pipelines:
  - name: ${name}
    source:
      connection: db
      tables: [public.t]
    sink:
      connection: out
`,
      );
      const state = join(dir, 'state', 'state.db');
      const { proc, server } = await startServing(['serve', '--state', state]);
      await using _server = proc;
      const client = (...args: string[]) => runCli([...args, '--server', server, '--state', state]);
      expect((await client('apply', '--file', config)).code).toBe(0);
      await eventually(
        async () => ((await client('list', 'pipelines')).stdout.includes('LIVE_CDC') ? true : undefined),
        'LIVE_CDC',
      );
      const slots = await db.query('SELECT slot_name FROM pg_replication_slots');
      expect(slots.rows).toHaveLength(1);
      await db.end();

      await postgres.stop();

      // Without --force the pipeline is kept and the command fails.
      const refused = await client('pipeline', 'delete', name);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/removing its replication slot and publication failed/);
      expect((await client('list', 'pipelines')).stdout).toContain(name);

      const forced = await client('pipeline', 'delete', name, '--force');
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stdout).toContain(`${name} deleted: its state is removed, but the source could not be cleaned up`);
      const slot = slots.rows[0]!.slot_name as string;
      expect(forced.stdout).toContain(`SELECT pg_drop_replication_slot('${slot}')`);
      expect(forced.stdout).toMatch(/DROP PUBLICATION IF EXISTS "?nanosync_pub_/);
      expect((await client('list', 'pipelines')).stdout).not.toContain(name);

      // The printed SQL does the clean-up once the database is back.
      await postgres.start();
      const again = new pg.Client({ connectionString: url });
      await again.connect();
      try {
        const sql = forced.stdout
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => /^(SELECT|DROP)/.test(line));
        expect(sql).toHaveLength(3);
        for (const statement of sql) await again.query(statement);
        expect((await again.query('SELECT 1 FROM pg_replication_slots')).rowCount).toBe(0);
        expect((await again.query('SELECT 1 FROM pg_publication')).rowCount).toBe(0);
      } finally {
        await again.end();
      }
    } finally {
      await db.end().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
