import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { reduceByKey, sourceScriptCommand, TestProcess } from '@nanosync/connector-testkit';
import type { Row } from '@nanosync/core';
import type pg from 'pg';
import { parseLsn } from '../../../src/position.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../../../..');

/** Kept of a child's stderr (its log): enough for a whole test's log lines. */
const STDERR_KEEP = 4_000_000;

/**
 * A crash point run-pipeline.ts arranges for itself (env `NS_TEST_KILL`): it prints
 * `HOOK <what>` and SIGKILLs itself
 * - `afterEvent`: inside the sink write that holds the stream event with this key `id` (and
 *   `op`, when given): the events up to and including it are written and fsynced, the rest
 *   of that write is not, and no checkpoint follows;
 * - `afterStreamEvents`: once the sink write holding this process's n-th stream event is
 *   durable, before its checkpoint is stored;
 * - `afterCheckpoints`: once the n-th checkpoint is stored, before the source is acknowledged.
 */
export type KillHook =
  | { afterEvent: { id: number; op?: 'insert' | 'update' | 'delete' } }
  | { afterStreamEvents: number }
  | { afterCheckpoints: number };

/** A pipeline server in a child process (run-pipeline.ts), on the test kit's shared `TestProcess`. */
export class PipelineProcess {
  readonly exited: Promise<number | string | null>;
  readonly #proc: TestProcess;

  /**
   * `kill`: a crash point (see {@link KillHook}); `writeDelayMs`: every sink write waits this
   * long first, so batches queue up in front of the sink (a slow sink).
   */
  constructor(
    configFile: string,
    stateFile: string,
    secretKey: string,
    options: { kill?: KillHook; writeDelayMs?: number; env?: Record<string, string> } = {},
  ) {
    const { command, args } = sourceScriptCommand(join(here, 'run-pipeline.ts'), [configFile, stateFile, secretKey]);
    // NS_E2E_LOG_DIR: keep every child's output (state lines and log) in a file there, for triage.
    const logDir = process.env.NS_E2E_LOG_DIR;
    this.#proc = new TestProcess(command, args, {
      cwd: repoRoot,
      keepChars: STDERR_KEEP,
      ...(logDir ? { logFile: join(logDir, `pipeline-${Date.now()}-${randomBytes(3).toString('hex')}.log`) } : {}),
      env: {
        NS_LOG_LEVEL: 'info',
        ...(options.kill ? { NS_TEST_KILL: JSON.stringify(options.kill) } : {}),
        ...(options.writeDelayMs ? { NS_TEST_WRITE_DELAY_MS: String(options.writeDelayMs) } : {}),
        ...options.env,
      },
    });
    this.exited = this.#proc.exited.then((r) => r.code ?? r.signal);
  }

  /** Complete lines the child printed on stdout (`READY`, `STATE …`, `HOOK …`). */
  get stdout(): string[] {
    return this.#proc.stdoutLines;
  }

  /** The child's log (the tail of it). */
  get stderr(): string {
    return this.#proc.stderr;
  }

  /** The end of the child's log, for failure messages. */
  get logTail(): string {
    return this.stderr.slice(-20_000);
  }

  /** The child's log lines that contain `text`. */
  logLines(text: string): string[] {
    return this.#proc.logLines(text);
  }

  get running(): boolean {
    return this.#proc.running;
  }

  get pid(): number | undefined {
    return this.#proc.pid;
  }

  waitForLine(predicate: (line: string) => boolean, what: string, timeoutMs = 60_000): Promise<string> {
    return this.#proc.waitForLine(predicate, what, timeoutMs);
  }

  kill(signal: NodeJS.Signals): void {
    void this.#proc.kill(signal);
  }

  async stop(): Promise<void> {
    await this.#proc.stop(15_000);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WorkDir extends AsyncDisposable {
  dir: string;
  configFile: string;
  stateFile: string;
  sinkFile: string;
  secretKey: string;
}

