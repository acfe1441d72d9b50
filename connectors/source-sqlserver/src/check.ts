import type { CheckResult, TableRef } from '@nanosync/core';
import { NanosyncError } from '@nanosync/core';
import sql from 'mssql';
import { describeTable, type MssqlTable, readCaptureInstances, readColumns } from './catalog.js';
import { enableTableSql, managedInstanceName } from './cdc/manage.js';
import { noKeyFix, quoteIdent, quoteLiteral, quoteTable, tableLabel } from './errors.js';

const ok = (name: string, message: string): CheckResult => ({ name, ok: true, message });
const bad = (name: string, message: string, fix?: string, severity: 'error' | 'warning' = 'error'): CheckResult =>
  fix === undefined ? { name, ok: false, message, severity } : { name, ok: false, message, fix, severity };

/** Retention (minutes) below which a stop of a day or more would lose changes. */
export const MIN_RETENTION_MINUTES = 24 * 60;

interface ServerRow {
  login: string;
  db_user: string;
  database: string;
  major: number;
  engine_edition: number;
  is_cdc_enabled: boolean;
  snapshot_isolation: string;
  is_sysadmin: number | null;
  is_db_owner: number | null;
  view_db_state: number | null;
}

/**
 * Preflight for a pipeline: read-only queries, one result per thing that can stop it, each
 * failure with the T-SQL that fixes it. Never changes anything on the server.
 */
