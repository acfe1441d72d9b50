import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { parseLsn } from '../../../src/position.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../../../..');

/** A pipeline server in a child process (run-pipeline.ts). */
export class PipelineProcess {
  readonly stdout: string[] = [];
  stderr = '';
  readonly exited: Promise<number | string | null>;
  readonly #child: ChildProcess;

  constructor(configFile: string, stateFile: string, secretKey: string) {
    this.#child = spawn(
      process.execPath,
      [
        '--conditions=@nanosync/source',
        '--import',
        'tsx',
        join(here, 'run-pipeline.ts'),
        configFile,
        stateFile,
        secretKey,
      ],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NS_LOG_LEVEL: 'info' } },
    );
    let partial = '';
    this.#child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      this.stdout.push(...lines);
    });
    this.#child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-20_000);
    });
    this.exited = new Promise((resolveExit) => this.#child.on('exit', (code, signal) => resolveExit(code ?? signal)));
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  async waitForLine(predicate: (line: string) => boolean, what: string, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.stdout.find(predicate);
      if (line) return line;
      if (this.#child.exitCode !== null || this.#child.signalCode !== null)
        throw new Error(`pipeline process exited while waiting for ${what}\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${this.stderr}`);
      await sleep(25);
    }
  }

  kill(signal: NodeJS.Signals): void {
    this.#child.kill(signal);
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
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

export interface SinkLine {
  op: string;
  table: string;
  key: Record<string, unknown>;
  after?: Record<string, unknown>;
  position: string;
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
 */
export function startWriter(client: pg.Client, opts: { table: string; existingRows: number; firstId: number }) {
  const txns: WriterTxn[] = [];
  let stopped = false;
  let failure: unknown;
  let nextId = opts.firstId;
  const done = (async () => {
    while (!stopped) {
      const id = nextId++;
      const lsnBefore = parseLsn((await client.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l);
      const txn: WriterTxn = { lsnBefore, lsnAfter: 0n, insertedId: id };
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${opts.table} (id, balance, note) VALUES ($1, $2, 'new')`, [id, id * 3]);
      const target = (id % opts.existingRows) + 1;
      const note = `u${id}`;
      const updated = await client.query(`UPDATE ${opts.table} SET note = $1, balance = balance + 1 WHERE id = $2`, [
        note,
        target,
      ]);
      if (updated.rowCount === 1) txn.updated = { id: target, note };
      if (id % 3 === 0) {
        const victim = ((id * 7) % opts.existingRows) + 1;
        const deleted = await client.query(`DELETE FROM ${opts.table} WHERE id = $1`, [victim]);
        if (deleted.rowCount === 1) txn.deletedId = victim;
      }
      await client.query('COMMIT');
      txn.lsnAfter = parseLsn((await client.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l);
      txns.push(txn);
      await sleep(5);
    }
  })().catch((error: unknown) => {
    failure = error;
  });
  return {
    txns,
    get failure() {
      return failure;
    },
    async stop() {
      stopped = true;
      await done;
      if (failure) throw failure;
    },
  };
}

/** The last line per key wins; deletes remove the key. */
export function latestState(lines: SinkLine[]): Map<string, Record<string, unknown>> {
  const state = new Map<string, Record<string, unknown>>();
  for (const line of lines) {
    const key = `${line.table}|${JSON.stringify(line.key)}`;
    if (line.op === 'delete') state.delete(key);
    else state.set(key, line.after!);
  }
  return state;
}
