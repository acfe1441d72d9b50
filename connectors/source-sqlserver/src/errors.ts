import { defineErrorArea, NanosyncError, redact } from '@nanosync/core';

/** The SQL Server source's error codes (block NS_M5000–NS_M5999). */
export const sqlServerErrors = defineErrorArea({
  area: 'SQL Server source',
  letter: 'M',
  range: [5000, 5999],
  codes: {
    MssqlConnection: {
      code: 'NS_M5001',
      meaning:
        'SQL Server cannot be reached, refused the connection, or dropped it. Retried while the cause looks temporary.',
      fix: 'Check the host, port, database and TLS settings of the connection and that the server accepts TCP connections from this machine.',
    },
    MssqlCdcDisabled: {
      code: 'NS_M5002',
      meaning: 'Change data capture is not enabled on the database or on a table the pipeline reads.',
      fix: 'Enable it with `EXEC sys.sp_cdc_enable_db` and `EXEC sys.sp_cdc_enable_table …` (the message prints the statement), and make sure SQL Server Agent runs.',
    },
    MssqlChangesLost: {
      code: 'NS_M5003',
      meaning:
        "The change tables no longer hold the changes after the pipeline's checkpoint (the CDC cleanup job removed them).",
      fix: 'Lengthen the CDC retention (`sys.sp_cdc_change_job @retention`), then re-snapshot the pipeline (delete it and apply it again).',
    },
    MssqlPermission: {
      code: 'NS_M5004',
      meaning:
        'The login failed, or the user lacks a permission nanosync needs (SELECT on the tables or the cdc schema).',
      fix: 'Run the GRANT the message prints, or correct the user and password.',
    },
    MssqlTableNotFound: {
      code: 'NS_M5005',
      meaning: 'A table the pipeline names does not exist in the database.',
      fix: 'Correct the `tables` entry (`schema.table`).',
    },
    MssqlNoKey: {
      code: 'NS_M5006',
      meaning: 'A table has no primary key and no usable unique index, so its changes cannot be keyed.',
      fix: 'Add a primary key, or a unique index on non-null columns.',
    },
    MssqlValue: {
      code: 'NS_M5007',
      meaning:
        'A column value could not be converted into the event model; the message names the table, column and key.',
      fix: 'Correct the row, or leave the column out of the pipeline; report it if the value is valid SQL Server data.',
    },
    MssqlCheck: {
      code: 'NS_M5008',
      meaning: 'The source is in a state nanosync will not replicate from; the message says which.',
      fix: 'Apply the fix the message prints.',
    },
    MssqlProtocol: {
      code: 'NS_M5009',
      meaning: 'A stored position or partition bound is not one this source wrote.',
      fix: 'Report it with the log lines around it; if the state database was copied between pipelines, re-snapshot this one.',
    },
  },
});
export const MssqlErrorCode = sqlServerErrors.code;

/**
 * `[name]` with `]` doubled: the only way an identifier enters SQL text. Names with dots,
 * spaces, quotes, brackets or unicode stay one identifier; a name shaped like SQL is only
 * ever a name.
 */
export function quoteIdent(name: string): string {
  return `[${name.replace(/]/g, ']]')}]`;
}

export function quoteTable(table: { schema: string; name: string }): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
}

/** An N'…' literal with `'` doubled: for printed fix SQL and for names passed as values. */
export function quoteLiteral(value: string): string {
  return `N'${value.replace(/'/g, "''")}'`;
}

export function tableLabel(table: { schema: string; name: string }): string {
  return `${table.schema}.${table.name}`;
}

interface MssqlErrorLike {
  code?: string;
  number?: number;
  message?: string;
  originalError?: { code?: string; message?: string; cause?: unknown };
}

function shape(err: unknown): MssqlErrorLike {
  return typeof err === 'object' && err !== null ? (err as MssqlErrorLike) : {};
}

/** Server error numbers that a retry may cure: deadlock victim, snapshot update conflict, failover, throttling. */
const TRANSIENT_NUMBERS = new Set([
  1205, // deadlock victim
  3960, // snapshot isolation update conflict
  4060, // cannot open database (failover in progress)
  40197,
  40501,
  40613,
  49918,
  49919,
  49920, // Azure SQL: service busy / database unavailable
  10928,
  10929, // resource limits
  233,
  10053,
  10054,
  10060,
  64, // connection-level errors surfaced as server numbers
]);

