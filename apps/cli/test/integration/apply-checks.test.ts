import { writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PostgresService, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCli, startServing } from './cli-process.js';
import { uniqueName } from './fixtures.js';

/**
 * `apply` and `run` ask the source and the sinks the same questions `doctor` does before
 * anything is stored or created, and refuse with doctor's cause and fix.
 */
describe('apply and run refuse a pipeline whose blocking checks fail', () => {
  it('wal_level=replica and a role without REPLICATION: nothing stored, no slot, the fixes printed', async () => {
    await using postgres: PostgresService = await startPostgres({ settings: { wal_level: 'replica' } });
    const url = await postgres.createDatabase();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const role = uniqueName('plain');
    const dir = await mkdtemp(join(tmpdir(), 'ns-apply-checks-'));
    try {
      await admin.query('CREATE TABLE public.items (id int PRIMARY KEY)');
      await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
      await admin.query(`GRANT SELECT ON public.items TO ${role}`);
      const dsn = new URL(url);
      dsn.username = role;
      dsn.password = 'pw';
      const name = uniqueName('refused');
      await writeFile(
        join(dir, 'pipelines.yaml'),
        `connections:
  - name: db
    type: postgres
    dsn: ${JSON.stringify(dsn.toString())}
  - name: out
    type: file
    properties:
      path: ./out
pipelines:
  - name: ${name}
    source:
      connection: db
      tables: [public.items]
    sink:
      connection: out
`,
      );
      const state = join(dir, 'state', 'state.db');
      const expectRefusal = (result: { code: number | null; stdout: string; stderr: string }, command: string) => {
        expect(result.code, result.stdout + result.stderr).toBe(1);
        expect(result.stdout).not.toContain('created');
        expect(result.stderr).toContain(
          `nanosync ${command}: [NS_R2006] pipeline ${name} cannot start; nothing was created:`,
        );
        expect(result.stderr).toMatch(/ {4}✗ wal_level: wal_level is replica; logical decoding needs logical/);
        expect(result.stderr).toContain(
          "      fix: ALTER SYSTEM SET wal_level = 'logical'; -- then restart PostgreSQL",
        );
        expect(result.stderr).toMatch(
          new RegExp(`✗ replication_role: role "?${role}"? lacks the REPLICATION attribute`),
        );
        expect(result.stderr).toMatch(new RegExp(`fix: ALTER ROLE "?${role}"? REPLICATION;`));
        expect(result.stderr).not.toContain(':pw@');
      };

      const { proc, server } = await startServing(['serve', '--state', state], { cwd: dir });
      await using _server = proc;
      const applied = await runCli(['apply', '--file', 'pipelines.yaml', '--server', server, '--state', state], {
        cwd: dir,
      });
      expectRefusal(applied, 'apply');
      const listed = await runCli(['list', 'pipelines', '--json', '--server', server, '--state', state], { cwd: dir });
      expect(listed.code, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout)).toEqual([]);
      await proc.stop();

      const ran = await runCli(
        ['run', '--file', 'pipelines.yaml', '--state', join(dir, 'run-state', 'state.db'), '--listen', '127.0.0.1:0'],
        {
          cwd: dir,
        },
      );
      expectRefusal(ran, 'run');

      const slots = await admin.query('SELECT slot_name FROM pg_replication_slots');
      const publications = await admin.query('SELECT pubname FROM pg_publication');
      expect({ slots: slots.rows, publications: publications.rows }).toEqual({ slots: [], publications: [] });
    } finally {
      await admin.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
      await admin.end();
      await rm(dir, { recursive: true, force: true });
    }
  });
  it('a table without a replica identity: apply refuses naming it and both fixes, stores and creates nothing, and the application can still update it', async () => {
    await using postgres: PostgresService = await startPostgres();
    const url = await postgres.createDatabase();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const role = uniqueName('keyless');
    const dir = await mkdtemp(join(tmpdir(), 'ns-apply-keyless-'));
    try {
      await admin.query('CREATE TABLE public.accounts (id int PRIMARY KEY, balance int)');
      await admin.query('CREATE TABLE public.history (aid int, note text)');
      await admin.query(`INSERT INTO public.history SELECT g, 'seed' FROM generate_series(1, 10) g`);
      // A role that could create the publication itself: the refusal is about the table, not privileges.
      await admin.query(`CREATE ROLE ${role} LOGIN REPLICATION PASSWORD 'pw'`);
      await admin.query(`ALTER TABLE public.accounts OWNER TO ${role}`);
      await admin.query(`ALTER TABLE public.history OWNER TO ${role}`);
      await admin.query(`GRANT CREATE ON DATABASE "${new URL(url).pathname.slice(1)}" TO ${role}`);
      const dsn = new URL(url);
      dsn.username = role;
      dsn.password = 'pw';
      const name = uniqueName('keyless');
      await writeFile(
        join(dir, 'pipelines.yaml'),
        `connections:
  - name: db
    type: postgres
    dsn: ${JSON.stringify(dsn.toString())}
  - name: out
    type: file
    properties:
      path: ./out
pipelines:
  - name: ${name}
    source:
      connection: db
      tables: [public.accounts, public.history]
    sink:
      connection: out
`,
      );
      const state = join(dir, 'state', 'state.db');
      const { proc, server } = await startServing(['serve', '--state', state], { cwd: dir });
      await using _server = proc;
      const applied = await runCli(['apply', '--file', 'pipelines.yaml', '--server', server, '--state', state], {
        cwd: dir,
      });
      expect(applied.code, applied.stdout + applied.stderr).toBe(1);
      expect(applied.stderr).toContain(`[NS_R2006] pipeline ${name} cannot start; nothing was created:`);
      expect(applied.stderr).toMatch(/✗ replica_identity "public"\."history"/);
      expect(applied.stderr).toContain('ALTER TABLE "public"."history" ADD PRIMARY KEY');
      expect(applied.stderr).toContain('ALTER TABLE "public"."history" REPLICA IDENTITY FULL');
      expect(applied.stderr).not.toMatch(/✗ replica_identity "public"\."accounts"/);
      const listed = await runCli(['list', 'pipelines', '--json', '--server', server, '--state', state], { cwd: dir });
      expect(JSON.parse(listed.stdout)).toEqual([]);
      const slots = await admin.query('SELECT slot_name FROM pg_replication_slots WHERE database = current_database()');
      const publications = await admin.query('SELECT pubname FROM pg_publication');
      expect({ slots: slots.rows, publications: publications.rows }).toEqual({ slots: [], publications: [] });
      // The table was never published, so the application's own writes still work.
      expect((await admin.query(`UPDATE public.history SET note = 'app' WHERE aid <= 3`)).rowCount).toBe(3);
      expect((await admin.query('DELETE FROM public.history WHERE aid = 4')).rowCount).toBe(1);
    } finally {
      await admin.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
      await admin.end();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
