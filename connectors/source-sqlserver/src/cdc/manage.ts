/**
 * `manage_cdc: true`: nanosync enables CDC itself at `open` and removes exactly what it
 * enabled at `drop`, leaving the database as it found it.
 *
 * What it did is written down in the database itself — an extended property
 * `nanosync_cdc:<pipeline>` on the database holding `{ db, role, instances }` — so a fresh
 * process (`pipeline delete` runs on a new source instance) knows what to undo, and a
 * capture instance or CDC setting a DBA made is never touched:
 *  - CDC on the database is enabled only when it was off (`db: true`), and disabled at drop
 *    only when no capture instance is left that someone else made;
 *  - a table gets a capture instance `nanosync_<pipeline>_<schema>_<table>` only when it
 *    has none (a table a DBA already captures is read through the DBA's instance);
 *  - the gating role (`nanosync_<pipeline>` unless `cdc_role` says otherwise) is recorded
 *    when `sp_cdc_enable_table` had to create it, and dropped at drop.
 */
import { createHash } from 'node:crypto';
import type { Logger, TableRef } from '@nanosync/core';
import sql from 'mssql';
import { quoteIdent, quoteLiteral, tableLabel } from '../errors.js';

export interface ManagedCdcRecord {
  db: boolean;
  role: string | null;
  instances: { schema: string; name: string; instance: string }[];
}

const MAX_INSTANCE_NAME = 100;

function sanitize(part: string): string {
  return part.replace(/[^A-Za-z0-9_]/g, '_');
}

/** `nanosync_<pipeline>_<schema>_<table>`, made safe and short enough (a hash keeps long names unique). */
export function managedInstanceName(pipeline: string, table: TableRef): string {
  const name = `nanosync_${sanitize(pipeline)}_${sanitize(table.schema)}_${sanitize(table.name)}`;
  if (name.length <= MAX_INSTANCE_NAME && name === `nanosync_${pipeline}_${table.schema}_${table.name}`) return name;
  const hash = createHash('sha256')
    .update(`${pipeline}\u0000${table.schema}\u0000${table.name}`)
    .digest('hex')
    .slice(0, 8);
  return `${name.slice(0, MAX_INSTANCE_NAME - 9)}_${hash}`;
}

export function managedRoleName(pipeline: string): string {
  return `nanosync_${sanitize(pipeline)}`.slice(0, 128);
}

export function recordPropertyName(pipeline: string): string {
  return `nanosync_cdc:${pipeline}`;
}

/** The T-SQL `open` runs to capture `table` (also printed by `check()` as the fix). */
export function enableTableSql(
  table: TableRef,
  instance: string,
  role: string | null,
  keyIndex: string | null,
): string {
  return `EXEC sys.sp_cdc_enable_table @source_schema = ${quoteLiteral(table.schema)}, @source_name = ${quoteLiteral(table.name)}, @capture_instance = ${quoteLiteral(instance)}, @role_name = ${role === null ? 'NULL' : quoteLiteral(role)}${keyIndex ? `, @index_name = ${quoteLiteral(keyIndex)}` : ''}, @supports_net_changes = 0;`;
}

export function disableTableSql(entry: { schema: string; name: string; instance: string }): string {
  return `EXEC sys.sp_cdc_disable_table @source_schema = ${quoteLiteral(entry.schema)}, @source_name = ${quoteLiteral(entry.name)}, @capture_instance = ${quoteLiteral(entry.instance)};`;
}

export async function readRecord(pool: sql.ConnectionPool, pipeline: string): Promise<ManagedCdcRecord | undefined> {
  const result = await pool
    .request()
    .input('name', sql.NVarChar(128), recordPropertyName(pipeline))
    .query<{ value: string | null }>(
      'SELECT CAST(value AS nvarchar(4000)) AS value FROM sys.extended_properties WHERE class = 0 AND name = @name',
    );
  const text = result.recordset[0]?.value;
  if (!text) return undefined;
  return JSON.parse(text) as ManagedCdcRecord;
}

async function writeRecord(
  pool: sql.ConnectionPool,
  pipeline: string,
  record: ManagedCdcRecord | undefined,
): Promise<void> {
  const request = pool.request().input('name', sql.NVarChar(128), recordPropertyName(pipeline));
  if (record === undefined) {
    await request.query(
      'IF EXISTS (SELECT 1 FROM sys.extended_properties WHERE class = 0 AND name = @name) EXEC sys.sp_dropextendedproperty @name = @name;',
    );
    return;
  }
  request.input('value', sql.NVarChar(4000), JSON.stringify(record));
  await request.query(`IF EXISTS (SELECT 1 FROM sys.extended_properties WHERE class = 0 AND name = @name)
  EXEC sys.sp_updateextendedproperty @name = @name, @value = @value;
ELSE
  EXEC sys.sp_addextendedproperty @name = @name, @value = @value;`);
}

