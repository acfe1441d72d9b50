/**
 * One end-to-end pipeline for the e2e tests: a fresh database with `public.accounts`, a work
 * folder with the YAML config, state store and sink file, the pipeline server(s) in child
 * processes, a concurrent writer, the 100 ms flush sampler, and the RELIABILITY.md oracle.
 * Everything it started is stopped when it is disposed.
 */
import type { PostgresService } from '@nanosync/testcontainers';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import { comparePositions, decodePosition, parseLsn } from '../../../src/position.js';
import { type PgFixture, pgFixture, uniqueName } from '../fixture.js';
import {
  type ChunkRow,
  chunks,
  fileSize,
  type KillHook,
  latestState,
  type PartitionRow,
  PipelineProcess,
  partitions,
  pipelineRow,
  readSinkFile,
  type SinkLine,
  sleep,
  startWriter,
  storedCheckpoint,
  storedResumePoint,
  type WorkDir,
  type Writer,
  type WriterTxn,
  workDir,
} from './harness.js';

export const TABLE = 'public.accounts';
/** The row the tests insert last: once it is in the sink, everything before it is too. */
export const MARKER_ID = 9_999_999;
/** Ids the writers insert start here (100,000 per writer); seeded rows are 1..rows. */
export const WRITER_FIRST_ID = 1_000_000;
/** Ids from here on are free for a test's own bulk rows. */
export const BULK_FIRST_ID = 5_000_000;

export interface ScenarioOptions {
  /** Rows seeded into public.accounts (ids 1..rows). */
  rows: number;
  /** Snapshot settings of the pipeline (default: 2 workers, 1000 rows per partition, the default mode). */
  snapshot?: SnapshotSettings;
  /** A server of the test's own (restart tests); default the shared one. */
  service?: PostgresService;
  /** More tables in the pipeline (`public.<name>`, each `id int PRIMARY KEY, note text` with `rows` rows). */
  extraTables?: { name: string; rows: number }[];
  /** A second file sink (`1:out2`), see {@link SecondSink}; the first one is `0:out`. */
  secondSink?: SecondSink;
}

/**
 * A second file sink: one file `out2.jsonl`, or with `folder` one file per table under
 * `out2/` (a table's file is opened at its first event); `maxSpillBytes` is its `max_spill_bytes`.
 */
export interface SecondSink {
  folder?: boolean;
  maxSpillBytes?: string;
}

export interface SnapshotSettings {
  concurrency: number;
  rows: number;
  mode?: 'concurrent' | 'blocking';
  chunkRows?: number;
  /** `snapshot.chunk_bytes` (at least 1024). */
  chunkBytes?: number;
}

export function pipelineYaml(
  fx: PgFixture,
  pipeline: string,
  sinkFile: string,
  snapshot: SnapshotSettings,
  extraTables: string[] = [],
  second?: SecondSink & { target: string },
): string {
  const dsn = `postgres://${fx.role}:${fx.rolePassword}@${fx.service.host}:${fx.service.port}/${fx.database}?sslmode=disable`;
  return `connections:
  - name: source-db
    type: postgres
    dsn: ${JSON.stringify(dsn)}
  - name: out
    type: file
    properties:
      file: ${JSON.stringify(sinkFile)}
${
  second
    ? `  - name: out2
    type: file
    properties:
      ${second.folder ? 'path' : 'file'}: ${JSON.stringify(second.target)}
`
    : ''
}pipelines:
  - name: ${pipeline}
    replication_type: cdc_backfill
    source:
      connection: source-db
      tables: [${[TABLE, ...extraTables].join(', ')}]
${
  second
    ? `    sinks:
      - connection: out
      - connection: out2
${second.maxSpillBytes ? `        max_spill_bytes: ${second.maxSpillBytes}\n` : ''}`
    : `    sink:
      connection: out
`
}    snapshot:
      concurrency: ${snapshot.concurrency}
      target_rows_per_partition: ${snapshot.rows}
${snapshot.mode ? `      mode: ${snapshot.mode}\n` : ''}${snapshot.chunkRows ? `      chunk_rows: ${snapshot.chunkRows}\n` : ''}${snapshot.chunkBytes ? `      chunk_bytes: ${snapshot.chunkBytes}\n` : ''}`;
}

