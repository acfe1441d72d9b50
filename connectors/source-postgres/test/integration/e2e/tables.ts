/**
 * Pipelines over any tables, for the schema tests (partitioned, keyless, TRUNCATE): a fresh
 * database with the test's DDL, a YAML config listing the tables with the file sink, the
 * pipeline server in a child process (run-pipeline.ts), and the sink reduced the way a
 * key-upserting consumer would hold it (a `truncate` line empties its table).
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NanosyncProcess } from '@nanosync/connector-testkit';
import type { TableRef } from '@nanosync/core';
import type pg from 'pg';
import { type PgFixture, pgFixture, quoteIdent, quoteTable, uniqueName } from '../fixture.js';
import { PipelineProcess, partitions, readSinkFile, type SinkLine, type WorkDir, workDir } from './harness.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../..');

export interface TablesOptions {
  /** Statements run as superuser before anything else. */
  ddl: string[];
  /** Tables the pipeline lists. */
  tables: TableRef[];
  /** Extra tables the role may read (e.g. partitions) besides `tables`. */
  readable?: TableRef[];
  /** `chunkRows`: `snapshot.chunk_rows` (also the chunk size of an attached partition's read). */
  snapshot?: { concurrency: number; rows: number; chunkRows?: number };
  /**
   * An owner prepares the publication and hands it to the least-privilege role (default);
   * `false`: the role owns the tables and creates the publication itself.
   */
  preparePublication?: boolean;
  roleAttributes?: string;
  /** Write to Kafka at these brokers instead of the file sink. */
  kafkaBrokers?: string;
  /** The pipeline's `schema_changes` option (absent: not written, the default). */
  schemaChanges?: 'propagate' | 'pause' | 'fail';
  /** Runs after `ddl`, before the role is granted anything (e.g. `pgbench -i`). */
  setup?: (fx: PgFixture) => Promise<void>;
}

export function tablesYaml(fx: PgFixture, pipeline: string, sinkFile: string, options: TablesOptions): string {
  const dsn = `postgres://${fx.role}:${fx.rolePassword}@${fx.service.host}:${fx.service.port}/${fx.database}?sslmode=disable`;
  const snapshot = options.snapshot ?? { concurrency: 2, rows: 1000 };
  const tables = options.tables.map((t) => JSON.stringify(`${t.schema}.${t.name}`)).join(', ');
  return `connections:
  - name: source-db
    type: postgres
    dsn: ${JSON.stringify(dsn)}
  - name: out
${
  options.kafkaBrokers
    ? `    type: kafka
    properties:
      brokers: ${JSON.stringify(options.kafkaBrokers)}`
    : `    type: file
    properties:
      file: ${JSON.stringify(sinkFile)}`
}
pipelines:
  - name: ${pipeline}
    replication_type: cdc_backfill${options.schemaChanges ? `\n    schema_changes: ${options.schemaChanges}` : ''}
    source:
      connection: source-db
      tables: [${tables}]
    sink:
      connection: out
    snapshot:
      concurrency: ${snapshot.concurrency}
      target_rows_per_partition: ${snapshot.rows}${snapshot.chunkRows !== undefined ? `\n      chunk_rows: ${snapshot.chunkRows}` : ''}
`;
}

export class TablesScenario implements AsyncDisposable {
  readonly processes: PipelineProcess[] = [];

  private constructor(
    readonly fx: PgFixture,
    readonly pipeline: string,
    readonly work: WorkDir,
  ) {}

  get slot(): string {
    return `nanosync_slot_${this.pipeline}`;
  }

  get publication(): string {
    return `nanosync_pub_${this.pipeline}`;
  }

  static async create(options: TablesOptions): Promise<TablesScenario> {
    const fx = await pgFixture(options.roleAttributes ? { roleAttributes: options.roleAttributes } : {});
    try {
      for (const statement of options.ddl) await fx.admin.query(statement);
      await options.setup?.(fx);
      await fx.grantRead([...options.tables, ...(options.readable ?? [])]);
      const pipeline = uniqueName('schemas');
      if (options.preparePublication !== false) await fx.preparePublication(pipeline, options.tables);
      else {
        // The role creates the publication itself: it owns the tables and may CREATE in the database.
        for (const t of options.tables)
          await fx.admin.query(`ALTER TABLE ${quoteTable(t)} OWNER TO ${quoteIdent(fx.role)}`);
        await fx.admin.query(`GRANT CREATE ON DATABASE ${quoteIdent(fx.database)} TO ${quoteIdent(fx.role)}`);
      }
      const work = await workDir((sinkFile) => tablesYaml(fx, pipeline, sinkFile, options));
      return new TablesScenario(fx, pipeline, work);
    } catch (error) {
      await fx[Symbol.asyncDispose]();
      throw error;
    }
  }

