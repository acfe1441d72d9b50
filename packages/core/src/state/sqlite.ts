import { existsSync, fdatasyncSync, mkdirSync, rmdirSync, rmSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import path from 'node:path';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { ErrorCode, NanosyncError, redact } from '../errors.js';
import type { Position } from '../model.js';
import { fenceHolds, leaseFenceError } from './fence.js';
import type {
  ChunkRecord,
  LeaseFence,
  LeaseInfo,
  PartitionRecord,
  PipelineRecord,
  PipelineState,
  ServerRecord,
  StateStore,
} from './store.js';

/**
 * The embedded state store: one SQLite file opened through `node:sqlite`.
 *
 * - WAL journal: a write has reached the disk when its promise resolves, which is what lets
 *   the runtime acknowledge the source right after a checkpoint. SQLite commits with
 *   `synchronous=NORMAL` (into the WAL, without fsync: that already survives the process being
 *   killed) and the store fsyncs the WAL file itself after the commit:
 *   - the snapshot's chunk records (`saveChunk`, `markPartitionDone`: two or more per chunk
 *     read) on libuv's thread pool: the promise resolves once an `fdatasync` that began after
 *     the commit has finished, the event loop goes on meanwhile, and the records committed
 *     while one runs share the next (group commit). Under `synchronous=FULL` each of them held
 *     the main thread 3 ms with other processes writing to the disk (a broker, PostgreSQL):
 *     4-8% of a snapshot's main thread;
 *   - every other write before the call returns, as `synchronous=FULL` did: a state change
 *     or a checkpoint is durable by the time anything sees the call finish.
 *   Where the WAL journal is not available, the file keeps SQLite's own `synchronous=FULL`.
 *   After a failed fsync the store refuses every later write: what the kernel dropped cannot
 *   be known.
 * - Several processes may open the same file (two servers pointed at one store): each
 *   connection waits up to `busy_timeout` for another's write lock, and the lease is taken
 *   inside `BEGIN IMMEDIATE`, so the check-then-write is atomic across processes.
 * - The calls are synchronous underneath (a local file, microseconds to a few ms per fsync);
 *   the async interface is for stores that talk to a server.
 *
 * Every failure is a `NanosyncError(StateUnavailable)` naming the file, so a pipeline that
 * stops on it tells the operator which store to repair.
 */
export async function openSqliteStateStore(file: string): Promise<StateStore> {
  const absolute = path.resolve(file);
  const dir = path.dirname(absolute);
  const createdDirs: string[] = [];
  const fileExisted = existsSync(absolute);
  try {
    createDirs(dir, createdDirs);
  } catch (err) {
    throw unavailable(absolute, `cannot create the folder ${dir}`, err);
  }
  let db: DatabaseSync | undefined;
  let wal = false;
  let walFile: FileHandle | undefined;
  try {
    db = new DatabaseSync(absolute, { timeout: BUSY_TIMEOUT_MS });
    const mode = db.prepare('PRAGMA journal_mode=WAL').get() as { journal_mode?: string } | undefined;
    wal = mode?.journal_mode?.toLowerCase() === 'wal';
    // NORMAL only where this store fsyncs the WAL itself before a write's promise resolves.
    db.exec(wal ? 'PRAGMA synchronous=NORMAL' : 'PRAGMA synchronous=FULL');
    db.exec(`PRAGMA busy_timeout=${BUSY_TIMEOUT_MS}`);
    migrate(db);
    // The migration's write is not durable until the first sync: make it so before returning.
    if (wal) {
      walFile = await open(`${absolute}-wal`, 'r+');
      await walFile.datasync();
    }
  } catch (err) {
    await walFile?.close().catch(() => {});
    try {
      db?.close();
    } catch {}
    // Leave nothing behind that we created: no empty database, no folder.
    if (!fileExisted) {
      for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(absolute + suffix, { force: true });
    }
    for (const created of createdDirs.reverse()) {
      try {
        rmdirSync(created);
      } catch {}
    }
    throw unavailable(absolute, 'cannot open it for writing', err);
  }
  return new SqliteStateStore(db, absolute, walFile);
}

const BUSY_TIMEOUT_MS = 5_000;
/**
 * 1: first layout. 2: `leases.epoch` (fencing). 3: `servers` (a fleet's members).
 * 4: `snapshot_chunks` (per-chunk snapshot progress).
 */
const SCHEMA_VERSION = 4;

function createDirs(dir: string, created: string[]): void {
  const missing: string[] = [];
  for (let d = dir; !existsSync(d); d = path.dirname(d)) {
    missing.push(d);
    if (path.dirname(d) === d) break;
  }
  mkdirSync(dir, { recursive: true });
  created.push(...missing.reverse());
}

function unavailable(
  file: string,
  what: string,
  cause: unknown,
  fix = 'check that the path is writable by this user',
): NanosyncError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new NanosyncError(ErrorCode.StateUnavailable, `state store ${file}: ${what} (${redact(reason)}); ${fix}`, {
    cause,
    details: { store: file },
  });
}