/**
 * Enable CDC where it is missing for `tables` (each with its key index) and record what was
 * done. Returns the record (also when nothing had to be done).
 */
export async function enableManagedCdc(
  pool: sql.ConnectionPool,
  o: {
    pipeline: string;
    database: string;
    role: string | null;
    tables: { ref: TableRef; objectId: number; keyIndex: string }[];
    logger: Logger;
  },
): Promise<ManagedCdcRecord> {
  const record: ManagedCdcRecord = (await readRecord(pool, o.pipeline)) ?? { db: false, role: null, instances: [] };
  const db = await pool
    .request()
    .query<{ is_cdc_enabled: boolean }>('SELECT is_cdc_enabled FROM sys.databases WHERE database_id = DB_ID()');
  if (!db.recordset[0]?.is_cdc_enabled) {
    await pool.request().batch('EXEC sys.sp_cdc_enable_db;');
    record.db = true;
    await writeRecord(pool, o.pipeline, record);
    o.logger.info('enabled CDC on the database (manage_cdc)', { database: o.database });
  }
  if (o.role !== null) {
    const exists = await pool
      .request()
      .input('role', sql.NVarChar(128), o.role)
      .query<{ id: number | null }>('SELECT DATABASE_PRINCIPAL_ID(@role) AS id');
    if (exists.recordset[0]?.id == null && record.role === null) {
      record.role = o.role;
      await writeRecord(pool, o.pipeline, record);
    }
  }
  const captured = await pool
    .request()
    .query<{ source_object_id: number }>('SELECT DISTINCT source_object_id FROM cdc.change_tables');
  const capturedIds = new Set(captured.recordset.map((r) => r.source_object_id));
  for (const t of o.tables) {
    if (capturedIds.has(t.objectId)) continue;
    const instance = managedInstanceName(o.pipeline, t.ref);
    // Record first: a crash right after enabling still leaves the instance ours to remove.
    if (!record.instances.some((i) => i.instance === instance)) {
      record.instances.push({ schema: t.ref.schema, name: t.ref.name, instance });
      await writeRecord(pool, o.pipeline, record);
    }
    await pool.request().batch(enableTableSql(t.ref, instance, o.role, t.keyIndex));
    o.logger.info('enabled CDC on the table (manage_cdc)', { table: tableLabel(t.ref), captureInstance: instance });
  }
  return record;
}

/** Undo what {@link enableManagedCdc} recorded for the pipeline; nothing else. Safe to repeat. */
export async function disableManagedCdc(pool: sql.ConnectionPool, pipeline: string, logger: Logger): Promise<void> {
  const record = await readRecord(pool, pipeline);
  if (!record) return;
  const existing = await pool
    .request()
    .query<{ capture_instance: string }>('SELECT capture_instance FROM cdc.change_tables');
  const present = new Set(existing.recordset.map((r) => r.capture_instance));
  for (const entry of record.instances) {
    if (!present.has(entry.instance)) continue;
    await pool.request().batch(disableTableSql(entry));
    present.delete(entry.instance);
    logger.info('disabled the capture instance nanosync created', {
      table: `${entry.schema}.${entry.name}`,
      captureInstance: entry.instance,
    });
  }
  if (record.role) {
    await pool
      .request()
      .batch(`IF DATABASE_PRINCIPAL_ID(${quoteLiteral(record.role)}) IS NOT NULL DROP ROLE ${quoteIdent(record.role)};`)
      .catch((err: Error) =>
        logger.warn('could not drop the CDC gating role nanosync created', { role: record.role, error: err.message }),
      );
  }
  if (record.db) {
    const others = await pool
      .request()
      .query<{ n: number }>(
        "SELECT COUNT(*) AS n FROM sys.extended_properties WHERE class = 0 AND name LIKE N'nanosync[_]cdc:%'",
      );
    if (present.size === 0 && (others.recordset[0]?.n ?? 0) <= 1) {
      await pool.request().batch('EXEC sys.sp_cdc_disable_db;');
      logger.info('disabled CDC on the database (nanosync had enabled it)');
    } else {
      logger.info('left CDC enabled on the database: other capture instances or pipelines use it');
    }
  }
  await writeRecord(pool, pipeline, undefined);
}