  /** A pipeline server for this scenario; `writeDelayMs` makes its every sink write wait that long (a slow sink). */
  spawn(options: { writeDelayMs?: number } = {}): PipelineProcess {
    const proc = new PipelineProcess(this.work.configFile, this.work.stateFile, this.work.secretKey, options);
    this.processes.push(proc);
    return proc;
  }

  async waitState(proc: PipelineProcess, state: string, timeoutMs = 120_000): Promise<string> {
    return proc.waitForLine((l) => l.startsWith(`STATE ${this.pipeline} ${state}`), state, timeoutMs);
  }

  lines(): Promise<SinkLine[]> {
    return readSinkFile(this.work.sinkFile);
  }

  /** Snapshot partitions marked done in the state store. */
  partitionsDone(): number {
    return partitions(this.work.stateFile, this.pipeline).filter((p) => p.status === 'done').length;
  }

  /** Ids of the planned snapshot partitions. */
  partitionIds(): string[] {
    return partitions(this.work.stateFile, this.pipeline).map((p) => p.id);
  }

  /** The slot and publication of this pipeline that exist on the server now. */
  async leftovers(): Promise<string[]> {
    const { rows } = await this.fx.admin.query(
      `SELECT 'slot ' || slot_name AS what FROM pg_replication_slots WHERE slot_name = $1
       UNION ALL SELECT 'publication ' || pubname FROM pg_publication WHERE pubname = $2`,
      [this.slot, this.publication],
    );
    return rows.map((r) => String(r.what));
  }

  /** `nanosync run --file` of this scenario's config, as a user runs it; resolves with its exit and output. */
  async runCli(timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    await using run = new NanosyncProcess(
      ['run', '--file', this.work.configFile, '--state', join(this.work.dir, 'cli-state'), '--listen', '127.0.0.1:0'],
      { cwd: repoRoot },
    );
    const timer = setTimeout(() => void run.kill('SIGKILL'), timeoutMs);
    const result = await run.exited.finally(() => clearTimeout(timer));
    if (result.signal === 'SIGKILL')
      throw new Error(`nanosync run did not end within ${timeoutMs} ms\n${result.stderr.slice(-5000)}`);
    return result;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.processes.map((p) => p.stop()));
    await this.work[Symbol.asyncDispose]();
    await this.fx[Symbol.asyncDispose]();
  }
}

/**
 * What a consumer that upserts by key (deletes remove, a truncate empties the table) holds
 * after reading `lines` in order: table → JSON of the key → the row.
 */
export function reduceByKey(lines: SinkLine[]): Map<string, Map<string, Record<string, unknown>>> {
  const tables = new Map<string, Map<string, Record<string, unknown>>>();
  const of = (table: string) => {
    let rows = tables.get(table);
    if (!rows) {
      rows = new Map();
      tables.set(table, rows);
    }
    return rows;
  };
  for (const line of lines) {
    const rows = of(line.table);
    if (line.op === 'truncate') rows.clear();
    else if (line.op === 'delete') rows.delete(JSON.stringify(line.key));
    else {
      const before = (line as { before?: Record<string, unknown> }).before;
      if (line.op === 'update' && before) {
        // A key-changing update moves the row away from its old key.
        const oldKey = Object.fromEntries(Object.keys(line.key).map((k) => [k, before[k] ?? null]));
        if (Object.keys(line.key).every((k) => Object.hasOwn(before, k))) rows.delete(JSON.stringify(oldKey));
      }
      rows.set(JSON.stringify(line.key), line.after!);
    }
  }
  return tables;
}

/** Rows of a table as the sink writes them (text of every column through `to_jsonb`), keyed like the sink. */
export async function tableState(
  client: pg.Client,
  table: TableRef,
  keyColumns: string[],
): Promise<Map<string, Record<string, unknown>>> {
  const { rows } = await client.query(`SELECT to_jsonb(t)::text AS j FROM ${quoteTable(table)} t`);
  const out = new Map<string, Record<string, unknown>>();
  for (const row of rows) {
    const value = JSON.parse(String(row.j)) as Record<string, unknown>;
    const key: Record<string, unknown> = {};
    for (const k of keyColumns) key[k] = value[k];
    out.set(JSON.stringify(key), value);
  }
  return out;
}
