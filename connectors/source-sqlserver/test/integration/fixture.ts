import { randomBytes } from 'node:crypto';
import type { ChangeEvent, ConnectorContext, LogFields, Logger, Row, TableRef } from '@nanosync/core';
import { type SqlServerService, sqlServerUnavailableReason, startSqlServer } from '@nanosync/testcontainers';
import sql from 'mssql';
import { describe } from 'vitest';
import { configSchema } from '../../src/config.js';
import definition from '../../src/index.js';
import type { SqlServerSource } from '../../src/source.js';

/** The name every live test is skipped under when no SQL Server is reachable. */
export const NEEDS_SQL_SERVER = 'needs SQL Server: Docker or NANOSYNC_TEST_MSSQL_URL';

/** `false` when a SQL Server can be had, else the skip reason (evaluate at collection time). */
export async function liveSkip(): Promise<string | false> {
  return (await sqlServerUnavailableReason()) ? NEEDS_SQL_SERVER : false;
}

export const quoteIdent = (name: string) => `[${name.replace(/]/g, ']]')}]`;
export const quoteTable = (t: TableRef) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
export const literal = (s: string) => `N'${s.replace(/'/g, "''")}'`;
export const uniqueName = (prefix: string) => `${prefix}_${randomBytes(4).toString('hex')}`;

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

export interface MssqlFixture extends AsyncDisposable {
  service: SqlServerService;
  /** A pool on the CDC-enabled test database, as the service's login (sa in Docker). */
  admin: sql.ConnectionPool;
  exec(text: string): Promise<sql.IResult<Record<string, unknown>>>;
  /** Enable CDC on a table with a named capture instance (the DBA's procedure). */
  enableCdc(table: TableRef, instance?: string): Promise<string>;
  /** Wait until the capture job has processed everything committed so far. */
  waitForCapture(): Promise<void>;
  /** Connector properties for the test database (TLS on; the container's self-signed certificate trusted). */
  properties(extra?: Record<string, unknown>): Record<string, unknown>;
  /** A source built through the connector definition (config schema included), closed at dispose. */
  source(pipeline: string, extra?: Record<string, unknown>): Promise<SqlServerSource>;
  logs: string[];
}

export async function mssqlFixture(): Promise<MssqlFixture> {
  const service = await startSqlServer();
  const admin = new sql.ConnectionPool({
    server: service.host,
    port: service.port,
    user: service.user,
    password: service.password,
    database: service.database,
    options: { encrypt: true, trustServerCertificate: true },
    requestTimeout: 120_000,
  });
  await admin.connect();
  const exec = (text: string) => admin.request().batch(text);
  // Capture quickly so tests wait less: poll the log every second.
  await exec(
    "EXEC sys.sp_cdc_change_job @job_type = N'capture', @pollinginterval = 1; EXEC sys.sp_cdc_stop_job @job_type = N'capture';",
  ).catch(() => undefined);
  await exec("EXEC sys.sp_cdc_start_job @job_type = N'capture';").catch(() => undefined);
  await exec(`IF (SELECT snapshot_isolation_state FROM sys.databases WHERE database_id = DB_ID()) = 0
    ALTER DATABASE ${quoteIdent(service.database)} SET ALLOW_SNAPSHOT_ISOLATION ON;`);
  await exec(`IF OBJECT_ID(N'dbo.ns_heartbeat') IS NULL
  BEGIN
    CREATE TABLE dbo.ns_heartbeat (id int IDENTITY PRIMARY KEY, at datetime2 NOT NULL);
    EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'ns_heartbeat', @capture_instance = N'ns_heartbeat', @role_name = NULL;
  END`);
  const logs: string[] = [];
  const sources: SqlServerSource[] = [];
  const properties = (extra: Record<string, unknown> = {}) => ({
    host: service.host,
    port: service.port,
    user: service.user,
    password: service.password,
    database: service.database,
    trust_server_certificate: true,
    poll_interval: '100ms',
    ...extra,
  });
  return {
    service,
    admin,
    exec,
    logs,
    properties,
    async enableCdc(table, instance = `${table.schema}_${table.name}`.replace(/[^A-Za-z0-9_]/g, '_')) {
      await exec(
        `EXEC sys.sp_cdc_enable_table @source_schema = ${literal(table.schema)}, @source_name = ${literal(table.name)}, @capture_instance = ${literal(instance)}, @role_name = NULL;`,
      );
      return instance;
    },
    async waitForCapture() {
      // The capture job reads the log in order: once a marker row committed now is in its
      // change table, everything committed before it is captured too.
      const id = (
        await admin
          .request()
          .query<{ id: number }>('INSERT INTO dbo.ns_heartbeat (at) OUTPUT inserted.id VALUES (SYSDATETIME())')
      ).recordset[0]!.id;
      for (let i = 0; i < 600; i++) {
        const seen = await admin
          .request()
          .input('id', id)
          .query<{ n: number }>('SELECT COUNT(*) AS n FROM cdc.ns_heartbeat_CT WHERE id = @id');
        if (seen.recordset[0]!.n > 0) return;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error('the CDC capture job did not catch up within 120 s (is SQL Server Agent running?)');
    },
    async source(pipeline, extra = {}) {
      const parsed = configSchema.safeParse(properties(extra));
      if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
      const context: ConnectorContext = { pipeline, logger: memoryLogger(logs), signal: new AbortController().signal };
      const source = (await definition.create(parsed.data, context)) as SqlServerSource;
      sources.push(source);
      return source;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(sources.map((s) => s.close().catch(() => undefined)));
      await admin.close().catch(() => undefined);
      await service[Symbol.asyncDispose]();
    },
  };
}

/** Last event per key (a delete removes it), like a compacted topic. */
export function reduce(events: ChangeEvent[], rows: Row[] = []): Map<string, Row> {
  const out = new Map<string, Row>();
  for (const row of rows) out.set(JSON.stringify(row.id), row);
  for (const e of events) {
    const key = JSON.stringify(Object.values(e.key)[0]);
    if (e.op === 'truncate') out.clear();
    else if (e.op === 'delete') out.delete(key);
    else out.set(key, e.after!);
  }
  return out;
}

/** A describe block that runs against a live SQL Server, or is reported skipped by name. */
export function liveDescribe(title: string, skip: string | false, body: () => void): void {
  if (skip) describe.skip(`${title} — skipped: ${skip}`, body);
  else describe(title, body);
}

/** Every row of a table through the source's own planning and partition reads. */
export async function snapshotRows(
  source: SqlServerSource,
  table: TableRef,
  targetRowsPerPartition = 1000,
): Promise<Row[]> {
  const [schema] = await source.describe([table]);
  const partitions = await source.planPartitions(schema!, { targetRowsPerPartition });
  const rows: Row[] = [];
  for (const partition of JSON.parse(JSON.stringify(partitions))) {
    for await (const chunk of source.readPartition(schema!, partition, {
      maxRowsPerChunk: 500,
      signal: new AbortController().signal,
    }))
      rows.push(...chunk);
  }
  return rows;
}
