/**
 * `sqlserver-cleanup`: SQL Server change rows removed by the CDC cleanup job before the
 * pipeline read them (RELIABILITY.md: detected; an error or a re-snapshot of the table, never
 * a silent gap).
 *
 * It needs a SQL Server with the Agent running and CDC enabled on its database, found the
 * way connectors/source-sqlserver's live suite finds one (`NANOSYNC_TEST_MSSQL_URL`, else
 * Docker); without one the scenario is a named skip. Staged for real: a `nanosync run`
 * pipeline (file sink) snapshots and streams a table, is stopped with SIGTERM, the writer
 * commits more changes, the capture job records them, and `sys.sp_cdc_cleanup_change_table`
 * with the newest LSN as low-water mark removes them before the pipeline comes back. The seed
 * chooses `on_retention_gap`:
 *
 * - `error`: the restarted pipeline must stop with NS_M5003 naming the table and the lost
 *   range, and write nothing. No oracle: the lost changes are lost by design; the error is
 *   what is checked.
 * - `resnapshot`: the sink must receive a truncate of the table and its rows again; after a
 *   marker row, what the sink holds (truncates applied) must equal the table.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NanosyncServer, type OracleRecord, runOracle } from '@nanosync/connector-testkit/harness';
import type { Row } from '@nanosync/core';
import { readJsonLines } from '@nanosync/sink-file';
import { ENV_MSSQL_URL, sqlServerUnavailableReason, startSqlServer } from '@nanosync/testcontainers';
import mssql from 'mssql';
import { type RunStats, sleep } from './run.js';
import { type Scenario, type ScenarioContext, ScenarioFailure, ScenarioSkipped } from './scenarios.js';

export const sqlServerCleanupScenario: Scenario = {
  name: 'sqlserver-cleanup',
  fault:
    'SQL Server change rows removed by the cleanup job before they were read (sp_cdc_cleanup_change_table while stopped): an error naming the lost range, or a re-snapshot',
  run: async (ctx) => {
    if (await sqlServerUnavailableReason())
      throw new ScenarioSkipped(
        `needs SQL Server: set ${ENV_MSSQL_URL} (a SQL Server with its Agent running and CDC enabled on the database, as for connectors/source-sqlserver's live suite) or make Docker available`,
      );
    return stageCleanupGap(ctx);
  },
};

async function stageCleanupGap(ctx: ScenarioContext): Promise<RunStats> {
  await using service = await startSqlServer();
  const pool = new mssql.ConnectionPool({
    server: service.host,
    port: service.port,
    user: service.user,
    password: service.password,
    database: service.database,
    options: { encrypt: true, trustServerCertificate: true },
    requestTimeout: 120_000,
  });
  await pool.connect();
  const dir = await mkdtemp(join(tmpdir(), 'ns-chaos-mssql-'));
  const name = `chaos_${randomBytes(4).toString('hex')}`;
  const table = `dbo.${name}`;
  const instance = `dbo_${name}`;
  const servers: NanosyncServer[] = [];
  const exec = (text: string) => pool.request().batch(text);
  try {
    const rows = ctx.rng.int(200, Math.max(200, Math.min(ctx.maxRows, 2000)));
    const onGap = ctx.rng.pick(['error', 'resnapshot'] as const);
    ctx.log(`${rows} seeded rows, on_retention_gap: ${onGap}`);
    await exec(`CREATE TABLE ${table} (id int PRIMARY KEY, v int NOT NULL, note nvarchar(50))`);
    await exec(`INSERT INTO ${table} SELECT value, 0, N'seed' FROM GENERATE_SERIES(1, ${rows})`);
    await exec(
      `EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'${name}', @capture_instance = N'${instance}', @role_name = NULL`,
    );
    const outDir = join(dir, 'out');
    await mkdir(outDir, { recursive: true });
    const configFile = join(dir, 'nanosync.yaml');
    await writeFile(
      configFile,
      `connections:
  - name: mssql
    type: sqlserver
    properties: ${JSON.stringify({
      host: service.host,
      port: service.port,
      user: service.user,
      password: service.password,
      database: service.database,
      trust_server_certificate: true,
      poll_interval: '100ms',
      on_retention_gap: onGap,
    })}
  - name: out
    type: file
    properties:
      path: ${JSON.stringify(outDir)}
pipelines:
  - name: ${name}
    replication_type: cdc_backfill
    source:
      connection: mssql
      tables: [${table}]
    sink:
      connection: out
`,
    );
    const start = async () => {
      const server = await NanosyncServer.start(['run', '--file', configFile, '--state', join(dir, 'state.db')], {
        env: { XDG_STATE_HOME: join(dir, 'xdg'), NANOSYNC_LOG_LEVEL: 'info' },
        logFile: join(dir, `server-${servers.length + 1}.log`),
      });
      servers.push(server);
      return server;
    };
    const sinkRecords = async (): Promise<OracleRecord[]> =>
      (await readJsonLines(join(outDir, `${table}.jsonl`)).catch(() => [])).map((r) => ({
        table: r.table,
        op: r.op,
        key: r.key as Row,
        after: (r.after as Row | undefined) ?? null,
        position: r.position,
      }));
    const until = async (probe: () => Promise<boolean>, what: string) => {
      for (const deadline = Date.now() + 180_000; !(await probe().catch(() => false)); await sleep(200))
        if (Date.now() > deadline)
          throw new ScenarioFailure([`gave up waiting for ${what}`], servers.at(-1)?.process.logTail ?? '');
    };
    let nextId = 1_000_000;
    /** `n` seeded transactions (insert, update, delete of seeded rows); returns the last inserted id. */
    const write = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const id = ctx.rng.int(1, rows);
        await exec(`INSERT INTO ${table} VALUES (${++nextId}, 1, N'w');
          UPDATE ${table} SET v = v + 1, note = N'u${i}' WHERE id = ${id};
          ${ctx.rng.chance(0.3) ? `DELETE FROM ${table} WHERE id = ${ctx.rng.int(1, rows)};` : ''}`);
      }
      return nextId;
    };

    const first = await start();
    await until(
      async () => (await sinkRecords()).filter((r) => r.op === 'read').length >= rows,
      'the snapshot in the sink',
    );
    const streamed = await write(ctx.rng.int(3, 20));
    await until(async () => (await sinkRecords()).some((r) => Number(r.key.id) === streamed), 'streamed changes');
    const stopped = await first.process.stop(15_000);
    if (stopped.code !== 0) throw new ScenarioFailure([`SIGTERM: exit ${stopped.code ?? stopped.signal}`]);
    const held = (await sinkRecords()).length;

    // Changes committed while the pipeline is stopped, captured, then removed by the cleanup.
    const lost = await write(ctx.rng.int(5, 40));
    await until(async () => {
      const seen = await pool
        .request()
        .query<{ n: number }>(`SELECT COUNT(*) AS n FROM cdc.${instance}_CT WHERE id = ${lost}`);
      return seen.recordset[0]!.n > 0;
    }, 'the capture job to record the changes made while the pipeline was stopped');
    await exec(`DECLARE @lwm binary(10) = sys.fn_cdc_get_max_lsn();
      EXEC sys.sp_cdc_cleanup_change_table @capture_instance = N'${instance}', @low_water_mark = @lwm, @threshold = 100000;`);
    const left = await pool
      .request()
      .query<{ n: number }>(`SELECT COUNT(*) AS n FROM cdc.${instance}_CT WHERE id = ${lost}`);
    if (left.recordset[0]!.n > 0) throw new Error('sp_cdc_cleanup_change_table left the change rows in place');
    ctx.log('change rows removed by sp_cdc_cleanup_change_table before the pipeline read them');

    if (onGap === 'error') {
      // `nanosync run` exits 1 once its only pipeline is ERRORED, perhaps before its API is up: read its log file.
      const logFile = join(dir, `server-${servers.length + 1}.log`);
      await start().catch(() => undefined);
      const output = async () => readFile(logFile, 'utf8').catch(() => '');
      await until(async () => /NS_M5003/.test(await output()), 'the restarted pipeline to report the retention gap');
      const line = (await output()).split('\n').find((l) => l.includes('NS_M5003'))!;
      const problems: string[] = [];
      if (!line.includes(name)) problems.push(`the retention-gap error does not name the table: ${line}`);
      if (!/after LSN .* and before LSN/.test(line))
        problems.push(`the retention-gap error names no lost range: ${line}`);
      const after = (await sinkRecords()).length;
      if (after !== held) problems.push(`the sink received ${after - held} records after the gap was found`);
      if (problems.length > 0) throw new ScenarioFailure(problems, await output());
      ctx.log(`reported: ${line.trim().slice(0, 240)}`);
      return { events: held, replays: 0, changes: 0 };
    }

    const second = await start();
    await until(
      async () => (await sinkRecords()).slice(held).some((r) => r.op === 'truncate'),
      'the re-snapshot to begin with a truncate',
    );
    const marker = ++nextId;
    await exec(`INSERT INTO ${table} VALUES (${marker}, 0, N'marker')`);
    await until(async () => (await sinkRecords()).some((r) => Number(r.key.id) === marker), 'the marker row');
    await second.process.stop(15_000);
    const records = await sinkRecords();
    const expected = (await pool.request().query<Row>(`SELECT id, v, note FROM ${table}`)).recordset;
    const problems = runOracle({ records, expected: { [table]: expected }, keyColumns: ['id'] });
    if (problems.length > 0) throw new ScenarioFailure(problems, second.process.logTail);
    return { events: records.length, replays: 0, changes: 0 };
  } finally {
    for (const server of servers) await server[Symbol.asyncDispose]().catch(() => {});
    await exec(`EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = N'${name}', @capture_instance = N'${instance}';
      DROP TABLE ${table};`).catch(() => {});
    await pool.close().catch(() => {});
    if (!process.env.NS_CHAOS_KEEP) await rm(dir, { recursive: true, force: true });
  }
}
