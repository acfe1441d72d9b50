import { ErrorCode, NanosyncError, type Position, redact } from '@nanosync/core';
import {
  type ChunkRecord,
  fenceHolds,
  type LeaseFence,
  type LeaseInfo,
  leaseFenceError,
  type PartitionRecord,
  type PipelineRecord,
  type PipelineState,
  type ServerRecord,
  type StateStore,
} from '@nanosync/core/host';
import pg from 'pg';

export interface PostgresStateStoreOptions {
  /** Schema holding the store's tables; created when missing. Default `nanosync`, or `?schema=` in the URL. */
  schema?: string;
  /** Connections kept open at most (default 4). */
  maxConnections?: number;
  /** `application_name` shown in pg_stat_activity (default `nanosync-state`). */
  applicationName?: string;
}

export const DEFAULT_SCHEMA = 'nanosync';

/**
 * Versioned migrations, applied in order at open. Each runs once, in the transaction that
 * holds the schema's advisory lock and records it in `schema_migrations`; never edit one that
 * shipped — add the next.
 */
const MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE meta (
        key text PRIMARY KEY,
        value text NOT NULL
      );
      CREATE TABLE pipelines (
        name text PRIMARY KEY,
        definition text NOT NULL,
        definition_hash text NOT NULL,
        replication_type text,
        state text NOT NULL,
        error text,
        start_position text,
        snapshot_done boolean NOT NULL DEFAULT false,
        paused boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
      );
      CREATE TABLE partitions (
        pipeline text NOT NULL,
        table_name text NOT NULL,
        id text NOT NULL,
        ordinal integer NOT NULL,
        bounds text,
        estimated_rows bigint,
        status text NOT NULL DEFAULT 'pending',
        rows_read bigint,
        PRIMARY KEY (pipeline, table_name, id)
      );
      CREATE TABLE checkpoints (
        pipeline text NOT NULL,
        sink text NOT NULL,
        position text NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (pipeline, sink)
      );
      CREATE TABLE leases (
        pipeline text PRIMARY KEY,
        holder text NOT NULL,
        expires_at timestamptz NOT NULL,
        epoch bigint NOT NULL DEFAULT 1
      );
    `,
  },
  {
    version: 2,
    sql: `
      CREATE TABLE servers (
        id text PRIMARY KEY,
        details text NOT NULL,
        started_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
      );
    `,
  },
  {
    // Per-chunk snapshot progress. A store without chunk rows reads its partitions in progress from their start once.
    version: 3,
    sql: `
      CREATE TABLE snapshot_chunks (
        pipeline text NOT NULL,
        table_name text NOT NULL,
        partition_id text NOT NULL,
        ordinal integer NOT NULL,
        id text NOT NULL,
        start_cursor text,
        end_cursor text,
        status text NOT NULL,
        position text,
        row_count bigint,
        PRIMARY KEY (pipeline, table_name, partition_id, ordinal)
      );
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * Open the PostgreSQL state store at `url` (`postgres://user:password@host:5432/db`).
 *
 * TLS comes from the URL: `sslmode` (libpq's meanings), `sslrootcert`, `sslcert`, `sslkey`. The store creates its schema and applies its migrations at open, under a
 * transaction-scoped advisory lock, so several servers starting at once migrate once. A
 * store written by a newer nanosync (a migration this build does not know) is refused.
 */
export async function openPostgresStateStore(
  url: string,
  options: PostgresStateStoreOptions = {},
): Promise<StateStore> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (err) {
    throw new NanosyncError(ErrorCode.ConfigInvalid, `state store URL is not a valid URL (${redact(String(err))})`, {
      cause: err,
    });
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new NanosyncError(
      ErrorCode.ConfigInvalid,
      `state store URL must start with postgres:// or postgresql:// (got ${parsed.protocol}//)`,
    );
  }
  const schema = options.schema ?? parsed.searchParams.get('schema') ?? DEFAULT_SCHEMA;
  parsed.searchParams.delete('schema');
  if (!IDENTIFIER.test(schema)) {
    throw new NanosyncError(
      ErrorCode.ConfigInvalid,
      `state store schema "${schema}" is not a plain identifier (letters, digits, _; at most 63 characters)`,
    );
  }
  // sslmode with libpq's meanings, as for a Postgres source (pg alone reads require as verify-full).
  if (parsed.searchParams.has('sslmode') && !parsed.searchParams.has('uselibpqcompat')) {
    parsed.searchParams.set('uselibpqcompat', 'true');
  }
  const label = describeUrl(parsed, schema);
  const pool = new pg.Pool({
    connectionString: parsed.toString(),
    max: options.maxConnections ?? 4,
    application_name: options.applicationName ?? 'nanosync-state',
    keepAlive: true,
    // A store host that does not answer (network gone, server frozen) must fail the call,
    // not hang it: the pipeline then waits for the store instead of for a socket.
    connectionTimeoutMillis: 10_000,
    query_timeout: 60_000,
    // A fenced write holds the lease row (FOR SHARE) until it commits. A server frozen in
    // the middle of one (SIGSTOP, a VM paused) would keep that lock, and with it every other
    // server's takeover of the pipeline, for as long as its connection lives: the database
    // ends such a transaction after 10 s idle instead.
    idle_in_transaction_session_timeout: 10_000,
  });
  // An idle connection dropped by the server must not crash the process; the next query
  // reconnects or fails with an error naming the store.
  pool.on('error', () => {});
  const store = new PostgresStateStore(pool, quoteIdent(schema), schema, label);
  try {
    await store.migrate();
  } catch (err) {
    await pool.end().catch(() => {});
    if (err instanceof NanosyncError) throw err;
    throw unavailable(label, 'cannot open it', err);
  }
  return store;
}