export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  proc?: PipelineProcess,
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${proc ? `\n${proc.logTail}` : ''}`);
    await sleep(25);
  }
}

/** A superuser connection that is opened again when the server restarted under it. */
class AdminConnection {
  #client: pg.Client | undefined;

  constructor(private readonly url: string) {}

  /** Retries only when the connection failed (a restarting server), never after an SQL error. */
  async query(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (!this.#client) {
          const client = new pg.Client({ connectionString: this.url });
          client.on('error', () => {});
          this.#client = client;
          await client.connect();
        }
        return await this.#client.query(sql, params);
      } catch (error) {
        await this.close();
        if (!connectionFailed(error) || attempt >= 50) throw error;
        await sleep(200);
      }
    }
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }
}

/** Not an error the server answered with (socket errors), or one of the connection / shutdown classes. */
function connectionFailed(error: unknown): boolean {
  return !(error instanceof pg.DatabaseError) || /^(08|57P)/.test(error.code ?? '');
}

export interface FlushSample {
  confirmedFlush: bigint;
  /** Size of the sink file (of each sink, in order), read after `confirmedFlush`. */
  fileBytes: number[];
  /** The stored checkpoint (or, before the first one, the start position), read after `confirmedFlush`. */
  checkpoint: string | undefined;
}

/**
 * Every 100 ms: the slot's confirmed_flush_lsn, then the sink file's size and the stored
 * checkpoint. Both only grow, so reading them later can only make the check more lenient,
 * never fail a correct pipeline. Survives server restarts (samples are skipped meanwhile).
 */
function sampleFlush(url: string, slot: string, files: string[], work: WorkDir, pipeline: string) {
  const samples: FlushSample[] = [];
  const connection = new AdminConnection(url);
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      const row = await connection
        .query('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [slot])
        .then((r) => r.rows[0] as { lsn: string | null } | undefined)
        .catch(() => undefined);
      if (row?.lsn) {
        const fileBytes = await Promise.all(files.map(fileSize));
        samples.push({
          confirmedFlush: parseLsn(row.lsn),
          fileBytes,
          checkpoint: storedResumePoint(work.stateFile, pipeline),
        });
      }
      await sleep(100);
    }
  })().finally(() => connection.close());
  return {
    samples,
    async stop() {
      stopped = true;
      await done;
    },
  };
}

/** Stream events (not snapshot rows) of the sink file. */
export const streamLines = (lines: SinkLine[]) => lines.filter((l) => l.op !== 'read');

export class E2eScenario implements AsyncDisposable {
  readonly slot: string;
  readonly processes: PipelineProcess[] = [];
  readonly #admin: AdminConnection;
  readonly #sampler: ReturnType<typeof sampleFlush>;
  #writer: Writer | undefined;
  #writerClient: pg.Client | undefined;
  #writersStarted = 0;
  readonly #txns: WriterTxn[] = [];

  /** The file of `public.accounts` in each sink (the second one's only with `secondSink`). */
  readonly sinkFiles: string[];

  private constructor(
    readonly fx: PgFixture,
    readonly pipeline: string,
    readonly work: WorkDir,
    readonly rows: number,
    second?: SecondSink,
  ) {
    this.slot = `nanosync_slot_${pipeline}`;
    this.#admin = new AdminConnection(fx.adminUrl);
    this.sinkFiles = [work.sinkFile];
    if (second) this.sinkFiles.push(secondSinkTarget(work.dir, second, true));
    this.#sampler = sampleFlush(fx.adminUrl, this.slot, this.sinkFiles, work, pipeline);
  }

  static async create(options: ScenarioOptions): Promise<E2eScenario> {
    const fx = await pgFixture(options.service ? { service: options.service } : {});
    try {
      await fx.admin.query('CREATE TABLE public.accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text)');
      await fx.admin.query(`INSERT INTO public.accounts SELECT g, g * 10, 'seed' FROM generate_series(1, $1) g`, [
        options.rows,
      ]);
      await fx.admin.query('ANALYZE public.accounts');
      const extra = options.extraTables ?? [];
      for (const t of extra) {
        await fx.admin.query(`CREATE TABLE public.${t.name} (id int PRIMARY KEY, note text)`);
        await fx.admin.query(`INSERT INTO public.${t.name} SELECT g, 'seed' FROM generate_series(1, $1) g`, [t.rows]);
        await fx.admin.query(`ANALYZE public.${t.name}`);
      }
      const refs = [{ schema: 'public', name: 'accounts' }, ...extra.map((t) => ({ schema: 'public', name: t.name }))];
      await fx.grantRead(refs);
      const pipeline = uniqueName('e2e');
      await fx.preparePublication(pipeline, refs);
      const snapshot = options.snapshot ?? { concurrency: 2, rows: 1000 };
      const work = await workDir((sinkFile) =>
        pipelineYaml(
          fx,
          pipeline,
          sinkFile,
          snapshot,
          extra.map((t) => `public.${t.name}`),
          options.secondSink
            ? { ...options.secondSink, target: secondSinkTarget(dirname(sinkFile), options.secondSink, false) }
            : undefined,
        ),
      );
      return new E2eScenario(fx, pipeline, work, options.rows, options.secondSink);
    } catch (error) {
      await fx[Symbol.asyncDispose]();
      throw error;
    }
  }

  /** A pipeline server for this scenario's config (optionally with a crash point or a slow sink). */
  spawn(kill?: KillHook, options: { writeDelayMs?: number; env?: Record<string, string> } = {}): PipelineProcess {
    const proc = new PipelineProcess(this.work.configFile, this.work.stateFile, this.work.secretKey, {
      ...(kill ? { kill } : {}),
      ...options,
    });
    this.processes.push(proc);
    return proc;
  }

  /** Waits until `proc` reports the pipeline streaming (its own LIVE_CDC line). */
  async waitLive(proc: PipelineProcess): Promise<void> {
    await proc.waitForLine((l) => l.startsWith(`STATE ${this.pipeline} LIVE_CDC`), 'LIVE_CDC', 120_000);
  }

  /** Waits for the child to die from its kill hook; returns the `HOOK …` line. */
  async waitForHook(proc: PipelineProcess): Promise<string> {
    const exit = await proc.exited;
    expect(exit, proc.logTail).toBe('SIGKILL');
    const line = proc.stdout.find((l) => l.startsWith('HOOK '));
    expect(line, 'the kill came from the hook').toBeDefined();
    return line!;
  }

  /**
   * The concurrent writer (inserts, updates, deletes), on its own connection; it carries on
   * through server restarts.
   */
  async startWriter(): Promise<Writer> {
    if (this.#writer) throw new Error('the writer is already running');
    const connect = async () => {
      const client = new pg.Client({ connectionString: this.fx.adminUrl });
      client.on('error', () => {});
      await client.connect();
      return client;
    };
    this.#writerClient = await connect();
    this.#writer = startWriter(this.#writerClient, {
      table: TABLE,
      existingRows: this.rows,
      firstId: WRITER_FIRST_ID + 100_000 * this.#writersStarted++,
      reconnect: connect,
    });
    return this.#writer;
  }

  async stopWriter(): Promise<void> {
    const writer = this.#writer;
    this.#writer = undefined;
    if (!writer) return;
    try {
      await writer.stop();
    } finally {
      this.#txns.push(...writer.txns);
      await this.#writerClient?.end().catch(() => {});
      this.#writerClient = undefined;
    }
  }

  /** Every transaction the writer(s) committed so far. */
  get txns(): WriterTxn[] {
    return [...this.#txns, ...(this.#writer?.txns ?? [])];
  }

  /** A superuser query on the scenario's database (reconnects after a server restart). */
  query(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
    return this.#admin.query(sql, params);
  }

  /** The lines of `public.accounts` in sink `sink` (0 or 1). */
  lines(sink = 0): Promise<SinkLine[]> {
    return readSinkFile(this.sinkFiles[sink]!);
  }

  checkpoint(): string | undefined {
    return storedCheckpoint(this.work.stateFile, this.pipeline);
  }

  partitions(): PartitionRow[] {
    return partitions(this.work.stateFile, this.pipeline);
  }

  chunks(): ChunkRow[] {
    return chunks(this.work.stateFile, this.pipeline);
  }

  /** Waits until the sink holds at least `count` stream events. */
  async waitForStreamEvents(count: number, proc?: PipelineProcess): Promise<void> {
    await waitFor(async () => streamLines(await this.lines()).length >= count, `${count} stream events`, proc);
  }

  /**
   * The end of a test: stop the writer, insert the marker row, wait until the running
   * pipeline delivered it (so everything before it too), then stop sampling.
   */
  async finish(proc?: PipelineProcess): Promise<void> {
    await this.stopWriter();
    await this.query(`INSERT INTO public.accounts VALUES (${MARKER_ID}, 0, 'marker')`);
    for (let sink = 0; sink < this.sinkFiles.length; sink++)
      await waitFor(
        async () => (await this.lines(sink)).some((l) => l.key.id === MARKER_ID),
        `the marker row in sink ${sink}`,
        proc,
      );
    await sleep(500);
    await this.#sampler.stop();
  }

  /** The RELIABILITY.md oracle over the whole file of sink `sink`; call after `finish`. */
  async check(sink = 0): Promise<SinkLine[]> {
    const row = pipelineRow(this.work.stateFile, this.pipeline);
    expect(row?.start_position).toBeTruthy();
    const lines = await this.lines(sink);
    await oracle(this, lines, {
      startPosition: row!.start_position!,
      txns: this.txns,
      samples: this.#sampler.samples,
      sink,
    });
    return lines;
  }

  /** The flush samples so far (slot's confirmed_flush_lsn, sink file sizes, stored checkpoint). */
  get samples(): readonly FlushSample[] {
    return this.#sampler.samples;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#sampler.stop();
    await this.stopWriter().catch(() => {});
    await Promise.all(this.processes.map((p) => p.stop()));
    await this.#admin.close();
    await this.work[Symbol.asyncDispose]();
    await this.fx[Symbol.asyncDispose]();
  }
}

/**
 * The RELIABILITY.md oracle on the file sink:
 * 1. last value per key equals the table;
 * 2. per key, stream positions only go back when replaying positions already delivered;
 * 3. every writer transaction that began after the start position is present (its insert,
 *    its update and its delete);
 * 4. the slot never confirmed a transaction the sink did not yet have: neither past what the
 *    sink file held, nor past the stored checkpoint. A checkpoint at a transaction's last
 *    event lets the slot move to that transaction's commit end, which is at or before the
 *    commit LSN of the next transaction in the stream; nothing beyond that is allowed.
 */
export async function oracle(
  scenario: E2eScenario,
  lines: SinkLine[],
  opts: { startPosition: string; txns: WriterTxn[]; samples: FlushSample[]; sink?: number },
): Promise<void> {
  const table = await scenario.query('SELECT id, balance::text AS balance, note FROM public.accounts ORDER BY id');
  lines = lines.filter((l) => l.table === TABLE);
  const state = latestState(lines);
  const fromSink = [...state.values()].sort((a, b) => (a.id as number) - (b.id as number));
  expect(fromSink.length).toBe(table.rows.length);
  expect(fromSink).toEqual(table.rows);

  const seen = new Map<string, { max: string; all: Set<string> }>();
  for (const line of streamLines(lines)) {
    const key = JSON.stringify(line.key);
    const entry = seen.get(key);
    if (!entry) {
      seen.set(key, { max: line.position, all: new Set([line.position]) });
      continue;
    }
    if (comparePositions(line.position, entry.max) <= 0) {
      expect(entry.all.has(line.position), `key ${key} went back to unseen position ${line.position}`).toBe(true);
    } else entry.max = line.position;
    entry.all.add(line.position);
  }

  const startLsn = decodePosition(opts.startPosition).lsn;
  const inserted = new Set(lines.filter((l) => l.op === 'insert').map((l) => l.key.id));
  const updates = new Set(lines.filter((l) => l.op === 'update').map((l) => `${l.key.id}:${l.after?.note}`));
  const deleted = new Set(lines.filter((l) => l.op === 'delete').map((l) => l.key.id));
  const afterStart = opts.txns.filter((t) => t.lsnBefore > startLsn);
  expect(afterStart.length).toBeGreaterThan(10);
  for (const txn of afterStart) {
    expect(inserted.has(txn.insertedId), `insert ${txn.insertedId} missing`).toBe(true);
    if (txn.updated)
      expect(updates.has(`${txn.updated.id}:${txn.updated.note}`), `update ${txn.updated.note} missing`).toBe(true);
    if (txn.deletedId !== undefined)
      expect(deleted.has(txn.deletedId), `delete of ${txn.deletedId} missing`).toBe(true);
  }

  let confirmedChecks = 0;
  for (const sample of opts.samples) {
    const fileBytes = sample.fileBytes[opts.sink ?? 0]!;
    const durable = new Set(lines.filter((l) => l.end <= fileBytes && l.op === 'insert').map((l) => l.key.id));
    for (const txn of afterStart) {
      if (txn.lsnAfter <= sample.confirmedFlush) {
        confirmedChecks++;
        expect(durable.has(txn.insertedId), `slot confirmed past txn ${txn.insertedId} before the sink had it`).toBe(
          true,
        );
      }
    }
  }
  expect(confirmedChecks).toBeGreaterThan(0);

  // Positions of one pipeline sort as plain strings (fixed-width upper-case hex).
  const positions = [...new Set(streamLines(lines).map((l) => l.position))].sort();
  let checkpointChecks = 0;
  for (const sample of opts.samples) {
    if (sample.checkpoint === undefined) continue;
    const next = firstAfter(positions, sample.checkpoint);
    if (next === undefined) continue;
    checkpointChecks++;
    const limit = decodePosition(next).lsn;
    expect(
      sample.confirmedFlush <= limit,
      `confirmed_flush_lsn ${sample.confirmedFlush} passed checkpoint ${sample.checkpoint} (next commit ${limit})`,
    ).toBe(true);
  }
  expect(checkpointChecks).toBeGreaterThan(0);
}

/** Where the second sink writes (`full`: the file of `public.accounts` in it). */
function secondSinkTarget(dir: string, second: SecondSink, full: boolean): string {
  if (!second.folder) return join(dir, 'out2.jsonl');
  return full ? join(dir, 'out2', 'public.accounts.jsonl') : join(dir, 'out2');
}

/** The first of the sorted `positions` after `position`. */
function firstAfter(positions: string[], position: string): string | undefined {
  let lo = 0;
  let hi = positions.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (positions[mid]! <= position) lo = mid + 1;
    else hi = mid;
  }
  return positions[lo];
}
