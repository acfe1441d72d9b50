import { randomBytes } from 'node:crypto';
import type { ConnectorContext, LogFields, Logger, Row, Source, TableRef, TableSchema } from '@nanosync/core';
import { type PostgresService, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import definition from '../../src/index.js';
import type { PostgresSource } from '../../src/source.js';

export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;
export const quoteTable = (t: TableRef) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
export const uniqueName = (prefix: string) => `${prefix}_${randomBytes(4).toString('hex')}`;

/** Collects log lines so a test can assert on warnings; prints nothing. */
export function memoryLogger(lines: string[] = []): Logger & { lines: string[] } {
  const write = (level: string) => (message: string, fields?: LogFields) => {
    lines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
  };
  const logger = {
    lines,
    debug: write('DBG'),
    info: write('INF'),
    warn: write('WRN'),
    error: write('ERR'),
    child: () => logger,
  };
  return logger;
}

export interface PgFixture extends AsyncDisposable {
  service: PostgresService;
  /** Superuser URL of the fresh database. */
  adminUrl: string;
  database: string;
  /** Superuser client on the fresh database (replaced by `reconnectAdmin`). */
  admin: pg.Client;
  /** A new `admin` client, e.g. after the server restarted under the old one. */
  reconnectAdmin(): Promise<pg.Client>;
  /** The least-privilege role: LOGIN REPLICATION, nothing else until granted. */
  role: string;
  rolePassword: string;
  /** Source config (connector properties) for the least-privilege role. */
  roleProperties(extra?: Record<string, unknown>): Record<string, unknown>;
  /** GRANT USAGE on the schemas and SELECT on the tables to the role. */
  grantRead(tables: TableRef[]): Promise<void>;
  /** As an owner: CREATE PUBLICATION nanosync_pub_<pipeline> FOR TABLE … and hand it to the role. */
  preparePublication(pipeline: string, tables: TableRef[]): Promise<void>;
  /**
   * A source built through the connector definition (config schema included), closed at
   * dispose; `context` adds to the connector context (a pipeline memory…).
   */
  source(
    pipeline: string,
    extra?: Record<string, unknown>,
    context?: Partial<ConnectorContext>,
  ): Promise<PostgresSource>;
  /** Log lines of every source made by `source()`. */
  logs: string[];
  /** A second client logged in as the role (for session-setting checks). */
  roleClient(): Promise<pg.Client>;
}

export async function pgFixture(
  options: { service?: PostgresService; roleAttributes?: string } = {},
): Promise<PgFixture> {
  const service = options.service ?? (await startPostgres());
  const database = uniqueName('ns_src');
  const adminUrl = await service.createDatabase(database);
  const connectAdmin = async () => {
    const client = new pg.Client({ connectionString: adminUrl });
    // A server restart (fault tests) breaks the connection: that must not crash the test process.
    client.on('error', () => {});
    await client.connect();
    return client;
  };
  const admin = await connectAdmin();
  const role = uniqueName('ns_role');
  const rolePassword = `pw_${randomBytes(6).toString('hex')}`;
  await admin.query(
    `CREATE ROLE ${quoteIdent(role)} LOGIN ${options.roleAttributes ?? 'REPLICATION'} PASSWORD '${rolePassword}'`,
  );
  const sources: Source[] = [];
  const clients: pg.Client[] = [];
  const roleProperties = (extra: Record<string, unknown> = {}) => ({
    host: service.host,
    port: service.port,
    user: role,
    password: rolePassword,
    database,
    sslmode: 'disable',
    ...extra,
  });
  const fixture: PgFixture = {
    service,
    adminUrl,
    database,
    admin,
    role,
    rolePassword,
    roleProperties,
    async reconnectAdmin() {
      const old = fixture.admin;
      fixture.admin = await connectAdmin();
      await old.end().catch(() => {});
      return fixture.admin;
    },
    async grantRead(tables) {
      for (const schema of new Set(tables.map((t) => t.schema)))
        await fixture.admin.query(`GRANT USAGE ON SCHEMA ${quoteIdent(schema)} TO ${quoteIdent(role)}`);
      for (const t of tables) await fixture.admin.query(`GRANT SELECT ON ${quoteTable(t)} TO ${quoteIdent(role)}`);
    },
    async preparePublication(pipeline, tables) {
      const name = `nanosync_pub_${pipeline.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
      await fixture.admin.query(
        `CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${tables.map(quoteTable).join(', ')}`,
      );
      await fixture.admin.query(`ALTER PUBLICATION ${quoteIdent(name)} OWNER TO ${quoteIdent(role)}`);
    },
    logs: [],
    async source(pipeline, extra, more = {}) {
      const parsed = definition.configSchema.safeParse(roleProperties(extra));
      if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
      const context: ConnectorContext = {
        pipeline,
        logger: memoryLogger(fixture.logs),
        signal: new AbortController().signal,
        ...more,
      };
      const source = (await definition.create(parsed.data, context)) as PostgresSource;
      sources.push(source);
      return source;
    },
    async roleClient() {
      const client = new pg.Client({
        host: service.host,
        port: service.port,
        user: role,
        password: rolePassword,
        database,
      });
      await client.connect();
      clients.push(client);
      return client;
    },
    async [Symbol.asyncDispose]() {
      await Promise.allSettled(sources.map((s) => s.close()));
      await Promise.allSettled(clients.map((c) => c.end()));
      const admin = await fixture.admin.query('SELECT 1').then(
        () => fixture.admin,
        () => fixture.reconnectAdmin(),
      );
      // Slots keep a database alive (DROP DATABASE refuses): remove the ones made here.
      await admin
        .query(
          `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`,
          [database],
        )
        .catch(() => {});
      for (let i = 0; i < 20; i++) {
        const left = await admin
          .query(`SELECT slot_name FROM pg_replication_slots WHERE database = $1`, [database])
          .then((r) => r.rows.map((row) => String(row.slot_name)))
          .catch(() => []);
        if (left.length === 0) break;
        for (const slot of left) await admin.query('SELECT pg_drop_replication_slot($1)', [slot]).catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await admin.end().catch(() => {});
      const su = new pg.Client({ connectionString: service.url });
      await su.connect();
      try {
        await su.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
        await su.query(`DROP ROLE IF EXISTS ${quoteIdent(role)}`);
      } finally {
        await su.end();
      }
    },
  };
  return fixture;
}

/** Every row of every partition of a table, read the way core would (planned, then each partition). */
export async function readAll(
  source: Source,
  schema: TableSchema,
  opts: { targetRowsPerPartition?: number; snapshotToken?: string; maxRowsPerChunk?: number } = {},
): Promise<{ rows: Row[]; partitions: number; perPartition: number[]; chunkSizes: number[] }> {
  const plan = await source.planPartitions(schema, { targetRowsPerPartition: opts.targetRowsPerPartition ?? 100_000 });
  const rows: Row[] = [];
  const perPartition: number[] = [];
  const chunkSizes: number[] = [];
  for (const partition of plan) {
    let n = 0;
    for await (const chunk of source.readPartition(schema, partition, {
      maxRowsPerChunk: opts.maxRowsPerChunk ?? 1000,
      signal: new AbortController().signal,
      ...(opts.snapshotToken ? { snapshotToken: opts.snapshotToken } : {}),
    })) {
      chunkSizes.push(chunk.length);
      rows.push(...chunk);
      n += chunk.length;
    }
    perPartition.push(n);
  }
  return { rows, partitions: plan.length, perPartition, chunkSizes };
}