export async function workDir(config: (sinkFile: string) => string): Promise<WorkDir> {
  const dir = await mkdtemp(join(tmpdir(), 'ns-e2e-'));
  const sinkFile = join(dir, 'out.jsonl');
  const configFile = join(dir, 'nanosync.yaml');
  await writeFile(configFile, config(sinkFile));
  return {
    dir,
    configFile,
    stateFile: join(dir, 'state.sqlite'),
    sinkFile,
    secretKey: randomBytes(32).toString('hex'),
    [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Read-only look into the state store while the server runs (SQLite WAL allows it). */
export function readStore<T>(stateFile: string, fn: (db: DatabaseSync) => T): T | undefined {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(stateFile, { readOnly: true });
    return fn(db);
  } catch {
    return undefined;
  } finally {
    db?.close();
  }
}

export interface PartitionRow {
  id: string;
  status: string;
  rows_read: number | null;
}

export function partitions(stateFile: string, pipeline: string): PartitionRow[] {
  return (
    readStore(
      stateFile,
      (db) =>
        db
          .prepare('SELECT id, status, rows_read FROM partitions WHERE pipeline = ? ORDER BY ordinal')
          .all(pipeline) as unknown as PartitionRow[],
    ) ?? []
  );
}

export interface ChunkRow {
  partition_id: string;
  ordinal: number;
  id: string;
  status: string;
  position: string | null;
  row_count: number | null;
}

/** The snapshot chunk records of the pipeline (none with a store that has not recorded any). */
export function chunks(stateFile: string, pipeline: string): ChunkRow[] {
  return (
    readStore(
      stateFile,
      (db) =>
        db
          .prepare(
            'SELECT partition_id, ordinal, id, status, position, row_count FROM snapshot_chunks WHERE pipeline = ? ORDER BY partition_id, ordinal',
          )
          .all(pipeline) as unknown as ChunkRow[],
    ) ?? []
  );
}

export function pipelineRow(
  stateFile: string,
  pipeline: string,
): { state: string; start_position: string | null; snapshot_done: number; error: string | null } | undefined {
  return readStore(
    stateFile,
    (db) =>
      db
        .prepare('SELECT state, start_position, snapshot_done, error FROM pipelines WHERE name = ?')
        .get(pipeline) as never,
  );
}

function minCheckpoint(db: DatabaseSync, pipeline: string): string | undefined {
  const rows = db.prepare('SELECT position FROM checkpoints WHERE pipeline = ?').all(pipeline) as {
    position: string;
  }[];
  return rows.map((r) => r.position).sort()[0];
}

/** The pipeline's checkpoint: the minimum over its sinks, or undefined while some sink has none. */
export function storedCheckpoint(stateFile: string, pipeline: string): string | undefined {
  return readStore(stateFile, (db) => minCheckpoint(db, pipeline));
}

/**
 * Where a restart would resume: the stored checkpoint, or the start position while there is
 * none. Undefined when the store could not be read.
 */
export function storedResumePoint(stateFile: string, pipeline: string): string | undefined {
  return readStore(stateFile, (db) => {
    const row = db.prepare('SELECT start_position FROM pipelines WHERE name = ?').get(pipeline) as
      | { start_position: string | null }
      | undefined;
    return minCheckpoint(db, pipeline) ?? row?.start_position ?? undefined;
  });
}

export interface SinkLine {
  op: string;
  table: string;
  key: Record<string, unknown>;
  after?: Record<string, unknown>;
  position: string;
  /** Snapshot lines: the chunk they were read in. */
  chunk?: string;
  /** Byte offset just past this line. */
  end: number;
}

/** Complete lines of the file sink's output (a torn last line from a crash is left out). */
export async function readSinkFile(file: string): Promise<SinkLine[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const out: SinkLine[] = [];
  let offset = 0;
  for (const line of text.split('\n').slice(0, -1)) {
    offset += Buffer.byteLength(line) + 1;
    if (line.length === 0) continue;
    out.push({ ...(JSON.parse(line) as Omit<SinkLine, 'end'>), end: offset });
  }
  return out;
}

export async function fileSize(file: string): Promise<number> {
  return stat(file).then(
    (s) => s.size,
    () => 0,
  );
}

/** One writer transaction: what it did, and LSNs bracketing it. */
export interface WriterTxn {
  lsnBefore: bigint;
  lsnAfter: bigint;
  insertedId: number;
  updated?: { id: number; note: string };
  deletedId?: number;
}

/**
 * Inserts, updates and deletes in small transactions until stopped. Every transaction
 * inserts one new id, updates another row's note to a unique value, and every third one
 * deletes a row.
 *
 * With `reconnect`, a failed transaction (the server restarting under it) is left out of
 * `txns` (it may or may not have committed) and the writer carries on with a new
 * connection; clients it opened itself are closed by `stop()`.
 */
export function startWriter(
  client: pg.Client,
  opts: { table: string; existingRows: number; firstId: number; reconnect?: () => Promise<pg.Client> },
) {
  const txns: WriterTxn[] = [];
  let stopped = false;
  let failure: unknown;
  let nextId = opts.firstId;
  let current = client;
  let failedTxns = 0;
  const currentLsn = async () =>
    parseLsn((await current.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l);
  const one = async (id: number) => {
    const txn: WriterTxn = { lsnBefore: await currentLsn(), lsnAfter: 0n, insertedId: id };
    await current.query('BEGIN');
    await current.query(`INSERT INTO ${opts.table} (id, balance, note) VALUES ($1, $2, 'new')`, [id, id * 3]);
    const target = (id % opts.existingRows) + 1;
    const note = `u${id}`;
    const updated = await current.query(`UPDATE ${opts.table} SET note = $1, balance = balance + 1 WHERE id = $2`, [
      note,
      target,
    ]);
    if (updated.rowCount === 1) txn.updated = { id: target, note };
    if (id % 3 === 0) {
      const victim = ((id * 7) % opts.existingRows) + 1;
      const deleted = await current.query(`DELETE FROM ${opts.table} WHERE id = $1`, [victim]);
      if (deleted.rowCount === 1) txn.deletedId = victim;
    }
    await current.query('COMMIT');
    txn.lsnAfter = await currentLsn();
    txns.push(txn);
  };
  const reconnect = async (reconnectWith: () => Promise<pg.Client>) => {
    if (current !== client) await current.end().catch(() => {});
    while (!stopped) {
      try {
        const fresh = await reconnectWith();
        fresh.on('error', () => {});
        current = fresh;
        return;
      } catch {
        await sleep(100);
      }
    }
  };
  const done = (async () => {
    while (!stopped) {
      try {
        await one(nextId++);
      } catch (error) {
        if (!opts.reconnect || stopped) throw error;
        failedTxns++;
        await reconnect(opts.reconnect);
      }
      await sleep(5);
    }
  })()
    .catch((error: unknown) => {
      failure = error;
    })
    .finally(async () => {
      if (current !== client) await current.end().catch(() => {});
    });
  return {
    txns,
    get failure() {
      return failure;
    },
    /** Transactions that failed (and were retried on a new connection). */
    get failedTxns() {
      return failedTxns;
    },
    async stop() {
      stopped = true;
      await done;
      if (failure) throw failure;
    },
  };
}

export type Writer = ReturnType<typeof startWriter>;

/** The test kit's reduceByKey, keyed `table|key`: the last line per key wins, deletes remove the key, a truncate empties its table. */
export function latestState(lines: SinkLine[]): Map<string, Record<string, unknown>> {
  const reduced = reduceByKey(
    lines.map((l) => ({
      table: l.table,
      op: l.op,
      key: l.key as Row,
      after: (l.after as Row) ?? null,
      position: l.position,
    })),
  );
  const state = new Map<string, Record<string, unknown>>();
  for (const [table, rows] of reduced) for (const [key, row] of rows) state.set(`${table}|${key}`, row);
  return state;
}
