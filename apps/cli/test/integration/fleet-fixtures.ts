/**
 * A fleet of real `nanosync serve` processes sharing one PostgreSQL state store, with a
 * real PostgreSQL source (one table, one pipeline per file sink), a concurrent writer and
 * the test kit's oracle. Used by fleet.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readlink, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertOracle, type ExpectedChange, type OracleRecord } from '@nanosync/connector-testkit';
import { readJsonLines } from '@nanosync/sink-file';
import { type PostgresService, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { type CliProcess, eventually, runCli, startServing } from './cli-process.js';

export const TABLE = 'public.items';

export interface FleetServer {
  name: string;
  proc: CliProcess;
  /** Admin API base URL. */
  url: string;
}

export interface SlotRow {
  slot: string;
  activePid: number | null;
  confirmedFlush: string | null;
}

/** A pg client that never crashes the test on a dropped connection (the store is stopped on purpose). */
async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

export class Fleet implements AsyncDisposable {
  readonly servers: FleetServer[] = [];
  readonly pipelines: string[];
  readonly writer: Writer;
  private state: pg.Client | undefined;

  private constructor(
    readonly source: PostgresService,
    readonly sourceUrl: string,
    readonly db: pg.Client,
    readonly stateUrl: string,
    readonly stateSchema: string,
    readonly dir: string,
    readonly config: string,
    readonly prefix: string,
    count: number,
    private readonly ownedState: PostgresService | undefined,
  ) {
    this.pipelines = Array.from({ length: count }, (_, i) => `${prefix}_${i + 1}`);
    this.writer = new Writer(sourceUrl);
  }