export async function runChecks(
  pool: sql.ConnectionPool,
  o: { tables: TableRef[]; database: string; pipeline: string; manageCdc: boolean; cdcRole: string | null },
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const server = (
    await pool
      .request()
      .query<ServerRow>(`SELECT SUSER_SNAME() AS login, USER_NAME() AS db_user, DB_NAME() AS [database],
       CAST(SERVERPROPERTY('ProductMajorVersion') AS int) AS major, CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition,
       d.is_cdc_enabled, d.snapshot_isolation_state_desc AS snapshot_isolation,
       IS_SRVROLEMEMBER('sysadmin') AS is_sysadmin, IS_MEMBER('db_owner') AS is_db_owner,
       HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'VIEW DATABASE STATE') AS view_db_state
  FROM sys.databases d WHERE d.database_id = DB_ID()`)
  ).recordset[0]!;
  const user = quoteIdent(server.db_user);
  const db = quoteIdent(server.database);

  results.push(
    server.major >= 13
      ? ok('version', `SQL Server major version ${server.major}`)
      : bad('version', `SQL Server major version ${server.major}: nanosync needs SQL Server 2016 SP1 or newer`),
  );

  if (server.is_cdc_enabled) results.push(ok('cdc_database', `CDC is enabled on database ${db}`));
  else if (o.manageCdc)
    results.push(
      server.is_sysadmin === 1
        ? bad(
            'cdc_database',
            `CDC is not enabled on database ${db}; manage_cdc will enable it at start`,
            undefined,
            'warning',
          )
        : bad(
            'cdc_database',
            `CDC is not enabled on database ${db}, and enabling it (manage_cdc) needs sysadmin, which ${quoteIdent(server.login)} is not`,
            `USE ${db}; EXEC sys.sp_cdc_enable_db;  -- as a sysadmin`,
          ),
    );
  else
    results.push(
      bad(
        'cdc_database',
        `CDC is not enabled on database ${db}`,
        `USE ${db}; EXEC sys.sp_cdc_enable_db;  -- as a sysadmin`,
      ),
    );

  results.push(
    server.snapshot_isolation === 'ON'
      ? ok('snapshot_isolation', 'snapshot isolation is allowed: each snapshot partition reads one consistent view')
      : bad(
          'snapshot_isolation',
          `ALLOW_SNAPSHOT_ISOLATION is ${server.snapshot_isolation} on ${db}: snapshot partitions read under READ COMMITTED (still correct through the stream's replay, but they take shared locks)`,
          `ALTER DATABASE ${db} SET ALLOW_SNAPSHOT_ISOLATION ON;`,
          'warning',
        ),
  );

  results.push(
    server.view_db_state === 1
      ? ok('view_database_state', `${user} has VIEW DATABASE STATE (row counts and statistics for partition planning)`)
      : bad(
          'view_database_state',
          `${user} lacks VIEW DATABASE STATE, needed to read row counts and key statistics when planning snapshot partitions`,
          `GRANT VIEW DATABASE STATE TO ${user};`,
        ),
  );

  if (server.is_cdc_enabled) {
    const cdcSelect = (
      await pool.request().query<{ ok: number | null }>("SELECT HAS_PERMS_BY_NAME(N'cdc', 'SCHEMA', 'SELECT') AS ok")
    ).recordset[0]?.ok;
    results.push(
      cdcSelect === 1
        ? ok('cdc_schema', `${user} can read the cdc schema (capture instances, change tables, LSN time mapping)`)
        : bad(
            'cdc_schema',
            `${user} cannot SELECT from the cdc schema, where the capture instances, change tables and LSN time mapping are`,
            `GRANT SELECT ON SCHEMA::cdc TO ${user};`,
          ),
    );
    results.push(...(await agentChecks(pool, db)));
  }

  const instances = server.is_cdc_enabled ? await readCaptureInstances(pool) : [];
  for (const ref of o.tables) {
    const name = `table ${tableLabel(ref)}`;
    let table: MssqlTable;
    try {
      table = await describeTable(pool, ref, o.database);
    } catch (err) {
      if (!(err instanceof NanosyncError)) throw err;
      const message = err.message.replace(/^\[[A-Z0-9_]+\] /, '');
      results.push(bad(name, message, err.code === 'NS_M5006' ? noKeyFix(ref) : undefined));
      continue;
    }
    const perms = (
      await pool
        .request()
        .input('object', sql.NVarChar(520), quoteTable(ref))
        .query<{ can_select: number | null }>(`SELECT HAS_PERMS_BY_NAME(@object, 'OBJECT', 'SELECT') AS can_select`)
    ).recordset[0];
    if (perms?.can_select !== 1) {
      results.push(
        bad(
          `${name} select`,
          `${user} cannot SELECT from ${quoteTable(ref)}`,
          `GRANT SELECT ON ${quoteTable(ref)} TO ${user};`,
        ),
      );
    }
    const own = instances.filter((i) => i.sourceObjectId === table.objectId);
    if (own.length === 0) {
      const instance = managedInstanceName(o.pipeline, ref);
      const role = o.cdcRole;
      results.push(
        o.manageCdc
          ? bad(
              name,
              `${quoteTable(ref)} has no capture instance; manage_cdc will create ${quoteIdent(instance)} at start`,
              undefined,
              'warning',
            )
          : bad(
              name,
              `CDC is not enabled on ${quoteTable(ref)} (no capture instance in cdc.change_tables)`,
              `USE ${db}; ${enableTableSql(ref, `${ref.schema}_${ref.name}`, role, table.keyIsPrimary ? null : table.keyIndex)}`,
            ),
      );
      continue;
    }
    const newest = own.at(-1)!;
    results.push(
      ok(
        name,
        `captured by ${own.map((i) => quoteIdent(i.name)).join(' and ')}; key ${table.keyColumns.map(quoteIdent).join(', ')}`,
      ),
    );
    for (const instance of own) {
      if (!instance.roleName) continue;
      const member = (
        await pool
          .request()
          .input('role', sql.NVarChar(128), instance.roleName)
          .query<{ member: number | null }>('SELECT IS_MEMBER(@role) AS member')
      ).recordset[0];
      if (member?.member !== 1 && server.is_db_owner !== 1)
        results.push(
          bad(
            `${name} gating role`,
            `capture instance ${quoteIdent(instance.name)} is gated by role ${quoteIdent(instance.roleName)}, which ${user} is not a member of (its changes would be invisible)`,
            `ALTER ROLE ${quoteIdent(instance.roleName)} ADD MEMBER ${user};`,
          ),
        );
    }
    const captured = new Set((await readColumns(pool, newest.changeTableObjectId)).map((c) => c.name));
    const missing = table.columns.filter((c) => !captured.has(c.name)).map((c) => c.name);
    if (missing.length > 0)
      results.push(
        bad(
          `${name} columns`,
          `columns ${missing.map(quoteIdent).join(', ')} of ${quoteTable(ref)} are not in capture instance ${quoteIdent(newest.name)} and will not be streamed`,
          `${enableTableSql(ref, `${newest.name}_v2`, newest.roleName, null)} -- then, once the pipeline follows it: EXEC sys.sp_cdc_disable_table @source_schema = ${quoteLiteral(ref.schema)}, @source_name = ${quoteLiteral(ref.name)}, @capture_instance = ${quoteLiteral(newest.name)};`,
          'warning',
        ),
      );
  }
  return results;
}

