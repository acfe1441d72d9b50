import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { type PostgresService, startKafka, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCli } from './cli-process.js';
import { CliTestContext, LITERAL_SECRET, uniqueName } from './fixtures.js';

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('nanosync doctor', () => {
  it('passes a ready PostgreSQL and Kafka, from the config file’s folder, creating nothing', async () => {
    await using ctx = await CliTestContext.create(10);
    const kafka = await startKafka();
    const pipeline = uniqueName('doc');
    const config = `connections:
  - name: pg
    type: postgres
    dsn: ${JSON.stringify(ctx.dsnWithSecret)}
  - name: events
    type: kafka
    properties:
      brokers: ${JSON.stringify(kafka.brokers.join(','))}
pipelines:
  - name: ${pipeline}
    source:
      connection: pg
      tables: [public.orders]
    sink:
      connection: events
`;
    await writeFile(join(ctx.dir, 'pipelines.yaml'), config);
    const result = await runCli(['doctor', '--file', 'pipelines.yaml'], { cwd: ctx.dir });
    expect(result.stderr).not.toContain('✗');
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain(`pipeline ${pipeline}`);
    expect(result.stdout).toContain('  source pg (postgres)');
    expect(result.stdout).toMatch(/✓ wal_level: wal_level is logical/);
    expect(result.stdout).toMatch(/✓ replication_role: /);
    expect(result.stdout).toContain('  sink events (kafka)');
    expect(result.stdout).toMatch(/✓ kafka reachable: connected to /);
    expect(result.stdout).toMatch(/no problems found/);
    expect(result.stdout + result.stderr).not.toContain(LITERAL_SECRET);
    // Checks only read: no slot, no publication.
    expect(await ctx.slotsAndPublications()).toEqual({ slots: [], publications: [] });
  });

  it('names wal_level=replica, a role without REPLICATION and an unreachable Kafka, with fixes, and exits 1', async () => {
    await using postgres: PostgresService = await startPostgres({ settings: { wal_level: 'replica' } });
    const url = await postgres.createDatabase();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const role = uniqueName('plain');
    try {
      await admin.query('CREATE TABLE public.items (id int PRIMARY KEY)');
      await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
      await admin.query(`GRANT SELECT ON public.items TO ${role}`);
      const dsn = new URL(url);
      dsn.username = role;
      dsn.password = 'pw';
      const port = await closedPort();
      const file = join(await import('node:os').then((os) => os.tmpdir()), `${uniqueName('doctor')}.yaml`);
      await writeFile(
        file,
        `connections:
  - name: db
    type: postgres
    dsn: ${JSON.stringify(dsn.toString())}
  - name: events
    type: kafka
    properties:
      brokers: "127.0.0.1:${port}"
pipelines:
  - name: broken
    source:
      connection: db
      tables: [public.items]
    sink:
      connection: events
`,
      );
      const result = await runCli(['doctor', '--file', file, '--pipeline', 'broken']);
      expect(result.code, result.stdout + result.stderr).toBe(1);
      expect(result.stdout).toMatch(/✗ wal_level: wal_level is replica; logical decoding needs logical/);
      expect(result.stdout).toContain("fix: ALTER SYSTEM SET wal_level = 'logical'; -- then restart PostgreSQL");
      expect(result.stdout).toMatch(new RegExp(`✗ replication_role: role "?${role}"? lacks the REPLICATION attribute`));
      expect(result.stdout).toMatch(new RegExp(`fix: ALTER ROLE "?${role}"? REPLICATION;`));
      expect(result.stdout).toMatch(new RegExp(`✗ kafka reachable: cannot reach Kafka at 127\\.0\\.0\\.1:${port}`));
      expect(result.stdout).toMatch(/\d+ problems to fix/);

      const unknown = await runCli(['doctor', '--file', file, '--pipeline', 'nope']);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain("no pipeline 'nope'");
    } finally {
      await admin.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
      await admin.end();
    }
  });
});