  /**
   * `pipelines` pipelines over one table of `rows` rows. The state store is a database of
   * `stateService` when given (a server the test may stop), else of the source's server.
   */
  static async create(options: { pipelines: number; rows: number; stateService?: PostgresService }): Promise<Fleet> {
    const source = await startPostgres();
    const sourceUrl = await source.createDatabase();
    const db = await connect(sourceUrl);
    await db.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, v int NOT NULL, note text)`);
    await db.query(`INSERT INTO ${TABLE} SELECT g, g, 'seed' FROM generate_series(1, $1) g`, [options.rows]);
    const schema = `fleet_${randomBytes(3).toString('hex')}`;
    const stateUrl = `${await (options.stateService ?? source).createDatabase()}?schema=${schema}`;
    const dir = await mkdtemp(join(tmpdir(), 'ns-fleet-'));
    const prefix = `fl${randomBytes(3).toString('hex')}`;
    const count = options.pipelines;
    const connections = [
      `  - name: pg\n    type: postgres\n    dsn: ${JSON.stringify(sourceUrl)}`,
      ...Array.from(
        { length: count },
        (_, i) =>
          `  - name: out${i + 1}\n    type: file\n    properties:\n      path: ${JSON.stringify(join(dir, `out${i + 1}`))}`,
      ),
    ];
    const pipelines = Array.from(
      { length: count },
      (_, i) =>
        `  - name: ${prefix}_${i + 1}\n    replication_type: cdc_backfill\n    source:\n      connection: pg\n      tables: [${TABLE}]\n    sink:\n      connection: out${i + 1}`,
    );
    const config = join(dir, 'pipelines.yaml');
    await writeFile(config, `connections:\n${connections.join('\n')}\npipelines:\n${pipelines.join('\n')}\n`);
    return new Fleet(source, sourceUrl, db, stateUrl, schema, dir, config, prefix, count, options.stateService);
  }

  /** Environment every server and client shares: one token and one secret key (XDG state folder). */
  get env(): Record<string, string> {
    return { XDG_STATE_HOME: join(this.dir, 'xdg') };
  }

  sinkFile(pipeline: string): string {
    return join(this.dir, `out${this.pipelines.indexOf(pipeline) + 1}`, `${TABLE}.jsonl`);
  }

  slotOf(pipeline: string): string {
    return `nanosync_slot_${pipeline}`;
  }

  /**
   * `serve` with short leases: a killed server's pipelines move after about `leaseTtl`
   * seconds. Not shorter: a server that is merely slow (a loaded test machine) must keep its
   * leases, or pipelines would move without a failure.
   */
  async startServer(name: string, leaseTtl = 6): Promise<FleetServer> {
    const { proc, server } = await startServing(
      ['serve', '--state', this.stateUrl, '--server-name', name, '--lease-ttl', String(leaseTtl)],
      { env: this.env },
    );
    const s = { name, proc, url: server };
    this.servers.push(s);
    return s;
  }

  async apply(server: FleetServer): Promise<void> {
    const result = await runCli(['apply', '--file', this.config, '--server', server.url, '--state', this.stateUrl], {
      env: this.env,
    });
    if (result.code !== 0) throw new Error(`apply failed: ${result.stderr}`);
  }

  /** The pipelines as `server`'s admin API lists them (`GET /v1/pipelines`, what `list pipelines --json` prints). */
  async list(
    server: FleetServer,
  ): Promise<{ name: string; state: string; server?: string; error?: string; waitingFor?: string }[]> {
    const token = (await readFile(join(this.env.XDG_STATE_HOME!, 'nanosync', 'token'), 'utf8')).trim();
    const response = await fetch(`${server.url}/v1/pipelines`, { headers: { authorization: `Bearer ${token}` } });
    if (!response.ok) throw new Error(`GET /v1/pipelines: ${response.status} ${await response.text()}`);
    return ((await response.json()) as { pipelines: { name: string; state: string; server?: string }[] }).pipelines;
  }

  /** `GET /metrics` of `server`: the Prometheus text. */
  async scrape(server: FleetServer): Promise<string> {
    const token = (await readFile(join(this.env.XDG_STATE_HOME!, 'nanosync', 'token'), 'utf8')).trim();
    const response = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    if (!response.ok) throw new Error(`GET /metrics: ${response.status} ${await response.text()}`);
    return response.text();
  }

  /** `nanosync metrics pipeline NAME` through `server`, as a user sees it. */
  async metricsText(server: FleetServer, pipeline: string): Promise<string> {
    const result = await runCli(['metrics', 'pipeline', pipeline, '--server', server.url, '--state', this.stateUrl], {
      env: this.env,
    });
    if (result.code !== 0) throw new Error(`metrics failed: ${result.stderr}`);
    return result.stdout;
  }

  /** `nanosync list pipelines` through `server`, as a user sees it. */
  async listText(server: FleetServer): Promise<string> {
    const result = await runCli(['list', 'pipelines', '--server', server.url, '--state', this.stateUrl], {
      env: this.env,
    });
    if (result.code !== 0) throw new Error(`list failed: ${result.stderr}`);
    return result.stdout;
  }

  async stateClient(): Promise<pg.Client> {
    if (this.state === undefined) this.state = await connect(this.stateUrl.replace(/\?schema=.*$/, ''));
    return this.state;
  }

  /** Forget the state connection (after the state server was stopped). */
  async dropStateClient(): Promise<void> {
    const state = this.state;
    this.state = undefined;
    await state?.end().catch(() => {});
  }

  /** Unexpired leases from the store: pipeline → holder and epoch. */
  async leases(): Promise<Map<string, { holder: string; epoch: number }>> {
    const { rows } = await (await this.stateClient()).query<{ pipeline: string; holder: string; epoch: string }>(
      `SELECT pipeline, holder, epoch FROM ${this.stateSchema}.leases WHERE expires_at > clock_timestamp()`,
    );
    return new Map(rows.map((r) => [r.pipeline, { holder: r.holder, epoch: Number(r.epoch) }]));
  }

  /** The pipeline's lease row as stored, expired or not (`valid`: unexpired on the store's clock). */
  async leaseRow(
    pipeline: string,
  ): Promise<{ holder: string; epoch: number; expiresAt: Date; valid: boolean } | undefined> {
    const { rows } = await (await this.stateClient()).query<{
      holder: string;
      epoch: string;
      expires_at: Date;
      valid: boolean;
    }>(
      `SELECT holder, epoch, expires_at, expires_at > clock_timestamp() AS valid FROM ${this.stateSchema}.leases WHERE pipeline = $1`,
      [pipeline],
    );
    const row = rows[0];
    return row && { holder: row.holder, epoch: Number(row.epoch), expiresAt: row.expires_at, valid: row.valid };
  }

  /** The stored checkpoint of the pipeline's (only) sink. */
  async checkpoint(pipeline: string): Promise<string | undefined> {
    const { rows } = await (await this.stateClient()).query<{ position: string }>(
      `SELECT position FROM ${this.stateSchema}.checkpoints WHERE pipeline = $1`,
      [pipeline],
    );
    return rows[0]?.position;
  }

  async slots(): Promise<Map<string, SlotRow>> {
    const { rows } = await this.db.query<{
      slot_name: string;
      active_pid: number | null;
      confirmed_flush_lsn: string | null;
    }>(
      'SELECT slot_name, active_pid, confirmed_flush_lsn::text FROM pg_replication_slots WHERE database = current_database()',
    );
    return new Map(
      rows.map((r) => [
        r.slot_name,
        { slot: r.slot_name, activePid: r.active_pid, confirmedFlush: r.confirmed_flush_lsn },
      ]),
    );
  }

  /**
   * Which of our server processes owns the replication connection of `pipeline`'s slot:
   * the walsender's client port, matched against the TCP sockets each process has open.
   */
  async slotOwner(pipeline: string): Promise<string | undefined> {
    const slot = (await this.slots()).get(this.slotOf(pipeline));
    if (slot?.activePid == null) return undefined;
    const { rows } = await this.db.query<{ client_port: number }>(
      'SELECT client_port FROM pg_stat_activity WHERE pid = $1',
      [slot.activePid],
    );
    const port = rows[0]?.client_port;
    if (port === undefined || port === null) return undefined;
    const inode = await socketInodeOfLocalPort(port);
    if (inode === undefined) return undefined;
    for (const server of this.servers) {
      const pid = server.proc.child.pid;
      if (pid !== undefined && (await socketInodesOf(pid)).has(inode)) return server.name;
    }
    return undefined;
  }

  /** Waits until the sink of every pipeline holds the marker row written now. */
  async drainAll(markerId: number): Promise<void> {
    await this.db.query(`INSERT INTO ${TABLE} VALUES ($1, 0, 'marker')`, [markerId]);
    for (const pipeline of this.pipelines) {
      await eventually(
        async () =>
          (await readJsonLines(this.sinkFile(pipeline)).catch(() => [])).some((r) => Number(r.key.id) === markerId)
            ? true
            : undefined,
        `the marker row in ${pipeline}'s sink`,
        120_000,
      );
    }
  }

  /** RELIABILITY.md's oracle on `pipeline`'s sink: the table as it is now, every writer change present. */
  async oracle(pipeline: string): Promise<void> {
    const { rows } = await this.db.query(`SELECT id, v, note FROM ${TABLE} ORDER BY id`);
    const records = (await readJsonLines(this.sinkFile(pipeline))) as unknown as OracleRecord[];
    assertOracle({ records, expected: { [TABLE]: rows }, keyColumns: ['id'], changes: this.writer.changes });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.writer.stop().catch(() => {});
    for (const s of this.servers) {
      s.proc.child.kill('SIGCONT');
      await s.proc[Symbol.asyncDispose]().catch(() => {});
    }
    await this.dropStateClient();
    // Slots pin WAL on the shared server: drop what is left.
    await this.db
      .query(
        `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL`,
      )
      .catch(() => {});
    await this.db
      .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`)
      .catch(() => {});
    await this.db.end().catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
    await this.source[Symbol.asyncDispose]();
    void this.ownedState;
  }
}

/**
 * Inserts, updates and deletes in small transactions until stopped, recording each change
 * for the oracle's "nothing lost" check. Ids from 100 000 up; it updates and deletes only
 * rows it inserted (each key updated once, then possibly deleted).
 */
const FIRST_ID = 100_000;

export class Writer {
  readonly changes: ExpectedChange[] = [];
  private running: Promise<void> | undefined;
  private stopping = false;
  private nextId = FIRST_ID;
  committed = 0;

  constructor(private readonly url: string) {}

  start(): void {
    this.stopping = false;
    this.running ??= this.loop();
  }

  /** Waits until `n` more transactions were committed. */
  async more(n: number): Promise<void> {
    const target = this.committed + n;
    await eventually(async () => (this.committed >= target ? true : undefined), `${n} writer transactions`, 60_000);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const running = this.running;
    this.running = undefined;
    await running;
  }

  private async loop(): Promise<void> {
    const client = await connect(this.url);
    try {
      while (!this.stopping) {
        const id = this.nextId++;
        const changes: ExpectedChange[] = [
          { table: TABLE, op: 'insert', key: { id }, after: { id, v: 1, note: 'new' } },
        ];
        await client.query('BEGIN');
        await client.query(`INSERT INTO ${TABLE} VALUES ($1, 1, 'new')`, [id]);
        if (id % 2 === 0 && id - 1 >= FIRST_ID) {
          const note = `upd-${id}`;
          await client.query(`UPDATE ${TABLE} SET v = v + 1, note = $2 WHERE id = $1`, [id - 1, note]);
          changes.push({ table: TABLE, op: 'update', key: { id: id - 1 }, after: { note } });
        }
        if (id % 5 === 0 && id - 3 >= FIRST_ID) {
          await client.query(`DELETE FROM ${TABLE} WHERE id = $1`, [id - 3]);
          changes.push({ table: TABLE, op: 'delete', key: { id: id - 3 } });
        }
        await client.query('COMMIT');
        this.changes.push(...changes);
        this.committed++;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await client.end().catch(() => {});
    }
  }
}

/** The inode of the TCP socket (IPv4 or IPv6, this network namespace) whose local port is `port`. */
async function socketInodeOfLocalPort(port: number): Promise<string | undefined> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length > 9 && fields[1]!.endsWith(`:${hex}`)) return fields[9];
    }
  }
  return undefined;
}

/** Inodes of the sockets process `pid` has open. */
async function socketInodesOf(pid: number): Promise<Set<string>> {
  const out = new Set<string>();
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match) out.add(match[1]!);
  }
  return out;
}