/** SQL Server Agent runs the capture and cleanup jobs: without it no change is ever captured. */
async function agentChecks(pool: sql.ConnectionPool, db: string): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  try {
    const jobs = await pool.request().query<{ job_type: string; enabled: number | null; retention: number | null }>(
      `SELECT j.job_type, s.enabled, j.retention FROM msdb.dbo.cdc_jobs j
         LEFT JOIN msdb.dbo.sysjobs s ON s.job_id = j.job_id
        WHERE j.database_id = DB_ID()`,
    );
    for (const type of ['capture', 'cleanup']) {
      const job = jobs.recordset.find((j) => j.job_type === type);
      if (!job)
        results.push(
          bad(
            `cdc_${type}_job`,
            `the CDC ${type} job of ${db} does not exist`,
            `USE ${db}; EXEC sys.sp_cdc_add_job @job_type = N'${type}';`,
          ),
        );
      else if (job.enabled === 0)
        results.push(
          bad(
            `cdc_${type}_job`,
            `the CDC ${type} job of ${db} is disabled`,
            `EXEC msdb.dbo.sp_update_job @job_name = N'cdc.${db.slice(1, -1)}_${type}', @enabled = 1;`,
          ),
        );
      else results.push(ok(`cdc_${type}_job`, `the CDC ${type} job exists and is enabled`));
    }
    const retention = jobs.recordset.find((j) => j.job_type === 'cleanup')?.retention;
    if (retention != null)
      results.push(
        retention >= MIN_RETENTION_MINUTES
          ? ok(
              'cdc_retention',
              `change rows are kept ${retention} minutes; a pipeline may be stopped up to that long without losing changes`,
            )
          : bad(
              'cdc_retention',
              `change rows are kept only ${retention} minutes: a pipeline stopped longer than that loses changes (a retention gap)`,
              `EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = 4320;  -- minutes (3 days)`,
              'warning',
            ),
      );
  } catch (err) {
    results.push(
      bad(
        'cdc_jobs',
        `could not read the CDC jobs (msdb.dbo.cdc_jobs): ${(err as Error).message}`,
        `USE ${db}; EXEC sys.sp_cdc_help_jobs;  -- as db_owner, to see the capture and cleanup jobs yourself`,
        'warning',
      ),
    );
  }
  try {
    const agent = await pool
      .request()
      .query<{ status_desc: string }>(
        "SELECT status_desc FROM sys.dm_server_services WHERE servicename LIKE N'SQL Server Agent%'",
      );
    const status = agent.recordset[0]?.status_desc;
    if (status === undefined) {
      results.push(
        bad(
          'sql_agent',
          'SQL Server Agent was not found; the CDC capture job cannot run',
          'Start SQL Server Agent (on Linux: mssql-conf set sqlagent.enabled true, then restart)',
          'warning',
        ),
      );
    } else if (status !== 'Running') {
      results.push(
        bad(
          'sql_agent',
          `SQL Server Agent is ${status}: no change is captured until it runs`,
          "Start the SQL Server Agent service (EXEC xp_servicecontrol N'START', N'SQLServerAGENT'; as a sysadmin on Windows)",
        ),
      );
    } else results.push(ok('sql_agent', 'SQL Server Agent is running'));
  } catch {
    results.push(
      bad(
        'sql_agent',
        'could not see whether SQL Server Agent runs (needs VIEW SERVER STATE); if it does not, no change is captured',
        'GRANT VIEW SERVER STATE TO <login>;  -- optional, for this check only',
        'warning',
      ),
    );
  }
  return results;
}
