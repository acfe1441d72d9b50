/**
 * One chaos run: a fresh database with `public.accounts` on the runner's PostgreSQL, a
 * seeded pipeline config (Kafka or file sink), real `nanosync` processes (the test kit's
 * NanosyncServer), a seeded concurrent writer, the 100 ms flush sampler, and at the end the
 * test kit's oracle over everything the sink holds.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import {
  checkFlushSamples,
  type ExpectedChange,
  type FlushSample,
  FlushSampler,
  NanosyncServer,
  type OracleRecord,
  runOracle,
} from '@nanosync/connector-testkit/harness';
import type { Row, Value } from '@nanosync/core';
import { readJsonLines } from '@nanosync/sink-file';
import {
  type DecodedChange,
  decodeAvroMessage,
  decodeJsonMessage,
  decodeProtobufMessage,
  registerCompressionCodecs,
} from '@nanosync/sink-kafka';
import type { KafkaService, PostgresService } from '@nanosync/testcontainers';
import kafkajs from 'kafkajs';
import pg from 'pg';
import type { Random } from './random.js';

const { Kafka, logLevel } = kafkajs;

export const TABLE = 'public.accounts';
const MARKER_ID = 9_999_999;
const FIRST_INSERT_ID = 1_000_000;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface Services {
  postgres: PostgresService;
  kafka: KafkaService;
}

/** `XXXXXXXX/YYYYYYYY` (pg_lsn text) → the 64-bit LSN. */
export function parsePgLsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

/** The LSN of a PostgreSQL source position (`<16 hex LSN>:<8 hex index>`). */
export const positionLsn = (position: string): bigint => BigInt(`0x${position.split(':')[0]}`);

/**
 * Whether a stored checkpoint is past a row inserted (and committed) between the insert
 * LSNs `before` and `after`, with no other writer running: `'unsure'` for a keepalive
 * between the two, which may sort before or after the row's commit (see `ChaosRun.drain`).
 */
export function checkpointPassesMarker(checkpoint: string, before: bigint, after: bigint): boolean | 'unsure' {
  const lsn = positionLsn(checkpoint);
  if (lsn <= before) return false;
  const index = Number.parseInt(checkpoint.split(':')[1] ?? '0', 16);
  if (index > 0 || lsn >= after) return true;
  return 'unsure';
}

/** A superuser connection that opens again after the server restarted under it. */
export class AdminDb {
  #client: pg.Client | undefined;

  constructor(readonly url: string) {}