const TRANSIENT_CODES = new Set([
  'ESOCKET',
  'ECONNCLOSED',
  'ETIMEOUT',
  'ENOCONN',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** Whether a failure talking to the server may go away by itself. */
export function isTransientMssqlError(err: unknown): boolean {
  const e = shape(err);
  if (e.code && TRANSIENT_CODES.has(e.code)) return true;
  if (e.originalError?.code && TRANSIENT_CODES.has(e.originalError.code)) return true;
  if (typeof e.number === 'number' && TRANSIENT_NUMBERS.has(e.number)) return true;
  return /Connection lost|socket hang up|Connection is closed|read ECONNRESET/i.test(e.message ?? '');
}

export function describeEndpoint(target: { host: string; port: number; database: string }): string {
  return `${target.host}:${target.port}/${target.database}`;
}

/** Wrap a driver error: retriable when transient, message redacted, login failures as permission errors. */
export function connectionError(
  err: unknown,
  target: { host: string; port: number; database: string },
  doing: string,
): NanosyncError {
  if (err instanceof NanosyncError) return err;
  const e = shape(err);
  const message = redact(e.message ?? String(err));
  if (e.code === 'ELOGIN' || e.number === 18456 || e.number === 4060) {
    return new NanosyncError(MssqlErrorCode.MssqlPermission, `${doing} on ${describeEndpoint(target)}: ${message}`, {
      cause: err,
      retriable: e.number === 4060,
    });
  }
  return new NanosyncError(
    MssqlErrorCode.MssqlConnection,
    `${doing} on ${describeEndpoint(target)} failed: ${message}${e.number ? ` (error ${e.number})` : ''}`,
    { cause: err, retriable: isTransientMssqlError(err) },
  );
}

export function tableNotFound(table: { schema: string; name: string }, database: string): NanosyncError {
  return new NanosyncError(
    MssqlErrorCode.MssqlTableNotFound,
    `table ${quoteTable(table)} not found in database ${quoteIdent(database)} (check the schema part; under a case-sensitive collation names are case-sensitive)`,
    { details: { table: tableLabel(table), database } },
  );
}

export function noKey(table: { schema: string; name: string }): NanosyncError {
  return new NanosyncError(
    MssqlErrorCode.MssqlNoKey,
    `table ${quoteTable(table)} has no primary key and no unique index on non-nullable columns. ${noKeyFix(table)}`,
    {
      details: { table: tableLabel(table) },
    },
  );
}

export function noKeyFix(table: { schema: string; name: string }): string {
  return `Add one, e.g. ALTER TABLE ${quoteTable(table)} ADD CONSTRAINT ${quoteIdent(`PK_${table.name}`)} PRIMARY KEY (<columns>); or CREATE UNIQUE INDEX ${quoteIdent(`UX_${table.name}`)} ON ${quoteTable(table)} (<non-nullable columns>);`;
}

export function valueError(err: unknown, where: { table: string; column: string; key?: string }): NanosyncError {
  const message = err instanceof Error ? err.message : String(err);
  return new NanosyncError(
    MssqlErrorCode.MssqlValue,
    `table "${where.table}" column "${where.column}"${where.key ? ` key ${where.key}` : ''}: ${message}`,
    { cause: err, details: { table: where.table, column: where.column, key: where.key } },
  );
}

export function protocolError(message: string): NanosyncError {
  return new NanosyncError(MssqlErrorCode.MssqlProtocol, message);
}

export function cdcNotEnabledOnTable(table: { schema: string; name: string }): NanosyncError {
  return new NanosyncError(
    MssqlErrorCode.MssqlCdcDisabled,
    `table ${quoteTable(table)} has no CDC capture instance (CDC is not enabled on it, or it was disabled). Fix: EXEC sys.sp_cdc_enable_table @source_schema = ${quoteLiteral(table.schema)}, @source_name = ${quoteLiteral(table.name)}, @role_name = NULL; — or set manage_cdc: true — then re-snapshot the pipeline, because changes made while CDC was off were not recorded`,
    { details: { table: tableLabel(table) } },
  );
}

/**
 * The cleanup job removed change rows the pipeline had not read. Names the table, the
 * capture instance, the LSN range that may be lost, and both ways out.
 */
export function changesLost(
  table: { schema: string; name: string },
  gap: { instance: string; lostAfter: string; lostBefore: string },
  pipeline: string,
): NanosyncError {
  return new NanosyncError(
    MssqlErrorCode.MssqlChangesLost,
    `changes to table ${quoteTable(table)} after LSN ${gap.lostAfter} and before LSN ${gap.lostBefore} are gone from capture instance ${quoteIdent(gap.instance)}: the CDC cleanup job removed them before pipeline "${pipeline}" read them (the pipeline was stopped or behind for longer than the retention). ` +
      `Fix: raise the retention (EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = <minutes>;) and re-snapshot the pipeline (nanosync pipeline resnapshot ${pipeline}), or set on_retention_gap: resnapshot to have the table re-read automatically`,
    {
      details: {
        table: tableLabel(table),
        captureInstance: gap.instance,
        lostAfter: gap.lostAfter,
        lostBefore: gap.lostBefore,
      },
    },
  );
}