/** `user@host:port/db (schema nanosync)`: enough to find the store, no password. */
function describeUrl(url: URL, schema: string): string {
  const user = url.username ? `${decodeURIComponent(url.username)}@` : '';
  const port = url.port ? `:${url.port}` : '';
  return `postgres://${user}${url.hostname}${port}${url.pathname} (schema ${schema})`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function unavailable(label: string, what: string, cause: unknown): NanosyncError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new NanosyncError(ErrorCode.StateUnavailable, `state store ${label}: ${what} (${redact(reason)})`, {
    cause,
    details: { store: label },
  });
}

interface PipelineRow {
  name: string;
  definition: string;
  definition_hash: string;
  replication_type: string | null;
  state: string;
  error: string | null;
  start_position: string | null;
  snapshot_done: boolean;
  paused: boolean;
  created_at: Date;
  updated_at: Date;
}

interface PartitionRow {
  pipeline: string;
  table_name: string;
  id: string;
  ordinal: number;
  bounds: string | null;
  estimated_rows: string | null;
  status: string;
  rows_read: string | null;
}

type Queryable = Pick<pg.PoolClient, 'query'>;

class PostgresStateStore implements StateStore {
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    /** Quoted schema name, safe to splice into SQL. */
    private readonly s: string,
    private readonly schema: string,
    readonly label: string,
  ) {}

  async migrate(): Promise<void> {
    await this.transaction('apply its migrations', async (c) => {
      // Serialises concurrent openers (several servers starting together) per schema; the
      // lock goes with the transaction.
      await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`nanosync.state:${this.schema}`]);
      // CREATE … IF NOT EXISTS checks the CREATE privilege even when the object exists, so
      // look first: a role that only owns a schema made for it by an administrator can open it.
      const { rows: found } = await c.query<{ schema: boolean; table: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema,
                to_regclass($2) IS NOT NULL AS table`,
        [this.schema, `${this.s}.schema_migrations`],
      );
      if (!found[0]?.schema) await c.query(`CREATE SCHEMA ${this.s}`);
      if (!found[0]?.table) {
        await c.query(
          `CREATE TABLE ${this.s}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
        );
      }
      const { rows } = await c.query<{ version: number }>(
        `SELECT max(version) AS version FROM ${this.s}.schema_migrations`,
      );
      const current = rows[0]?.version ?? 0;
      if (current > SCHEMA_VERSION) {
        throw new NanosyncError(
          ErrorCode.StateCorrupt,
          `state store ${this.label}: schema version ${current} is newer than this nanosync understands (${SCHEMA_VERSION}); use the nanosync version that wrote it`,
          { details: { store: this.label } },
        );
      }
      for (const migration of MIGRATIONS) {
        if (migration.version <= current) continue;
        await c.query(`SET LOCAL search_path TO ${this.s}`);
        await c.query(migration.sql);
        await c.query(`INSERT INTO ${this.s}.schema_migrations (version) VALUES ($1)`, [migration.version]);
      }
      // A real write, so a read-only role or server fails here rather than at the first checkpoint.
      await c.query(
        `INSERT INTO ${this.s}.meta (key, value) VALUES ('opened_at', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
        [new Date().toISOString()],
      );
    });
  }

  async getPipeline(name: string): Promise<PipelineRecord | undefined> {
    const { rows } = await this.query<PipelineRow>(
      'read a pipeline',
      `SELECT * FROM ${this.s}.pipelines WHERE name = $1`,
      [name],
    );
    return rows[0] && toPipeline(rows[0]);
  }

  async listPipelines(): Promise<PipelineRecord[]> {
    const { rows } = await this.query<PipelineRow>(
      'list pipelines',
      `SELECT * FROM ${this.s}.pipelines ORDER BY name COLLATE "C"`,
    );
    return rows.map(toPipeline);
  }

  async upsertPipeline(record: Omit<PipelineRecord, 'createdAt' | 'updatedAt'>): Promise<void> {
    await this.query(
      'save a pipeline',
      `INSERT INTO ${this.s}.pipelines (name, definition, definition_hash, replication_type, state, error, start_position, snapshot_done, paused, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
       ON CONFLICT (name) DO UPDATE SET
         definition = excluded.definition, definition_hash = excluded.definition_hash,
         replication_type = excluded.replication_type, state = excluded.state, error = excluded.error,
         start_position = COALESCE(excluded.start_position, pipelines.start_position),
         snapshot_done = excluded.snapshot_done, paused = excluded.paused, updated_at = excluded.updated_at`,
      [
        record.name,
        JSON.stringify(record.definition ?? null),
        record.definitionHash,
        record.replicationType ?? null,
        record.state,
        record.error ?? null,
        record.startPosition ?? null,
        record.snapshotDone,
        record.paused,
        new Date(),
      ],
    );
  }

  async updatePipeline(
    name: string,
    patch: Partial<Pick<PipelineRecord, 'state' | 'error' | 'startPosition' | 'snapshotDone' | 'paused'>>,
    fence?: LeaseFence,
  ): Promise<void> {
    const column = {
      state: 'state',
      error: 'error',
      startPosition: 'start_position',
      snapshotDone: 'snapshot_done',
      paused: 'paused',
    } as const;
    const sets: string[] = [];
    const values: unknown[] = [];
    for (const key of Object.keys(patch) as (keyof typeof column)[]) {
      if (!(key in column)) continue;
      values.push(patch[key] ?? null);
      sets.push(`${column[key]} = $${values.length}`);
    }
    values.push(new Date());
    sets.push(`updated_at = $${values.length}`);
    values.push(name);
    await this.fenced(
      'update a pipeline',
      name,
      fence,
      `UPDATE ${this.s}.pipelines SET ${sets.join(', ')} WHERE name = $${values.length}`,
      values,
    );
  }

  async deletePipeline(name: string): Promise<void> {
    await this.transaction('delete a pipeline', async (c) => {
      await c.query(`DELETE FROM ${this.s}.pipelines WHERE name = $1`, [name]);
      await c.query(`DELETE FROM ${this.s}.partitions WHERE pipeline = $1`, [name]);
      await c.query(`DELETE FROM ${this.s}.snapshot_chunks WHERE pipeline = $1`, [name]);
      await c.query(`DELETE FROM ${this.s}.checkpoints WHERE pipeline = $1`, [name]);
      // The lease row stays, expired and without holder: the epoch keeps growing, so a runner
      // of the deleted pipeline cannot write into a new pipeline of the same name.
      await c.query(`UPDATE ${this.s}.leases SET holder = '', expires_at = '-infinity' WHERE pipeline = $1`, [name]);
    });
  }

  async savePartitions(
    pipeline: string,
    table: string,
    partitions: Omit<PartitionRecord, 'pipeline' | 'table' | 'status'>[],
    fence?: LeaseFence,
  ): Promise<PartitionRecord[]> {
    return this.transaction('save snapshot partitions', async (c) => {
      if (fence !== undefined) await this.checkFence(c, 'save snapshot partitions', pipeline, fence);
      // Two servers planning the same table at once: the second waits here and then sees the first's plan.
      await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
        `nanosync.partitions:${this.schema}:${pipeline}:${table}`,
      ]);
      const { rows } = await c.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${this.s}.partitions WHERE pipeline = $1 AND table_name = $2`,
        [pipeline, table],
      );
      if (Number(rows[0]?.n ?? 0) === 0 && partitions.length > 0) {
        await c.query(
          `INSERT INTO ${this.s}.partitions (pipeline, table_name, id, ordinal, bounds, estimated_rows, status, rows_read)
           SELECT $1, $2, p.id, p.ordinal, p.bounds, p.estimated_rows, 'pending', p.rows_read
           FROM unnest($3::text[], $4::integer[], $5::text[], $6::bigint[], $7::bigint[])
             AS p(id, ordinal, bounds, estimated_rows, rows_read)`,
          [
            pipeline,
            table,
            partitions.map((p) => p.id),
            partitions.map((p) => p.ordinal),
            partitions.map((p) => JSON.stringify(p.bounds ?? null)),
            partitions.map((p) => p.estimatedRows ?? null),
            partitions.map((p) => p.rowsRead ?? null),
          ],
        );
      }
      return this.selectPartitions(c, pipeline, table);
    });
  }

  async listPartitions(pipeline: string, table?: string): Promise<PartitionRecord[]> {
    return this.guard('read snapshot partitions', () => this.selectPartitions(this.pool, pipeline, table));
  }

  async markPartitionDone(
    pipeline: string,
    table: string,
    id: string,
    rowsRead: number,
    fence?: LeaseFence,
  ): Promise<void> {
    await this.transaction('mark a partition done', async (c) => {
      if (fence !== undefined) await this.checkFence(c, 'mark a partition done', pipeline, fence);
      await c.query(
        `UPDATE ${this.s}.partitions SET status = 'done', rows_read = $1 WHERE pipeline = $2 AND table_name = $3 AND id = $4`,
        [rowsRead, pipeline, table, id],
      );
      await c.query(
        `DELETE FROM ${this.s}.snapshot_chunks WHERE pipeline = $1 AND table_name = $2 AND partition_id = $3`,
        [pipeline, table, id],
      );
    });
  }

  async saveChunk(pipeline: string, chunk: Omit<ChunkRecord, 'pipeline'>, fence?: LeaseFence): Promise<void> {
    await this.fenced(
      'save a snapshot chunk',
      pipeline,
      fence,
      `INSERT INTO ${this.s}.snapshot_chunks
         (pipeline, table_name, partition_id, ordinal, id, start_cursor, end_cursor, status, position, row_count)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (pipeline, table_name, partition_id, ordinal) DO UPDATE SET
         id = excluded.id, start_cursor = excluded.start_cursor, end_cursor = excluded.end_cursor,
         status = excluded.status, position = excluded.position, row_count = excluded.row_count`,
      [
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
      ],
    );
  }

  async listChunks(pipeline: string, table?: string): Promise<ChunkRecord[]> {
    const { rows } = await this.query<ChunkRow>(
      'read snapshot chunks',
      table === undefined
        ? `SELECT * FROM ${this.s}.snapshot_chunks WHERE pipeline = $1 ORDER BY table_name COLLATE "C", partition_id COLLATE "C", ordinal`
        : `SELECT * FROM ${this.s}.snapshot_chunks WHERE pipeline = $1 AND table_name = $2 ORDER BY partition_id COLLATE "C", ordinal`,
      table === undefined ? [pipeline] : [pipeline, table],
    );
    return rows.map(toChunk);
  }

  async clearPartitions(pipeline: string, fence?: LeaseFence, table?: string): Promise<void> {
    await this.transaction('clear snapshot partitions', async (c) => {
      if (fence !== undefined) await this.checkFence(c, 'clear snapshot partitions', pipeline, fence);
      for (const name of ['partitions', 'snapshot_chunks'])
        await c.query(
          `DELETE FROM ${this.s}.${name} WHERE pipeline = $1${table === undefined ? '' : ' AND table_name = $2'}`,
          table === undefined ? [pipeline] : [pipeline, table],
        );
    });
  }

  async saveCheckpoint(pipeline: string, sink: string, position: Position, fence?: LeaseFence): Promise<void> {
    await this.fenced(
      'save a checkpoint',
      pipeline,
      fence,
      `INSERT INTO ${this.s}.checkpoints (pipeline, sink, position, updated_at) VALUES ($1, $2, $3, now())
       ON CONFLICT (pipeline, sink) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`,
      [pipeline, sink, position],
    );
  }

  async getCheckpoints(pipeline: string): Promise<Record<string, Position>> {
    const { rows } = await this.query<{ sink: string; position: string }>(
      'read checkpoints',
      `SELECT sink, position FROM ${this.s}.checkpoints WHERE pipeline = $1`,
      [pipeline],
    );
    const out: Record<string, Position> = {};
    for (const row of rows) out[row.sink] = row.position;
    return out;
  }

  async clearCheckpoints(pipeline: string, fence?: LeaseFence): Promise<void> {
    await this.fenced('clear checkpoints', pipeline, fence, `DELETE FROM ${this.s}.checkpoints WHERE pipeline = $1`, [
      pipeline,
    ]);
  }

  /**
   * One statement: insert, renew (same holder) or take over (expired) — or nothing when
   * another holder's lease is still valid. Expiry uses the database clock, so servers whose
   * clocks disagree still agree on who holds a lease. The epoch goes up whenever the lease
   * is taken rather than renewed.
   *
   * The new expiry of an update is read from the clock when the row is updated, not from
   * the inserted values: those are computed before the statement waits for the row (a
   * fenced write holding it FOR SHARE), and a wait longer than the TTL would otherwise
   * write a lease that has already run out.
   */
  async acquireLease(
    pipeline: string,
    holder: string,
    ttlMs: number,
  ): Promise<{ acquired: true; epoch: number } | { acquired: false; lease: LeaseInfo }> {
    const { rows } = await this.query<{ epoch: string }>(
      'take a pipeline lease',
      `INSERT INTO ${this.s}.leases AS l (pipeline, holder, expires_at, epoch)
       VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond', 1)
       ON CONFLICT (pipeline) DO UPDATE SET
         holder = excluded.holder,
         expires_at = clock_timestamp() + $3 * interval '1 millisecond',
         epoch = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp() THEN l.epoch ELSE l.epoch + 1 END
       WHERE l.holder = excluded.holder OR l.expires_at <= clock_timestamp()
       RETURNING epoch`,
      [pipeline, holder, ttlMs],
    );
    if (rows[0] !== undefined) return { acquired: true, epoch: Number(rows[0].epoch) };
    const lease = await this.getLease(pipeline);
    if (lease !== undefined) return { acquired: false, lease };
    // Expired between the two statements: try once more.
    return this.acquireLease(pipeline, holder, ttlMs);
  }

  async getLease(pipeline: string): Promise<LeaseInfo | undefined> {
    const { rows } = await this.query<{ holder: string; expires_at: Date; epoch: string }>(
      'read a pipeline lease',
      `SELECT holder, expires_at, epoch FROM ${this.s}.leases WHERE pipeline = $1 AND expires_at > clock_timestamp()`,
      [pipeline],
    );
    const row = rows[0];
    return row && { pipeline, holder: row.holder, expiresAt: row.expires_at.toISOString(), epoch: Number(row.epoch) };
  }

  async releaseLease(pipeline: string, holder: string): Promise<void> {
    await this.query(
      'release a pipeline lease',
      `UPDATE ${this.s}.leases SET expires_at = '-infinity' WHERE pipeline = $1 AND holder = $2`,
      [pipeline, holder],
    );
  }

  async listLeases(): Promise<LeaseInfo[]> {
    const { rows } = await this.query<{ pipeline: string; holder: string; expires_at: Date; epoch: string }>(
      'list pipeline leases',
      `SELECT pipeline, holder, expires_at, epoch FROM ${this.s}.leases
       WHERE expires_at > clock_timestamp() ORDER BY pipeline COLLATE "C"`,
    );
    return rows.map((row) => ({
      pipeline: row.pipeline,
      holder: row.holder,
      expiresAt: row.expires_at.toISOString(),
      epoch: Number(row.epoch),
    }));
  }

  /** Expiry on the database clock, like the leases. */
  async registerServer(id: string, ttlMs: number, details: Record<string, unknown>): Promise<void> {
    await this.query(
      'register this server',
      `INSERT INTO ${this.s}.servers (id, details, started_at, expires_at)
       VALUES ($1, $2, clock_timestamp(), clock_timestamp() + $3 * interval '1 millisecond')
       ON CONFLICT (id) DO UPDATE SET details = excluded.details, expires_at = excluded.expires_at`,
      [id, JSON.stringify(details), ttlMs],
    );
  }

  async listServers(): Promise<ServerRecord[]> {
    const { rows } = await this.query<{ id: string; details: string; started_at: Date; expires_at: Date }>(
      'list servers',
      `SELECT id, details, started_at, expires_at FROM ${this.s}.servers
       WHERE expires_at > clock_timestamp() ORDER BY id COLLATE "C"`,
    );
    return rows.map((row) => ({
      id: row.id,
      details: JSON.parse(row.details) as Record<string, unknown>,
      startedAt: row.started_at.toISOString(),
      expiresAt: row.expires_at.toISOString(),
    }));
  }

  async removeServer(id: string): Promise<void> {
    await this.query('unregister a server', `DELETE FROM ${this.s}.servers WHERE id = $1`, [id]);
  }

  async getMeta(key: string): Promise<string | undefined> {
    const { rows } = await this.query<{ value: string }>(
      'read a setting',
      `SELECT value FROM ${this.s}.meta WHERE key = $1`,
      [key],
    );
    return rows[0]?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.query(
      'save a setting',
      `INSERT INTO ${this.s}.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      [key, value],
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  private async selectPartitions(c: Queryable, pipeline: string, table?: string): Promise<PartitionRecord[]> {
    const { rows } =
      table === undefined
        ? await c.query<PartitionRow>(
            `SELECT * FROM ${this.s}.partitions WHERE pipeline = $1 ORDER BY table_name COLLATE "C", ordinal`,
            [pipeline],
          )
        : await c.query<PartitionRow>(
            `SELECT * FROM ${this.s}.partitions WHERE pipeline = $1 AND table_name = $2 ORDER BY ordinal`,
            [pipeline, table],
          );
    return rows.map(toPartition);
  }

  /**
   * Without a fence, one statement. With one, a transaction that locks the lease row
   * (FOR SHARE: a takeover waits for this write, and a write after a takeover sees the new
   * epoch) and makes the write only while the fence holds.
   */
  private async fenced(
    what: string,
    pipeline: string,
    fence: LeaseFence | undefined,
    sql: string,
    values: unknown[],
  ): Promise<void> {
    if (fence === undefined) {
      await this.query(what, sql, values);
      return;
    }
    await this.transaction(what, async (c) => {
      await this.checkFence(c, what, pipeline, fence);
      await c.query(sql, values);
    });
  }

  /**
   * Inside a transaction: lock the lease row (FOR SHARE: a takeover waits for this write,
   * and a write after a takeover sees the new epoch) and throw unless the fence holds.
   */
  private async checkFence(c: Queryable, what: string, pipeline: string, fence: LeaseFence): Promise<void> {
    const { rows } = await c.query<{ holder: string; epoch: string }>(
      `SELECT holder, epoch FROM ${this.s}.leases WHERE pipeline = $1 FOR SHARE`,
      [pipeline],
    );
    const current = rows[0] && { holder: rows[0].holder, epoch: Number(rows[0].epoch) };
    if (!fenceHolds(fence, current)) throw leaseFenceError(pipeline, what, fence, current);
  }

  private query<R extends pg.QueryResultRow>(
    what: string,
    sql: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    return this.guard(what, () => this.pool.query<R>(sql, values));
  }

  private async guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) {
      throw new NanosyncError(
        ErrorCode.StateUnavailable,
        `state store ${this.label}: cannot ${what}, the store is closed`,
        {
          details: { store: this.label },
        },
      );
    }
    try {
      return await fn();
    } catch (err) {
      if (err instanceof NanosyncError) throw err;
      throw unavailable(this.label, `cannot ${what}`, err);
    }
  }

  private transaction<T>(what: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.guard(what, async () => {
      const client = await this.pool.connect();
      let broken = false;
      // A checked-out client has no listener of the pool's: a connection the store server
      // ends in the middle of this transaction (shutdown, failover) would otherwise be an
      // unhandled 'error' event and end the whole process. The query fails on its own.
      const onError = () => {
        broken = true;
      };
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw err;
      } finally {
        client.removeListener('error', onError);
        client.release(broken);
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
    snapshotDone: row.snapshot_done,
    paused: row.paused,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
  if (row.replication_type !== null) record.replicationType = row.replication_type;
  if (row.error !== null) record.error = row.error;
  if (row.start_position !== null) record.startPosition = row.start_position;
  return record;
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
  row_count: string | null;
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
  if (row.row_count !== null) record.rows = Number(row.row_count);
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
  if (row.estimated_rows !== null) record.estimatedRows = Number(row.estimated_rows);
  if (row.rows_read !== null) record.rowsRead = Number(row.rows_read);
  return record;
}