  async query<R extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    params: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (!this.#client) {
          const client = new pg.Client({ connectionString: this.url });
          client.on('error', () => {});
          this.#client = client;
          await client.connect();
        }
        return await this.#client.query<R>(sql, params);
      } catch (error) {
        await this.close();
        const lost = !(error instanceof pg.DatabaseError) || /^(08|57P)/.test(error.code ?? '');
        if (!lost || attempt >= 100) throw error;
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

/** What a seed chose for the writer: the mix of operations, statements per transaction, pauses, bulk inserts. */
export interface WriterMix {
  insert: number;
  update: number;
  delete: number;
  /** Statements per transaction, at most. */
  maxStatements: number;
  pauseMs: number;
  /** Chance that a transaction is one multi-row INSERT of 50–400 rows (one commit LSN for all). */
  bulkChance: number;
}

export function drawWriterMix(rng: Random): WriterMix {
  return {
    insert: rng.int(1, 6),
    update: rng.int(1, 6),
    delete: rng.int(0, 3),
    maxStatements: rng.int(1, 6),
    pauseMs: rng.int(2, 25),
    bulkChance: rng.pick([0, 0.01, 0.03]),
  };
}

interface WriterTxn {
  lsnBefore: bigint;
  changes: ExpectedChange[];
}

/**
 * Inserts, updates and deletes in seeded transactions until stopped. Every committed change
 * is recorded with the WAL insert position taken before its transaction began, so the oracle
 * can expect exactly the changes that began after the pipeline's start position. A
 * transaction whose connection failed (a server restart) is not recorded (it may or may not
 * have committed); the writer carries on with a new connection.
 */
/**
 * Work a scenario runs on the writer's own connection between two of its transactions (a
 * DDL statement, a TRUNCATE, an ATTACH PARTITION), so the writer's idea of the table (its
 * live ids, its columns) always matches the table. `live` may be changed in place; the
 * changes returned are recorded as one transaction the oracle expects.
 */
export type WriterAction = (db: pg.Client, live: number[]) => Promise<ExpectedChange[] | undefined>;

/** Where an action ran in the WAL: everything the writer committed after it lies above `after`. */
export interface ActionLsns {
  before: bigint;
  after: bigint;
}

interface QueuedAction {
  action: WriterAction;
  resolve: (lsns: ActionLsns) => void;
  reject: (error: unknown) => void;
}

/** How the runner reads a Kafka record value of the run's message format back into a change (canonical values). */
export function kafkaDecoder(format: 'json' | 'avro' | 'protobuf'): (value: Uint8Array) => DecodedChange {
  return format === 'avro' ? decodeAvroMessage : format === 'protobuf' ? decodeProtobufMessage : decodeJsonMessage;
}

export class SeededWriter {
  readonly txns: WriterTxn[] = [];
  failedTxns = 0;
  /** The text column the writer sets (a scenario renames it). */
  noteColumn = 'note';
  /** How a value of `v` reads in the sink (a scenario retypes it: int64 travels as a string). */
  vValue: (v: number) => Value = (v) => v;
  #live: number[];
  #actions: QueuedAction[] = [];
  #nextId = FIRST_INSERT_ID;
  #seq = 0;
  #stopping = false;
  /** Set by {@link pause}: the loop waits between transactions until {@link resume}. */
  #paused: { idle: () => void; resumed: Promise<void>; resume: () => void } | undefined;
  #idle: Promise<void> | undefined;
  #done: Promise<void> | undefined;
  #failure: unknown;

  constructor(
    private readonly db: AdminDb,
    private readonly rng: Random,
    private readonly mix: WriterMix,
    seededRows: number,
  ) {
    this.#live = Array.from({ length: seededRows }, (_, i) => i + 1);
  }

  get committed(): number {
    return this.txns.length;
  }

  start(): void {
    this.#done ??= this.#loop();
  }

  /** Stop between transactions (none is left open) until {@link resume}; resolves once idle. */
  async pause(): Promise<void> {
    if (this.#paused || !this.#done) return;
    let idle!: () => void;
    let resume!: () => void;
    this.#idle = new Promise<void>((r) => {
      idle = r;
    });
    const resumed = new Promise<void>((r) => {
      resume = r;
    });
    this.#paused = { idle, resumed, resume };
    await this.#idle;
  }

  resume(): void {
    const paused = this.#paused;
    this.#paused = undefined;
    paused?.resume();
  }

  /** Runs `action` between two writer transactions (see {@link WriterAction}); resolves once it committed. */
  between(action: WriterAction): Promise<ActionLsns> {
    if (this.#done === undefined || this.#stopping) return Promise.reject(new Error('the writer is not running'));
    return new Promise((resolve, reject) => this.#actions.push({ action, resolve, reject }));
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.resume();
    await this.#done;
    if (this.#failure) throw this.#failure;
  }

  async #loop(): Promise<void> {
    // Its own plain connection, never retried inside a transaction: a statement that failed
    // with the connection leaves the whole transaction unrecorded, and a new one is opened.
    let client: pg.Client | undefined;
    try {
      while (!this.#stopping) {
        const paused = this.#paused;
        if (paused) {
          paused.idle();
          await paused.resumed;
          continue;
        }
        try {
          if (!client) {
            client = new pg.Client({ connectionString: this.db.url });
            client.on('error', () => {});
            await client.connect();
          }
          const queued = this.#actions.shift();
          if (queued) await this.#act(client, queued);
          else await this.#one(client);
        } catch (error) {
          if (error instanceof pg.DatabaseError && !/^(08|57P|40)/.test(error.code ?? '')) throw error;
          this.failedTxns++;
          await client?.end().catch(() => {});
          client = undefined;
          await sleep(100);
        }
        await sleep(this.mix.pauseMs);
      }
    } catch (error) {
      this.#failure = error;
    } finally {
      await client?.end().catch(() => {});
      for (const queued of this.#actions.splice(0)) queued.reject(new Error('the writer stopped'));
    }
  }

  async #act(db: pg.Client, queued: QueuedAction): Promise<void> {
    const lsn = async () =>
      parsePgLsn((await db.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]!.l);
    try {
      const before = await lsn();
      const live = [...this.#live];
      const changes = await queued.action(db, live);
      this.#live = live;
      if (changes?.length) this.txns.push({ lsnBefore: before, changes });
      queued.resolve({ before, after: await lsn() });
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {});
      queued.reject(error);
    }
  }

  async #one(db: pg.Client): Promise<void> {
    const rng = this.rng;
    const lsnBefore = parsePgLsn(
      (await db.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]!.l,
    );
    const changes: ExpectedChange[] = [];
    const live = [...this.#live];
    let nextId = this.#nextId;
    await db.query('BEGIN');
    try {
      if (rng.chance(this.mix.bulkChance)) {
        const n = rng.int(50, 400);
        const first = nextId;
        nextId += n;
        const column = this.noteColumn;
        await db.query(
          `INSERT INTO ${TABLE} (id, v, ${column}) SELECT g, 0, 'bulk' FROM generate_series($1::int, $2::int) g`,
          [first, first + n - 1],
        );
        for (let id = first; id < first + n; id++) {
          changes.push({ table: TABLE, op: 'insert', key: { id }, after: { id, v: this.vValue(0), [column]: 'bulk' } });
          live.push(id);
        }
      } else {
        const statements = rng.int(1, this.mix.maxStatements);
        const total = this.mix.insert + this.mix.update + this.mix.delete;
        for (let s = 0; s < statements; s++) {
          const roll = rng.next() * total;
          const note = `w${++this.#seq}`;
          const column = this.noteColumn;
          if (roll < this.mix.insert || live.length === 0) {
            const id = nextId++;
            await db.query(`INSERT INTO ${TABLE} (id, v, ${column}) VALUES ($1, 1, $2)`, [id, note]);
            changes.push({ table: TABLE, op: 'insert', key: { id }, after: { id, v: this.vValue(1), [column]: note } });
            live.push(id);
          } else if (roll < this.mix.insert + this.mix.update) {
            const id = live[rng.int(0, live.length - 1)]!;
            const r = await db.query(`UPDATE ${TABLE} SET v = v + 1, ${column} = $2 WHERE id = $1`, [id, note]);
            if (r.rowCount === 1) changes.push({ table: TABLE, op: 'update', key: { id }, after: { [column]: note } });
          } else {
            const at = rng.int(0, live.length - 1);
            const id = live[at]!;
            live.splice(at, 1);
            const r = await db.query(`DELETE FROM ${TABLE} WHERE id = $1`, [id]);
            if (r.rowCount === 1) changes.push({ table: TABLE, op: 'delete', key: { id } });
          }
        }
      }
      await db.query('COMMIT');
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {});
      this.#nextId = nextId; // never reuse an id that may have committed
      throw error;
    }
    this.#nextId = nextId;
    this.#live = live;
    this.txns.push({ lsnBefore, changes });
  }
}

/** What a seed chose for the pipeline. */
export interface PipelineSettings {
  rows: number;
  concurrency: number;
  rowsPerPartition: number;
  chunkRows: number;
  /** Kafka sink only. */
  partitions: number;
  compression: string;
  maxBytesInFlight: number;
}

export function drawPipelineSettings(rng: Random, maxRows: number): PipelineSettings {
  return {
    rows: rng.int(Math.max(500, Math.floor(maxRows / 3)), maxRows),
    concurrency: rng.int(1, 3),
    rowsPerPartition: rng.pick([200, 500, 1000, 2500]),
    chunkRows: rng.pick([100, 500, 2000]),
    partitions: rng.int(1, 3),
    compression: rng.pick(['none', 'snappy', 'gzip', 'lz4']),
    maxBytesInFlight: rng.pick([16 * 1024, 256 * 1024, 1024 * 1024]),
  };
}

export interface RunOptions {
  sink: 'kafka' | 'file';
  settings: PipelineSettings;
  /** The file sink's folder (e.g. a small filesystem); default inside the run's folder. */
  fileDir?: string;
  /** `--state` for the servers: default a SQLite file in the run's folder; a postgres:// URL for an external store. */
  state?: string;
  /** Added to every server's environment (e.g. NANOSYNC_TEST_FAULT for the broken-build check). */
  env?: Record<string, string>;
  /** Fan-out: further sinks after the first, each with its own topic or folder (`sinks:` in the config). */
  moreSinks?: ('kafka' | 'file')[];
  /** Extra keys of each sink's entry, by index in `sinks` (`on_error`, `max_spill_bytes`…). */
  sinkKeys?: Record<string, string | number>[];
  /**
   * Creates the captured table ({@link TABLE}, with at least `id int` as its key, `v int` and
   * a text column the writer sets) and fills it with the ids 1..rows. Default: a plain table
   * `(id int PRIMARY KEY, v int NOT NULL, note text)`.
   */
  createTable?: (db: AdminDb, rows: number) => Promise<void>;
  /** The Kafka sink's `message_format` (default json; avro and protobuf with the schema embedded in each record). */
  messageFormat?: 'json' | 'avro' | 'protobuf';
  /** The Kafka topic's partitions instead of the drawn ones (a run with truncates reads one partition's order). */
  partitions?: number;
}

/** One sink of the run's pipeline. */
export interface RunSink {
  kind: 'kafka' | 'file';
  /** Its id in the state store and the status: `<index in sinks>:<connection>`. */
  id: string;
  connection: string;
  /** Kafka: the topic it writes. */
  topic: string;
  /** File sink: the folder it writes. */
  fileDir: string;
}

/** The outcome of a run that passed the oracle. */
export interface RunStats {
  /** Records read back from the sink and checked. */
  events: number;
  /** Stream records delivered again (same key and position as an earlier one): at-least-once replays. */
  replays: number;
  /** Writer changes the oracle required to be present. */
  changes: number;
}

export class ChaosRun implements AsyncDisposable {
  readonly pipeline: string;
  readonly slot: string;
  readonly topic: string;
  /** Every sink of the pipeline, in config order (the first is `options.sink`). */
  readonly sinks: RunSink[];
  /** Keys of rows no sink may hold (events the scenario made unwritable): left out of the oracle, and must be absent. */
  readonly excludedKeys = new Set<number>();
  readonly configFile: string;
  readonly servers: NanosyncServer[] = [];
  readonly db: AdminDb;
  writer: SeededWriter | undefined;
  /** What the sink held when {@link check} last read it (after the {@link markSink} mark). */
  records: OracleRecord[] = [];
  /** Set by {@link markSink}: per Kafka partition its next offset, or the file sink's line count. */
  #mark: { partitions: Map<number, bigint> } | { lines: number } | undefined;
  /** Rows the sink keeps although the table no longer has them (a detached partition's): the oracle expects them too. */
  readonly keptRows: Row[] = [];
  /** Applied to the sink's rows and the table's before they are compared (columns a DDL added, renamed, retyped). */
  normalize: ((row: Row) => Row) | undefined;
  /** Checks of a scenario over everything the sink holds (the shape of events after a DDL…), run by {@link check}. */
  readonly recordChecks: ((records: readonly OracleRecord[]) => string[])[] = [];
  #sampler: FlushSampler | undefined;
  #stateDb: pg.Client | undefined;
  readonly #cleanups: (() => Promise<void>)[] = [];
  /** One admin token for every server of the run (a client may talk to any of them). */
  readonly #token = randomBytes(16).toString('hex');

  private constructor(
    readonly services: Services,
    readonly databaseUrl: string,
    readonly dir: string,
    readonly options: RunOptions & { fileDir: string; state: string },
    readonly log: (line: string) => void,
  ) {
    const id = randomBytes(4).toString('hex');
    this.pipeline = `chaos_${id}`;
    this.slot = `nanosync_slot_${this.pipeline}`;
    this.topic = `chaos-${id}`;
    this.sinks = [options.sink, ...(options.moreSinks ?? [])].map((kind, i) => ({
      kind,
      id: `${i}:${i === 0 ? 'out' : `out${i + 1}`}`,
      connection: i === 0 ? 'out' : `out${i + 1}`,
      topic: i === 0 ? this.topic : `${this.topic}-${i + 1}`,
      fileDir: i === 0 ? options.fileDir : join(dir, `out${i + 1}`),
    }));
    this.configFile = join(dir, 'nanosync.yaml');
    this.db = new AdminDb(databaseUrl);
  }

  static async create(
    services: Services,
    options: RunOptions,
    log: (line: string) => void,
    prepare?: (dir: string) => Promise<Partial<RunOptions>>,
  ): Promise<ChaosRun> {
    const dir = await mkdtemp(join(tmpdir(), 'ns-chaos-'));
    const extra = prepare ? await prepare(dir) : {};
    const merged = { ...options, ...extra };
    const url = await services.postgres.createDatabase();
    const run = new ChaosRun(
      services,
      url,
      dir,
      {
        ...merged,
        fileDir: merged.fileDir ?? join(dir, 'out'),
        state: merged.state ?? join(dir, 'state', 'state.db'),
      },
      log,
    );
    if (merged.createTable) await merged.createTable(run.db, options.settings.rows);
    else {
      await run.db.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, v int NOT NULL, note text)`);
      await run.db.query(`INSERT INTO ${TABLE} SELECT g, 0, 'seed' FROM generate_series(1, $1::int) g`, [
        options.settings.rows,
      ]);
    }
    await run.db.query(`ANALYZE ${TABLE}`);
    for (const sink of run.sinks) if (sink.kind === 'file') await mkdir(sink.fileDir, { recursive: true });
    await run.writeConfig();
    return run;
  }

  /** (Re)writes the config file from the options (a scenario may change `sinkKeys`, then restart). */
  async writeConfig(): Promise<void> {
    await writeFile(this.configFile, this.#yaml());
  }

  /** Register something to undo when the run is disposed (a mount, a store setting). */
  onDispose(cleanup: () => Promise<void>): void {
    this.#cleanups.push(cleanup);
  }

  #yaml(): string {
    const s = this.options.settings;
    const connection = (sink: RunSink) =>
      sink.kind === 'kafka'
        ? `  - name: ${sink.connection}
    type: kafka
    properties:
      brokers: ${JSON.stringify(this.services.kafka.brokers.join(','))}
      max_retries: 60
      retry_backoff_ms: 200
      retry_backoff_max_ms: 2000
      num_partitions: ${this.options.partitions ?? s.partitions}
      compression: ${s.compression}
      max_bytes_in_flight: ${s.maxBytesInFlight}`
        : `  - name: ${sink.connection}
    type: file
    properties:
      path: ${JSON.stringify(sink.fileDir)}`;
    // One sink: `sink:` as before; several: a `sinks:` list of the same entries.
    const entry = (sink: RunSink, i: number, pad: string) =>
      [
        `connection: ${sink.connection}`,
        ...(sink.kind === 'kafka'
          ? ['properties:', `  topic: ${sink.topic}`, `  message_format: ${this.options.messageFormat ?? 'json'}`]
          : []),
        ...Object.entries(this.options.sinkKeys?.[i] ?? {}).map(([k, v]) => `${k}: ${JSON.stringify(v)}`),
      ]
        .map((line, n) => `${n === 0 && pad.endsWith('- ') ? pad : ' '.repeat(pad.length)}${line}`)
        .join('\n');
    const sinks =
      this.sinks.length === 1
        ? `    sink:\n${entry(this.sinks[0]!, 0, '      ')}`
        : `    sinks:\n${this.sinks.map((sink, i) => entry(sink, i, '      - ')).join('\n')}`;
    return `connections:
  - name: pg
    type: postgres
    dsn: ${JSON.stringify(this.databaseUrl)}
${this.sinks.map(connection).join('\n')}
pipelines:
  - name: ${this.pipeline}
    replication_type: cdc_backfill
    source:
      connection: pg
      tables: [${TABLE}]
${sinks}
    snapshot:
      concurrency: ${s.concurrency}
      target_rows_per_partition: ${s.rowsPerPartition}
      chunk_rows: ${s.chunkRows}
`;
  }

  /** The environment every nanosync process of this run shares (its own token and secret key folder). */
  get env(): Record<string, string> {
    return { XDG_STATE_HOME: join(this.dir, 'xdg'), NANOSYNC_LOG_LEVEL: 'info', ...this.options.env };
  }

  /** `nanosync run --file <config> --state <state>` (a new process), waiting for its admin API. */
  async startRun(env: Record<string, string> = {}): Promise<NanosyncServer> {
    return this.#start(['run', '--file', this.configFile, '--state', this.options.state], env);
  }

  /** `nanosync serve --state <state>` (no pipelines of its own until `apply`). */
  async startServe(extraArgs: string[] = [], env: Record<string, string> = {}): Promise<NanosyncServer> {
    return this.#start(['serve', '--state', this.options.state, ...extraArgs], env);
  }

  async #start(args: string[], env: Record<string, string>): Promise<NanosyncServer> {
    const logFile = join(this.dir, `server-${this.servers.length + 1}.log`);
    // Fault hooks of the run (--fault) and of the scenario (a kill point) add up.
    const faults = [this.env.NANOSYNC_TEST_FAULT, env.NANOSYNC_TEST_FAULT].filter(Boolean).join(',');
    const server = await NanosyncServer.start(args, {
      env: { ...this.env, ...env, ...(faults ? { NANOSYNC_TEST_FAULT: faults } : {}) },
      logFile,
      token: this.#token,
    });
    this.servers.push(server);
    this.log(`started ${args[0]} pid ${server.process.pid}`);
    return server;
  }

  /** What the 100 ms flush sampler saw so far: the slot's confirmed_flush_lsn and the stored checkpoint. */
  get flushSamples(): readonly FlushSample[] {
    return this.#sampler?.samples ?? [];
  }

  /** Everything every server of the run printed (its log), oldest server first. */
  get output(): string {
    return this.servers.flatMap((s) => s.processes.map((p) => p.output)).join('\n');
  }

  /** The samplers and the writer start once the first server runs. */
  startWatching(mix: WriterMix, rng: Random): void {
    this.#sampler ??= new FlushSampler({
      confirmedFlush: async () => {
        const { rows } = await this.db.query<{ lsn: string | null }>(
          'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
          [this.slot],
        );
        return rows[0]?.lsn ? parsePgLsn(rows[0].lsn) : undefined;
      },
      checkpoint: () => this.resumePoint(),
    });
    this.writer ??= new SeededWriter(this.db, rng, mix, this.options.settings.rows);
    this.writer.start();
  }

  /** The pipeline row and checkpoints from the state store (SQLite file or PostgreSQL). */
  async #storeRead(): Promise<
    | {
        start: string | undefined;
        checkpoint: string | undefined;
        snapshotDone: boolean;
        /** Each sink's own checkpoint, by sink id. */
        bySink: Record<string, string>;
      }
    | undefined
  > {
    const state = this.options.state;
    if (state.startsWith('postgres')) {
      const url = new URL(state);
      const schema = url.searchParams.get('schema') ?? 'public';
      url.search = '';
      if (!this.#stateDb) {
        const client = new pg.Client({ connectionString: url.toString() });
        client.on('error', () => {});
        this.#stateDb = client;
        await client.connect().catch((error) => {
          this.#stateDb = undefined;
          throw error;
        });
      }
      try {
        const p = await this.#stateDb.query<{ start_position: string | null; snapshot_done: boolean }>(
          `SELECT start_position, snapshot_done FROM "${schema}".pipelines WHERE name = $1`,
          [this.pipeline],
        );
        const c = await this.#stateDb.query<{ sink: string; position: string }>(
          `SELECT sink, position FROM "${schema}".checkpoints WHERE pipeline = $1`,
          [this.pipeline],
        );
        return {
          start: p.rows[0]?.start_position ?? undefined,
          checkpoint: c.rows.map((r) => r.position).sort()[0],
          snapshotDone: p.rows[0]?.snapshot_done === true,
          bySink: Object.fromEntries(c.rows.map((r) => [r.sink, r.position])),
        };
      } catch (error) {
        await this.#stateDb?.end().catch(() => {});
        this.#stateDb = undefined;
        throw error;
      }
    }
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(state, { readOnly: true });
      const p = db.prepare('SELECT start_position, snapshot_done FROM pipelines WHERE name = ?').get(this.pipeline) as
        | { start_position: string | null; snapshot_done: number }
        | undefined;
      const c = db.prepare('SELECT sink, position FROM checkpoints WHERE pipeline = ?').all(this.pipeline) as {
        sink: string;
        position: string;
      }[];
      return {
        start: p?.start_position ?? undefined,
        checkpoint: c.map((r) => r.position).sort()[0],
        snapshotDone: Number(p?.snapshot_done ?? 0) === 1,
        bySink: Object.fromEntries(c.map((r) => [r.sink, r.position])),
      };
    } catch {
      return undefined;
    } finally {
      db?.close();
    }
  }

  /** Where a restart resumes: the stored checkpoint, else the start position. */
  async resumePoint(): Promise<string | undefined> {
    const read = await this.#storeRead().catch(() => undefined);
    return read?.checkpoint ?? read?.start;
  }

  async snapshotDone(): Promise<boolean> {
    return (await this.#storeRead().catch(() => undefined))?.snapshotDone === true;
  }

  /**
   * From now on {@link check} judges only what the sink receives after this point: for a
   * pipeline deleted and applied again, whose new generation (a new slot, a full snapshot)
   * goes to the same topic or file as the old one.
   */
  async markSink(): Promise<void> {
    if (this.options.sink === 'file') {
      this.#mark = { lines: (await this.#fileRecords(this.sinks[0]!)).length };
      return;
    }
    const admin = new Kafka({
      clientId: 'ns-chaos-admin',
      brokers: this.services.kafka.brokers,
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(this.topic);
      this.#mark = { partitions: new Map(offsets.map((o) => [o.partition, BigInt(o.high)])) };
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }

  /** Everything the sink holds now (after the {@link markSink} mark), in the order a consumer reads it. */
  async sinkRecords(index = 0): Promise<OracleRecord[]> {
    const sink = this.sinks[index]!;
    // The mark is the first sink's (the scenarios that mark a sink run one).
    const mark = index === 0 ? this.#mark : undefined;
    if (sink.kind === 'file') return (await this.#fileRecords(sink)).slice(mark && 'lines' in mark ? mark.lines : 0);
    return this.#kafkaRecords(sink.topic, mark && 'partitions' in mark ? mark.partitions : undefined);
  }

  async checkpoint(): Promise<string | undefined> {
    return (await this.#storeRead().catch(() => undefined))?.checkpoint;
  }

  /** Each sink's stored checkpoint, by sink id (`0:out`…). */
  async sinkCheckpoints(): Promise<Record<string, string>> {
    return (await this.#storeRead().catch(() => undefined))?.bySink ?? {};
  }

  async startPosition(): Promise<string | undefined> {
    return (await this.#storeRead().catch(() => undefined))?.start;
  }

  async confirmedFlush(): Promise<bigint | undefined> {
    const { rows } = await this.db.query<{ lsn: string | null }>(
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [this.slot],
    );
    return rows[0]?.lsn ? parsePgLsn(rows[0].lsn) : undefined;
  }

  /** Messages (Kafka) or lines (file) the sink (by index in `sinks`) holds now: a cheap progress count. */
  async delivered(index = 0): Promise<number> {
    const sink = this.sinks[index]!;
    if (sink.kind === 'file') {
      const text = await readFile(this.#sinkFile(sink)).catch(() => Buffer.alloc(0));
      let lines = 0;
      for (let i = text.indexOf(10); i !== -1; i = text.indexOf(10, i + 1)) lines++;
      return lines;
    }
    const admin = new Kafka({
      clientId: 'ns-chaos-admin',
      brokers: this.services.kafka.brokers,
      logLevel: logLevel.NOTHING,
    }).admin();
    try {
      await admin.connect();
      const offsets = await admin.fetchTopicOffsets(sink.topic);
      return offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0);
    } catch {
      return 0;
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }

  /**
   * Polls `probe` until it returns a value. Fails at once when the newest server exited (a
   * pipeline that stopped with an error), with its log, rather than waiting out the timeout.
   */
  async until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 180_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe().catch(() => undefined);
      if (value !== undefined) return value;
      const current = this.servers.at(-1);
      if (current && !current.process.running) {
        const exit = await current.process.exited;
        throw new Error(
          `while waiting for ${what}, the nanosync server (pid ${current.process.pid}) exited (${exit.code ?? exit.signal})\n${this.logTail()}`,
        );
      }
      if (Date.now() > deadline)
        throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}\n${this.logTail()}`);
      await sleep(200);
    }
  }

  /** Waits until the sink holds at least `n` messages (a progress point for a kill). */
  async waitDelivered(n: number, what: string, timeoutMs = 180_000): Promise<void> {
    await this.until(async () => ((await this.delivered()) >= n ? true : undefined), what, timeoutMs);
  }

  /** Waits until the state store says the snapshot is done (every partition durable in the sink). */
  async waitSnapshotDone(timeoutMs = 180_000): Promise<void> {
    await this.until(
      async () => ((await this.#storeRead().catch(() => undefined))?.snapshotDone ? true : undefined),
      'the snapshot to complete',
      timeoutMs,
    );
  }

  logTail(): string {
    const last = this.servers.at(-1);
    return last ? last.process.logTail.slice(-6000) : '';
  }

  /** Waits until the writer committed `n` more transactions. */
  async writerProgress(n: number): Promise<void> {
    const writer = this.writer!;
    const target = writer.committed + n;
    await this.until(async () => (writer.committed >= target ? true : undefined), `${n} writer transactions`, 120_000);
  }

  /**
   * The end of a run: wait for the snapshot to complete, stop the writer, insert a marker
   * row and wait until the stored checkpoint passes it (so the sink durably holds everything
   * before it, snapshot rows included).
   *
   * "Passes it" is decided without knowing the marker's commit LSN C, only that it lies
   * between `before` (read before the INSERT) and `after` (read once it committed). A
   * checkpoint of a change (index ≥ 1) past `before` belongs to the marker's transaction or a
   * later one: the writer has stopped. A keepalive checkpoint `(L, 0)` passes it only when
   * L ≥ `after`: the server can send a keepalive for WAL between the INSERT and its commit
   * (another database's commit, the state store's own, flushed in between), and such a
   * keepalive sorts before the marker. Taking it for the marker let a run stop before the
   * marker reached the sink (seed 2 of state-store-unwritable, whose store shares the cluster).
   * While the checkpoint is such a keepalive, a transaction that only takes an xid moves
   * the WAL on, so the server sends a later one.
   */
  async drain(): Promise<void> {
    await this.waitSnapshotDone();
    await this.writer?.stop();
    const before = await this.walInsertLsn();
    await this.db.query(`INSERT INTO ${TABLE} (id, v) VALUES ($1, 0)`, [MARKER_ID]);
    await this.waitCheckpointPast(before, await this.walInsertLsn(), 'the checkpoint to pass the marker row');
  }

  /**
   * Waits until the stored checkpoint is past a transaction that began after insert LSN
   * `before` and committed before `after`, the last one committed (see {@link drain}).
   */
  async waitCheckpointPast(before: bigint, after: bigint, what: string, timeoutMs?: number): Promise<void> {
    await this.until(
      async () => {
        const checkpoint = await this.checkpoint();
        if (checkpoint === undefined) return undefined;
        const passed = checkpointPassesMarker(checkpoint, before, after);
        if (passed === 'unsure') await this.db.query('SELECT txid_current()');
        return passed === true ? true : undefined;
      },
      what,
      timeoutMs,
    );
  }

  /** The WAL insert position of the source's server now. */
  async walInsertLsn(): Promise<bigint> {
    return parsePgLsn((await this.db.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]!.l);
  }

  #sinkFile(sink: RunSink): string {
    return join(sink.fileDir, `${TABLE}.jsonl`);
  }

  async #fileRecords(sink: RunSink): Promise<OracleRecord[]> {
    // Strict: a torn or garbled line anywhere but at the very end is a failure of the sink.
    const records = await readJsonLines(this.#sinkFile(sink));
    return records.map((r) => ({
      table: r.table,
      op: r.op,
      key: r.key as Row,
      after: (r.after as Row | undefined) ?? null,
      position: r.position,
    }));
  }

  async #kafkaRecords(topic: string, from?: Map<number, bigint>): Promise<OracleRecord[]> {
    registerCompressionCodecs(kafkajs);
    const decode = kafkaDecoder(this.options.messageFormat ?? 'json');
    const kafka = new Kafka({
      clientId: 'ns-chaos-reader',
      brokers: this.services.kafka.brokers,
      logLevel: logLevel.NOTHING,
    });
    const admin = kafka.admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect());
    let left = offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0);
    // Read each partition up to the end it had now. A record appended since (the pipeline may
    // still be writing) is left out, never counted: counted, it could end the read before an
    // older record of another partition came in.
    const ends = new Map(offsets.map((o) => [o.partition, BigInt(o.high)]));
    const read: { partition: number; offset: bigint; record: OracleRecord }[] = [];
    if (left === 0) return [];
    const consumer = kafka.consumer({ groupId: `ns-chaos-${randomBytes(4).toString('hex')}`, maxWaitTimeInMs: 200 });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out reading ${topic}: ${left} missing`)), 60_000);
        consumer
          .run({
            autoCommit: false,
            eachMessage: async ({ partition, message }) => {
              if (BigInt(message.offset) >= (ends.get(partition) ?? 0n)) return;
              const change = message.value === null ? undefined : decode(message.value);
              let record: OracleRecord;
              if (change?.op === 'truncate')
                record = { table: change.table, op: 'truncate', key: {}, position: change.position };
              else {
                const key = JSON.parse(message.key!.toString('utf8')) as unknown;
                const id = Number(Array.isArray(key) ? key[0] : (key as { id: unknown }).id);
                const table = change?.table ?? message.headers?.['ns-table']?.toString() ?? TABLE;
                record =
                  change === undefined
                    ? { table, op: 'delete', key: { id } }
                    : { table, op: change.op, key: { id }, after: change.after ?? null, position: change.position };
              }
              read.push({ partition, offset: BigInt(message.offset), record });
              if (--left === 0) {
                clearTimeout(timer);
                resolve();
              }
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect();
    }
    read.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
    return read.filter((r) => r.offset >= (from?.get(r.partition) ?? 0n)).map((r) => r.record);
  }

  /**
   * The oracle of RELIABILITY.md over everything each sink holds (call after `drain`): the
   * last version per key equals the table; positions only go back as replays; the strict
   * history order; every writer change that began after the start position present; and
   * the slot never acknowledged past the stored checkpoint (the smallest over the sinks).
   * With several sinks, each is checked on its own and its problems name it. Rows of
   * `excludedKeys` are left out of the table, and no sink may hold them. Returns the problems.
   */
  async check(): Promise<{ problems: string[]; stats: RunStats }> {
    await this.#sampler?.stop();
    const start = await this.startPosition();
    if (start === undefined) return { problems: ['no start position in the state store'], stats: emptyStats() };
    const excluded = this.excludedKeys;
    const { rows } = await this.db.query<Row>(`SELECT * FROM ${TABLE} ORDER BY id`);
    const expected = rows.filter((r) => !excluded.has(Number(r.id)));
    const startLsn = positionLsn(start);
    const changes = (this.writer?.txns ?? []).filter((t) => t.lsnBefore > startLsn).flatMap((t) => t.changes);
    const problems: string[] = [];
    if (changes.length < 10) problems.push(`only ${changes.length} writer changes fell inside the test window`);
    const stats: RunStats = { events: 0, replays: 0, changes: changes.length };
    for (const [i, sink] of this.sinks.entries()) {
      const all = await this.sinkRecords(i);
      const named = (problem: string) => (this.sinks.length > 1 ? `sink ${sink.id}: ${problem}` : problem);
      const records = all.filter((r) => !excluded.has(Number(r.key.id)));
      if (i === 0) this.records = records;
      const unwritable = all.length - records.length;
      if (unwritable > 0)
        problems.push(named(`holds ${unwritable} records of keys it was never to get (${[...excluded].join(', ')})`));
      problems.push(
        ...runOracle({
          records,
          expected: { [TABLE]: [...expected, ...this.keptRows] },
          keyColumns: ['id'],
          ...(this.normalize ? { normalize: this.normalize } : {}),
          changes,
          strict: true,
        }).map(named),
      );
      for (const inspect of this.recordChecks) problems.push(...inspect(records).map(named));
      const elsewhere = new Map<string, number>();
      for (const r of records) if (r.table !== TABLE) elsewhere.set(r.table, (elsewhere.get(r.table) ?? 0) + 1);
      for (const [table, n] of elsewhere)
        problems.push(named(`${n} records under ${table}: every change belongs under ${TABLE}`));
      const missing = classifyMissing(records, expected, this.writer?.txns ?? [], startLsn);
      if (missing.total > 0) {
        const read = await this.#storeRead().catch(() => undefined);
        this.log(
          named(
            `the sink lacks ${missing.total} keys of the table: ${missing.seeded} seeded, ${missing.beforeStart} inserted by the writer before the start position (only the snapshot carries them), ${missing.afterStart} inserted after it (the stream carries them), ${missing.other} other; snapshot done in the store: ${read === undefined ? 'unknown' : read.snapshotDone ? 'yes' : 'no'}`,
          ),
        );
      }
      const streamPositions = records.filter((r) => r.op !== 'read' && r.position).map((r) => r.position!);
      problems.push(
        ...checkFlushSamples(this.#sampler?.samples ?? [], streamPositions, positionLsn).problems.map(named),
      );
      const seen = new Set<string>();
      for (const r of records) {
        if (r.op === 'read' || r.position === undefined || r.after === null) continue;
        const id = `${r.key.id}@${r.position}`;
        if (seen.has(id)) stats.replays++;
        seen.add(id);
      }
      stats.events += records.length;
    }
    return { problems, stats };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#sampler?.stop().catch(() => {});
    await this.writer?.stop().catch(() => {});
    for (const server of this.servers) {
      for (const p of server.processes) p.child.kill('SIGCONT');
      await server[Symbol.asyncDispose]().catch(() => {});
    }
    for (const cleanup of this.#cleanups.reverse()) await cleanup().catch(() => {});
    await this.#stateDb?.end().catch(() => {});
    // Slots pin WAL on the shared server: drop this database's.
    await this.db
      .query(
        'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL',
      )
      .catch(() => {});
    await this.db
      .query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()')
      .catch(() => {});
    await this.db.close();
    const name = new URL(this.databaseUrl).pathname.slice(1);
    const admin = new AdminDb(this.services.postgres.url);
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {});
    await admin.close();
    if (!process.env.NS_CHAOS_KEEP) await rm(this.dir, { recursive: true, force: true });
  }
}

/** Keys of the table the sink never received, by where they came from (see {@link classifyMissing}). */
export interface MissingKeys {
  total: number;
  /** Rows of the seeded table (ids below the writer's first). */
  seeded: number;
  /** Writer inserts whose transaction began at or before the start position: in the table before the slot, so only the snapshot delivers them. */
  beforeStart: number;
  /** Writer inserts whose transaction began after the start position: the change stream delivers them. */
  afterStart: number;
  /** Any other key (the marker, an id the writer did not record). */
  other: number;
}

/**
 * Which rows of the table no sink record mentions at all, told apart by how they should
 * have arrived: a row that was in the table before the slot's start position arrives only
 * with the snapshot (so an incomplete snapshot leaves it out), one inserted after it arrives
 * with the change stream (so leaving it out is a lost change).
 */
export function classifyMissing(
  records: readonly OracleRecord[],
  rows: readonly Row[],
  txns: readonly { lsnBefore: bigint; changes: readonly ExpectedChange[] }[],
  startLsn: bigint,
): MissingKeys {
  const seen = new Set<number>();
  for (const r of records) seen.add(Number(r.key.id));
  const insertedBefore = new Map<number, boolean>();
  for (const t of txns)
    for (const c of t.changes) if (c.op === 'insert') insertedBefore.set(Number(c.key.id), t.lsnBefore <= startLsn);
  const out: MissingKeys = { total: 0, seeded: 0, beforeStart: 0, afterStart: 0, other: 0 };
  for (const row of rows) {
    const id = Number(row.id);
    if (seen.has(id)) continue;
    out.total++;
    const before = insertedBefore.get(id);
    if (id < FIRST_INSERT_ID) out.seeded++;
    else if (before === true) out.beforeStart++;
    else if (before === false) out.afterStart++;
    else out.other++;
  }
  return out;
}

function emptyStats(): RunStats {
  return { events: 0, replays: 0, changes: 0 };
}