function migrate(db: DatabaseSync): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS pipelines (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        definition_hash TEXT NOT NULL,
        replication_type TEXT,
        state TEXT NOT NULL,
        error TEXT,
        start_position TEXT,
        snapshot_done INTEGER NOT NULL DEFAULT 0,
        paused INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS partitions (
        pipeline TEXT NOT NULL,
        table_name TEXT NOT NULL,
        id TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        bounds TEXT,
        estimated_rows INTEGER,
        status TEXT NOT NULL DEFAULT 'pending',
        rows_read INTEGER,
        PRIMARY KEY (pipeline, table_name, id)
      );
      CREATE TABLE IF NOT EXISTS checkpoints (
        pipeline TEXT NOT NULL,
        sink TEXT NOT NULL,
        position TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, sink)
      );
      CREATE TABLE IF NOT EXISTS leases (
        pipeline TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
    `);
    const row = db.prepare('SELECT value FROM meta WHERE key = ?').get('schema_version') as
      | { value: string }
      | undefined;
    // A new file has the version-1 tables just created above.
    const version = row === undefined ? 1 : Number(row.value);
    if (!Number.isInteger(version) || version < 1 || version > SCHEMA_VERSION) {
      throw new NanosyncError(
        ErrorCode.StateCorrupt,
        `state store schema version ${row?.value} is not supported (this nanosync knows 1 to ${SCHEMA_VERSION}); use the nanosync version that wrote it`,
      );
    }
    if (version < 2) db.exec('ALTER TABLE leases ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1');
    if (version < 3) {
      db.exec(`CREATE TABLE IF NOT EXISTS servers (
        id TEXT PRIMARY KEY,
        details TEXT NOT NULL,
        started_at TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      )`);
    }
    if (version < 4) {
      // An older store has no chunk records: its partitions in progress are read from their start once.
      db.exec(`CREATE TABLE IF NOT EXISTS snapshot_chunks (
        pipeline TEXT NOT NULL,
        table_name TEXT NOT NULL,
        partition_id TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        id TEXT NOT NULL,
        start_cursor TEXT,
        end_cursor TEXT,
        status TEXT NOT NULL,
        position TEXT,
        row_count INTEGER,
        PRIMARY KEY (pipeline, table_name, partition_id, ordinal)
      )`);
    }
    db.prepare(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ).run('schema_version', String(SCHEMA_VERSION));
    // A real write, so a read-only file fails here rather than at the first checkpoint.
    db.prepare(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ).run('opened_at', new Date().toISOString());
    db.exec('COMMIT');
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

interface PipelineRow {
  name: string;
  definition: string;
  definition_hash: string;
  replication_type: string | null;
  state: string;
  error: string | null;
  start_position: string | null;
  snapshot_done: number;
  paused: number;
  created_at: string;
  updated_at: string;
}

interface PartitionRow {
  pipeline: string;
  table_name: string;
  id: string;
  ordinal: number;
  bounds: string | null;
  estimated_rows: number | null;
  status: string;
  rows_read: number | null;
}

interface ChunkRow {
  pipeline: string;
  table_name: string;
  partition_id: string;
  ordinal: number;
  id: string;
  start_cursor: string | null;
  end_cursor: string | null;
  status: string;
  position: string | null;
  row_count: number | null;
}

class SqliteStateStore implements StateStore {
  private readonly statements = new Map<string, StatementSync>();
  private closed = false;
  /** The fsync under way, if any. */
  private syncing: Promise<void> | undefined;
  /** The fsync that starts when `syncing` ends: every write committed since `syncing` began. */
  private nextSync: Promise<void> | undefined;
  /** Why the WAL could not be synced: every later write fails with it. */
  private syncFailure: unknown;

  constructor(
    private readonly db: DatabaseSync,
    readonly file: string,
    /** The WAL file (journal mode WAL), fsynced before a write's promise resolves; else SQLite's FULL sync. */
    private readonly walFile: FileHandle | undefined,
  ) {}

  async getPipeline(name: string): Promise<PipelineRecord | undefined> {
    return this.guard('read a pipeline', () => {
      const row = this.stmt('SELECT * FROM pipelines WHERE name = ?').get(name) as PipelineRow | undefined;
      return row && toPipeline(row);
    });
  }

  async listPipelines(): Promise<PipelineRecord[]> {
    return this.guard('list pipelines', () =>
      (this.stmt('SELECT * FROM pipelines ORDER BY name').all() as unknown as PipelineRow[]).map(toPipeline),
    );
  }

  async upsertPipeline(record: Omit<PipelineRecord, 'createdAt' | 'updatedAt'>): Promise<void> {
    this.guard('save a pipeline', () => {
      const now = new Date().toISOString();
      this.stmt(
        `INSERT INTO pipelines (name, definition, definition_hash, replication_type, state, error, start_position, snapshot_done, paused, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET
           definition = excluded.definition, definition_hash = excluded.definition_hash,
           replication_type = excluded.replication_type, state = excluded.state, error = excluded.error,
           start_position = COALESCE(excluded.start_position, pipelines.start_position),
           snapshot_done = excluded.snapshot_done, paused = excluded.paused, updated_at = excluded.updated_at`,
      ).run(
        record.name,
        JSON.stringify(record.definition ?? null),
        record.definitionHash,
        record.replicationType ?? null,
        record.state,
        record.error ?? null,
        record.startPosition ?? null,
        record.snapshotDone ? 1 : 0,
        record.paused ? 1 : 0,
        now,
        now,
      );
    });
    this.syncedNow('save a pipeline');
  }

  async updatePipeline(
    name: string,
    patch: Partial<Pick<PipelineRecord, 'state' | 'error' | 'startPosition' | 'snapshotDone' | 'paused'>>,
    fence?: LeaseFence,
  ): Promise<void> {
    this.fenced('update a pipeline', name, fence, () => {
      const sets: string[] = [];
      const values: SQLInputValue[] = [];
      const column = {
        state: 'state',
        error: 'error',
        startPosition: 'start_position',
        snapshotDone: 'snapshot_done',
        paused: 'paused',
      } as const;
      for (const key of Object.keys(patch) as (keyof typeof column)[]) {
        if (!(key in column)) continue;
        const value = patch[key];
        sets.push(`${column[key]} = ?`);
        values.push(typeof value === 'boolean' ? (value ? 1 : 0) : (value ?? null));
      }
      sets.push('updated_at = ?');
      values.push(new Date().toISOString(), name);
      // Not cached: the column list varies with the patch.
      this.db.prepare(`UPDATE pipelines SET ${sets.join(', ')} WHERE name = ?`).run(...values);
    });
    this.syncedNow('update a pipeline');
  }

  async deletePipeline(name: string): Promise<void> {
    this.transaction('delete a pipeline', () => {
      for (const table of ['pipelines', 'partitions', 'snapshot_chunks', 'checkpoints']) {
        this.stmt(`DELETE FROM ${table} WHERE ${table === 'pipelines' ? 'name' : 'pipeline'} = ?`).run(name);
      }
      // The lease row stays, expired and without holder, so a runner of the deleted pipeline
      // cannot write into a new pipeline of the same name with its old epoch.
      this.stmt("UPDATE leases SET holder = '', expires_at = 0 WHERE pipeline = ?").run(name);
    });
    this.syncedNow('delete a pipeline');
  }

  async savePartitions(
    pipeline: string,
    table: string,
    partitions: Omit<PartitionRecord, 'pipeline' | 'table' | 'status'>[],
    fence?: LeaseFence,
  ): Promise<PartitionRecord[]> {
    const result = this.transaction('save snapshot partitions', () => {
      if (fence !== undefined) this.checkFence('save snapshot partitions', pipeline, fence);
      const existing = this.stmt('SELECT COUNT(*) AS n FROM partitions WHERE pipeline = ? AND table_name = ?').get(
        pipeline,
        table,
      ) as { n: number };
      if (existing.n === 0) {
        const insert = this.stmt(
          'INSERT INTO partitions (pipeline, table_name, id, ordinal, bounds, estimated_rows, status, rows_read) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        );
        for (const p of partitions) {
          insert.run(
            pipeline,
            table,
            p.id,
            p.ordinal,
            JSON.stringify(p.bounds ?? null),
            p.estimatedRows ?? null,
            'pending',
            p.rowsRead ?? null,
          );
        }
      }
      return this.selectPartitions(pipeline, table);
    });
    this.syncedNow('save snapshot partitions');
    return result;
  }

  async listPartitions(pipeline: string, table?: string): Promise<PartitionRecord[]> {
    return this.guard('read snapshot partitions', () => this.selectPartitions(pipeline, table));
  }

  async markPartitionDone(
    pipeline: string,
    table: string,
    id: string,
    rowsRead: number,
    fence?: LeaseFence,
  ): Promise<void> {
    this.fencedTransaction('mark a partition done', pipeline, fence, () => {
      this.stmt(
        "UPDATE partitions SET status = 'done', rows_read = ? WHERE pipeline = ? AND table_name = ? AND id = ?",
      ).run(rowsRead, pipeline, table, id);
      this.stmt('DELETE FROM snapshot_chunks WHERE pipeline = ? AND table_name = ? AND partition_id = ?').run(
        pipeline,
        table,
        id,
      );
    });
    await this.synced('mark a partition done');
  }

  async saveChunk(pipeline: string, chunk: Omit<ChunkRecord, 'pipeline'>, fence?: LeaseFence): Promise<void> {
    this.fenced('save a snapshot chunk', pipeline, fence, () => {
      this.stmt(
        `INSERT INTO snapshot_chunks (pipeline, table_name, partition_id, ordinal, id, start_cursor, end_cursor, status, position, row_count)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (pipeline, table_name, partition_id, ordinal) DO UPDATE SET
           id = excluded.id, start_cursor = excluded.start_cursor, end_cursor = excluded.end_cursor,
           status = excluded.status, position = excluded.position, row_count = excluded.row_count`,
      ).run(
        pipeline,
        chunk.table,
        chunk.partition,
        chunk.ordinal,
        chunk.id,
        JSON.stringify(chunk.after ?? null),
        JSON.stringify(chunk.next ?? null),
        chunk.status,
        chunk.position ?? null,
        chunk.rows ?? null,
      );
    });
    await this.synced('save a snapshot chunk');
  }

  async listChunks(pipeline: string, table?: string): Promise<ChunkRecord[]> {
    return this.guard('read snapshot chunks', () => {
      const rows = (table === undefined
        ? this.stmt('SELECT * FROM snapshot_chunks WHERE pipeline = ? ORDER BY table_name, partition_id, ordinal').all(
            pipeline,
          )
        : this.stmt(
            'SELECT * FROM snapshot_chunks WHERE pipeline = ? AND table_name = ? ORDER BY partition_id, ordinal',
          ).all(pipeline, table)) as unknown as ChunkRow[];
      return rows.map(toChunk);
    });
  }

  async clearPartitions(pipeline: string, fence?: LeaseFence, table?: string): Promise<void> {
    this.fencedTransaction('clear snapshot partitions', pipeline, fence, () => {
      for (const name of ['partitions', 'snapshot_chunks']) {
        if (table === undefined) this.stmt(`DELETE FROM ${name} WHERE pipeline = ?`).run(pipeline);
        else this.stmt(`DELETE FROM ${name} WHERE pipeline = ? AND table_name = ?`).run(pipeline, table);
      }
    });
    this.syncedNow('clear snapshot partitions');
  }

  async saveCheckpoint(pipeline: string, sink: string, position: Position, fence?: LeaseFence): Promise<void> {
    this.fenced('save a checkpoint', pipeline, fence, () => {
      this.stmt(
        `INSERT INTO checkpoints (pipeline, sink, position, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (pipeline, sink) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`,
      ).run(pipeline, sink, position, new Date().toISOString());
    });
    this.syncedNow('save a checkpoint');
  }

  async getCheckpoints(pipeline: string): Promise<Record<string, Position>> {
    return this.guard('read checkpoints', () => {
      const out: Record<string, Position> = {};
      for (const row of this.stmt('SELECT sink, position FROM checkpoints WHERE pipeline = ?').all(pipeline) as {
        sink: string;
        position: string;
      }[]) {
        out[row.sink] = row.position;
      }
      return out;
    });
  }

  async clearCheckpoints(pipeline: string, fence?: LeaseFence): Promise<void> {
    this.fenced('clear checkpoints', pipeline, fence, () => {
      this.stmt('DELETE FROM checkpoints WHERE pipeline = ?').run(pipeline);
    });
    this.syncedNow('clear checkpoints');
  }

  async acquireLease(
    pipeline: string,
    holder: string,
    ttlMs: number,
  ): Promise<{ acquired: true; epoch: number } | { acquired: false; lease: LeaseInfo }> {
    const result = this.transaction('take a pipeline lease', () => {
      const now = Date.now();
      const row = this.stmt('SELECT holder, expires_at, epoch FROM leases WHERE pipeline = ?').get(pipeline) as
        | { holder: string; expires_at: number; epoch: number }
        | undefined;
      const held = row !== undefined && row.expires_at > now;
      if (row !== undefined && held && row.holder !== holder) {
        return {
          acquired: false as const,
          lease: { pipeline, holder: row.holder, expiresAt: new Date(row.expires_at).toISOString(), epoch: row.epoch },
        };
      }
      // Renewal keeps the epoch; any other taking raises it.
      const epoch = row === undefined ? 1 : held ? row.epoch : row.epoch + 1;
      this.stmt(
        `INSERT INTO leases (pipeline, holder, expires_at, epoch) VALUES (?, ?, ?, ?)
         ON CONFLICT (pipeline) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, epoch = excluded.epoch`,
      ).run(pipeline, holder, now + ttlMs, epoch);
      return { acquired: true as const, epoch };
    });
    this.syncedNow('take a pipeline lease');
    return result;
  }

  async getLease(pipeline: string): Promise<LeaseInfo | undefined> {
    return this.guard('read a pipeline lease', () => {
      const row = this.stmt('SELECT holder, expires_at, epoch FROM leases WHERE pipeline = ?').get(pipeline) as
        | { holder: string; expires_at: number; epoch: number }
        | undefined;
      if (row === undefined || row.expires_at <= Date.now()) return undefined;
      return { pipeline, holder: row.holder, expiresAt: new Date(row.expires_at).toISOString(), epoch: row.epoch };
    });
  }

  async releaseLease(pipeline: string, holder: string): Promise<void> {
    this.guard('release a pipeline lease', () => {
      // Expire rather than delete: the epoch must keep growing for the next holder.
      this.stmt('UPDATE leases SET expires_at = 0 WHERE pipeline = ? AND holder = ?').run(pipeline, holder);
    });
    this.syncedNow('release a pipeline lease');
  }

  async listLeases(): Promise<LeaseInfo[]> {
    return this.guard('list pipeline leases', () =>
      (
        this.stmt('SELECT pipeline, holder, expires_at, epoch FROM leases WHERE expires_at > ? ORDER BY pipeline').all(
          Date.now(),
        ) as { pipeline: string; holder: string; expires_at: number; epoch: number }[]
      ).map((row) => ({
        pipeline: row.pipeline,
        holder: row.holder,
        expiresAt: new Date(row.expires_at).toISOString(),
        epoch: row.epoch,
      })),
    );
  }

  async registerServer(id: string, ttlMs: number, details: Record<string, unknown>): Promise<void> {
    this.guard('register this server', () => {
      const now = Date.now();
      this.stmt(
        `INSERT INTO servers (id, details, started_at, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET details = excluded.details, expires_at = excluded.expires_at`,
      ).run(id, JSON.stringify(details), new Date(now).toISOString(), now + ttlMs);
    });
    this.syncedNow('register this server');
  }

  async listServers(): Promise<ServerRecord[]> {
    return this.guard('list servers', () =>
      (
        this.stmt('SELECT id, details, started_at, expires_at FROM servers WHERE expires_at > ? ORDER BY id').all(
          Date.now(),
        ) as { id: string; details: string; started_at: string; expires_at: number }[]
      ).map((row) => ({
        id: row.id,
        details: JSON.parse(row.details) as Record<string, unknown>,
        startedAt: row.started_at,
        expiresAt: new Date(row.expires_at).toISOString(),
      })),
    );
  }

  async removeServer(id: string): Promise<void> {
    this.guard('unregister a server', () => {
      this.stmt('DELETE FROM servers WHERE id = ?').run(id);
    });
    this.syncedNow('unregister a server');
  }

  async getMeta(key: string): Promise<string | undefined> {
    return this.guard(
      'read a setting',
      () => (this.stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value,
    );
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.guard('save a setting', () => {
      this.stmt(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ).run(key, value);
    });
    this.syncedNow('save a setting');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Writes already committed still get their fsync (and their callers an answer).
    await (this.nextSync ?? this.syncing)?.catch(() => {});
    await this.walFile?.close().catch(() => {});
    this.statements.clear();
    this.db.close();
  }

  /**
   * After a commit: resolves once an fsync of the WAL that began after it has finished, done on
   * libuv's thread pool. One at a time; the commits made while one runs share the next one.
   */
  private synced(what: string): Promise<void> {
    const walFile = this.walFile;
    if (walFile === undefined) return Promise.resolve();
    if (this.syncFailure !== undefined) return Promise.reject(this.syncError(what));
    if (this.nextSync === undefined) {
      const next: Promise<void> = (this.syncing ?? Promise.resolve()).then(async () => {
        this.nextSync = undefined;
        this.syncing = next;
        try {
          await walFile.datasync();
        } catch (err) {
          this.syncFailure ??= err;
          throw err;
        } finally {
          if (this.syncing === next) this.syncing = undefined;
        }
      });
      this.nextSync = next;
    }
    return this.nextSync.catch(() => {
      throw this.syncError(what);
    });
  }

  /** After a commit: fsync the WAL before returning (the write's promise resolves durable). */
  private syncedNow(what: string): void {
    const walFile = this.walFile;
    if (walFile === undefined) return;
    if (this.syncFailure !== undefined) throw this.syncError(what);
    try {
      fdatasyncSync(walFile.fd);
    } catch (err) {
      this.syncFailure ??= err;
      throw this.syncError(what);
    }
  }

  private syncError(what: string): NanosyncError {
    // Not the hint about permissions: the file was written, the disk failed to keep it.
    return unavailable(
      this.file,
      `cannot ${what}: the write did not reach the disk`,
      this.syncFailure,
      'the disk or file system reported an error (see the kernel log), so this store takes no more writes: fix the disk and restart nanosync, which resumes from the last checkpoint on disk',
    );
  }

  private selectPartitions(pipeline: string, table?: string): PartitionRecord[] {
    const rows = (table === undefined
      ? this.stmt('SELECT * FROM partitions WHERE pipeline = ? ORDER BY table_name, ordinal').all(pipeline)
      : this.stmt('SELECT * FROM partitions WHERE pipeline = ? AND table_name = ? ORDER BY ordinal').all(
          pipeline,
          table,
        )) as unknown as PartitionRow[];
    return rows.map(toPartition);
  }

  private stmt(sql: string): StatementSync {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private guard<T>(what: string, fn: () => T): T {
    if (this.closed)
      throw new NanosyncError(
        ErrorCode.StateUnavailable,
        `state store ${this.file}: cannot ${what}, the store is closed`,
        { details: { store: this.file } },
      );
    try {
      return fn();
    } catch (err) {
      if (err instanceof NanosyncError) throw err;
      throw unavailable(this.file, `cannot ${what}`, err);
    }
  }

  /** `fn` alone without a fence; with one, in a transaction that first checks the lease. */
  private fenced<T>(what: string, pipeline: string, fence: LeaseFence | undefined, fn: () => T): T {
    if (fence === undefined) return this.guard(what, fn);
    return this.transaction(what, () => {
      this.checkFence(what, pipeline, fence);
      return fn();
    });
  }

  /** `fn` in a transaction, which first checks the lease when given a fence. */
  private fencedTransaction<T>(what: string, pipeline: string, fence: LeaseFence | undefined, fn: () => T): T {
    return this.transaction(what, () => {
      if (fence !== undefined) this.checkFence(what, pipeline, fence);
      return fn();
    });
  }

  /** Inside a transaction: throw unless the lease still has the fence's holder and epoch. */
  private checkFence(what: string, pipeline: string, fence: LeaseFence): void {
    const current = this.stmt('SELECT holder, epoch FROM leases WHERE pipeline = ?').get(pipeline) as
      | { holder: string; epoch: number }
      | undefined;
    if (!fenceHolds(fence, current)) throw leaseFenceError(pipeline, what, fence, current);
  }

  private transaction<T>(what: string, fn: () => T): T {
    return this.guard(what, () => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = fn();
        this.db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    });
  }
}

function toPipeline(row: PipelineRow): PipelineRecord {
  const record: PipelineRecord = {
    name: row.name,
    definition: JSON.parse(row.definition) as unknown,
    definitionHash: row.definition_hash,
    state: row.state as PipelineState,
    snapshotDone: row.snapshot_done === 1,
    paused: row.paused === 1,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
  if (row.replication_type !== null) record.replicationType = row.replication_type;
  if (row.error !== null) record.error = row.error;
  if (row.start_position !== null) record.startPosition = row.start_position;
  return record;
}

function toPartition(row: PartitionRow): PartitionRecord {
  const record: PartitionRecord = {
    pipeline: row.pipeline,
    table: row.table_name,
    id: row.id,
    ordinal: row.ordinal,
    bounds: row.bounds === null ? null : (JSON.parse(row.bounds) as unknown),
    status: row.status === 'done' ? 'done' : 'pending',
  };
  if (row.estimated_rows !== null) record.estimatedRows = row.estimated_rows;
  if (row.rows_read !== null) record.rowsRead = row.rows_read;
  return record;
}

function toChunk(row: ChunkRow): ChunkRecord {
  const record: ChunkRecord = {
    pipeline: row.pipeline,
    table: row.table_name,
    partition: row.partition_id,
    ordinal: row.ordinal,
    id: row.id,
    after: row.start_cursor === null ? null : (JSON.parse(row.start_cursor) as unknown),
    next: row.end_cursor === null ? null : (JSON.parse(row.end_cursor) as unknown),
    status: row.status === 'done' ? 'done' : 'read',
  };
  if (row.position !== null) record.position = row.position;
  if (row.row_count !== null) record.rows = row.row_count;
  return record;
}
