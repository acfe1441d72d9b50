import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { type OracleRecord, runOracle } from '@nanosync/connector-testkit';
import type { Row } from '@nanosync/core';
import type { PostgresService } from '@nanosync/testcontainers';
import kafkajs, { type Admin } from 'kafkajs';
import pg from 'pg';
import { stringify } from 'yaml';
import { decodeJsonMessage } from '../../src/formats/json.js';
import type { ConsumedRecord } from './helpers.js';

const { Kafka, logLevel } = kafkajs;

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

// The shared child-process harness and wait helper of the test kit.
export { eventually, NanosyncProcess } from '@nanosync/connector-testkit';

/**
 * What an end-to-end test works in: a database of its own on the shared PostgreSQL, a client
 * connected to it and a scratch folder. Disposing drops the database's replication slots,
 * closes the client and removes the folder (declare it before the try whose finally stops
 * writers and pipelines: it is disposed after them).
 */
export interface E2eWorkspace extends AsyncDisposable {
  url: string;
  db: pg.Client;
  dir: string;
}

export async function e2eWorkspace(postgres: PostgresService, folderPrefix: string): Promise<E2eWorkspace> {
  const url = await postgres.createDatabase();
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const dir = await mkdtemp(join(tmpdir(), folderPrefix));
  return {
    url,
    db,
    dir,
    async [Symbol.asyncDispose]() {
      await dropSlots(db);
      await db.end();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** One pipeline of `writePipelines`: PostgreSQL tables into the Kafka sink. */
export interface E2ePipeline {
  name: string;
  tables: string[];
  /** The Kafka sink's properties (topic, message_format, schema_registry_url…). */
  sink: Record<string, string | number | boolean>;
  /** The sink's on_error policy (dead_letter…). */
  onError?: string;
  snapshot?: { concurrency?: number; target_rows_per_partition?: number; chunk_rows?: number };
  /** The pipeline's `workers` setting (absent: the default). */
  workers?: number | 'auto';
}

/**
 * Writes `<dir>/nanosync.yaml`: a `pg` connection to `postgresUrl`, a `kafka` connection to
 * `brokers` and the pipelines. Returns the file, the state database's path and the
 * arguments of `nanosync run` on them (admin API on a free port).
 */
export async function writePipelines(
  dir: string,
  options: { postgresUrl: string; brokers: string[]; pipelines: E2ePipeline[] },
): Promise<{ config: string; stateFile: string; args: string[] }> {
  const config = join(dir, 'nanosync.yaml');
  const stateFile = join(dir, 'state', 'state.db');
  const document = {
    connections: [
      { name: 'pg', type: 'postgres', dsn: options.postgresUrl },
      { name: 'kafka', type: 'kafka', properties: { brokers: options.brokers.join(',') } },
    ],
    pipelines: options.pipelines.map((p) => ({
      name: p.name,
      source: { connection: 'pg', tables: p.tables },
      ...(p.snapshot ? { snapshot: p.snapshot } : {}),
      ...(p.workers !== undefined ? { workers: p.workers } : {}),
      sink: { connection: 'kafka', ...(p.onError ? { on_error: p.onError } : {}), properties: p.sink },
    })),
  };
  await writeFile(config, stringify(document));
  return { config, stateFile, args: ['run', '--file', config, '--state', stateFile, '--listen', '127.0.0.1:0'] };
}

/** The log line a process writes once a sink wrote a batch its worker threads encoded. */
export const ENCODED_IN_WORKER = 'sink wrote its first batch encoded in a worker thread';
/** Logged once per sink and process when a stream batch a worker thread encoded was written. */
export const STREAM_ENCODED_IN_WORKER = 'sink wrote its first stream batch encoded in a worker thread';

/**
 * The topic's record count once it has any, read every 10 ms through one admin client: a
 * pipeline killed on it dies early in its snapshot. (`eventually` with `topicSize` looks every
 * 250 ms and connects each time; a fast host wrote a whole 20,000-row snapshot in between.)
 */
export async function firstRecordsIn(
  brokers: string[],
  topic: string,
  timeoutMs: number,
  context: () => string,
): Promise<number> {
  const admin = new Kafka({ clientId: 'ns-e2e-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const n = await recordsIn(admin, topic);
      if (n > 0) return n;
      if (Date.now() > deadline) throw new Error(`gave up waiting for the first records in ${topic}\n${context()}`);
      await new Promise((wake) => setTimeout(wake, 10));
    }
  } finally {
    await admin.disconnect();
  }
}

/** The records a topic holds over all its partitions, through a connected admin client (0 while it does not exist). */
async function recordsIn(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic).catch(() => []);
  return offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0);
}

export async function topicSize(brokers: string[], topic: string): Promise<number> {
  const admin = new Kafka({ clientId: 'ns-e2e-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    return await recordsIn(admin, topic);
  } finally {
    await admin.disconnect();
  }
}

export interface WriterChange {
  op: 'insert' | 'update' | 'delete';
  id: string;
  note?: string;
}

/**
 * A concurrent writer: inserts, updates and deletes on random rows, one autocommitted
 * statement at a time, recording every change that committed.
 */
export class ConcurrentWriter {
  readonly changes: WriterChange[] = [];
  private running = true;
  private readonly done: Promise<void>;
  private seq = 0;

  constructor(
    private readonly db: pg.Client,
    private readonly table: string,
    private nextId: number,
    private readonly maxId: () => number,
  ) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.seq += 1;
      const roll = Math.random();
      const note = `w${this.seq}`;
      if (roll < 0.3) {
        const id = String(this.nextId++);
        await this.db.query(`INSERT INTO ${this.table} (id, note, amount, qty, flag) VALUES ($1, $2, $3, $4, $5)`, [
          id,
          note,
          `${this.seq}.25`,
          this.seq,
          true,
        ]);
        this.changes.push({ op: 'insert', id, note });
      } else if (roll < 0.85) {
        const id = String(1 + Math.floor(Math.random() * this.maxId()));
        const r = await this.db.query(
          `UPDATE ${this.table} SET note = $2, amount = amount + 1, flag = NOT flag WHERE id = $1`,
          [id, note],
        );
        if (r.rowCount) this.changes.push({ op: 'update', id, note });
      } else {
        const id = String(1 + Math.floor(Math.random() * this.maxId()));
        const r = await this.db.query(`DELETE FROM ${this.table} WHERE id = $1`, [id]);
        if (r.rowCount) this.changes.push({ op: 'delete', id });
      }
      await new Promise((r) => setTimeout(r, 15));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

/**
 * The oracle of RELIABILITY.md (the test kit's `runOracle`) on a JSON-format topic:
 * 1. the last record per key (a delete or tombstone removes it) equals the table;
 * 2. per key, positions only go back to a position already seen (a replayed prefix);
 * 3. every change the writer committed is present at least once.
 * Returns a list of problems, empty when it passes.
 */
export function oracle(
  records: ConsumedRecord[],
  tableRows: Map<string, Record<string, unknown>>,
  changes: WriterChange[],
): string[] {
  const table = 'table';
  const read = records.map((record): OracleRecord => {
    // A truncate has no key; the oracle applies it by position.
    if (record.key === null) {
      const change = decodeJsonMessage(record.value!);
      return { table, op: change.op, key: {}, position: change.position };
    }
    const id = String((JSON.parse(record.key) as [number | string])[0]);
    if (record.value === null) return { table, op: 'delete', key: { id } };
    const change = decodeJsonMessage(record.value);
    return { table, op: change.op, key: { id }, after: change.after ?? null, position: change.position };
  });
  return runOracle({
    records: read,
    expected: { [table]: [...tableRows.values()] as Row[] },
    keyColumns: ['id'],
    changes: changes.map((c) =>
      c.op === 'delete'
        ? { table, op: 'delete', key: { id: c.id } }
        : { table, op: c.op, key: { id: c.id }, after: { note: c.note! } },
    ),
  }).slice(0, 20);
}

export async function tableRows(db: pg.Client, table: string): Promise<Map<string, Record<string, unknown>>> {
  const { rows } = await db.query(
    `SELECT id::text AS id, note, amount::text AS amount, qty, flag FROM ${table} ORDER BY id`,
  );
  return new Map(rows.map((r: Record<string, unknown>) => [String(r.id), r]));
}

/** Replication slots pin WAL on the shared server: drop this database's, whatever the test left. */
export async function dropSlots(db: pg.Client): Promise<void> {
  const { rows } = await db
    .query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots WHERE database = current_database()')
    .catch(() => ({ rows: [] as { slot_name: string }[] }));
  for (const { slot_name: slot } of rows) {
    await db
      .query(
        'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
        [slot],
      )
      .catch(() => undefined);
    await db.query('SELECT pg_drop_replication_slot($1)', [slot]).catch(() => undefined);
  }
}

/** `X/Y` (pg_lsn text) → the 64-bit LSN. */
const lsnOf = (text: string): bigint => {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
};
/** The LSN part of a PostgreSQL source position (`<16 hex LSN>:<8 hex index>`). */
const positionLsn = (position: string): bigint => BigInt(`0x${position.split(':')[0]}`);

/** SQLite's "database is locked" (SQLITE_BUSY), from node:sqlite. */
const sqliteBusy = (err: unknown): boolean => (err as { errcode?: number }).errcode === 5;

/**
 * The pipeline's durable checkpoint as the server stored it: the lowest over its sinks, or
 * the start position while no sink has one yet (`null` when there is neither). Read through
 * a read-only connection (WAL lets it look while the server writes); a busy store is asked
 * again. `undefined` when the store cannot be read yet (not created, not migrated).
 */
function storedCheckpoint(stateFile: string, pipeline: string): string | null | undefined {
  for (let attempt = 1; ; attempt++) {
    let store: DatabaseSync | undefined;
    try {
      store = new DatabaseSync(stateFile, { readOnly: true });
      const sinks = store.prepare('SELECT position FROM checkpoints WHERE pipeline = ?').all(pipeline) as {
        position: string;
      }[];
      if (sinks.length > 0) return sinks.map((r) => r.position).sort()[0]!;
      const row = store.prepare('SELECT start_position FROM pipelines WHERE name = ?').get(pipeline) as
        | { start_position: string | null }
        | undefined;
      return row?.start_position ?? null;
    } catch (err) {
      if (!sqliteBusy(err) || attempt >= 20) return undefined;
    } finally {
      store?.close();
    }
  }
}

/** One look at the slot, then at the store (which only moves forward, so reading it second is lenient). */
export interface FlushSample {
  confirmedFlush: bigint;
  checkpoint: string;
}

/**
 * RELIABILITY.md item 4: every 100 ms, the slot's confirmed_flush_lsn and the checkpoint in
 * the pipeline's SQLite state store. A sample is dropped when either cannot be read (no slot
 * yet, no store yet, a connection error).
 */
export class SlotFlushSampler {
  readonly samples: FlushSample[] = [];
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly url: string,
    private readonly slot: string,
    private readonly stateFile: string,
    private readonly pipeline: string,
  ) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    const db = new pg.Client({ connectionString: this.url });
    db.on('error', () => undefined);
    await db.connect();
    try {
      while (this.running) {
        const { rows } = await db
          .query<{ lsn: string | null }>(
            'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
            [this.slot],
          )
          .catch(() => ({ rows: [] as { lsn: string | null }[] }));
        const lsn = rows[0]?.lsn;
        const checkpoint = lsn ? storedCheckpoint(this.stateFile, this.pipeline) : undefined;
        if (lsn && checkpoint) this.samples.push({ confirmedFlush: lsnOf(lsn), checkpoint });
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await db.end().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }

  /**
   * Stops sampling and judges the samples against the stream positions in the topic, like
   * `oracle` returning its problems (empty when item 4 holds). With a checkpoint at position
   * P the source may confirm up to the commit end of P's transaction (P's LSN for a
   * keepalive), which is at most the commit LSN of the next position in the stream; a sample
   * with no later position in the topic cannot be judged, and at least one must be.
   */
  async stopAndCheck(records: ConsumedRecord[]): Promise<string[]> {
    await this.stop();
    const positions = [
      ...new Set(
        records.flatMap((r) => {
          if (r.value === null) return [];
          const change = decodeJsonMessage(r.value);
          return change.op === 'read' ? [] : [change.position];
        }),
      ),
    ].sort(); // fixed-width hex: sorts as strings
    let judged = 0;
    const problems: string[] = [];
    for (const { confirmedFlush, checkpoint } of this.samples) {
      const next = positions.find((p) => p > checkpoint);
      if (next === undefined) continue;
      judged++;
      if (confirmedFlush > positionLsn(next)) {
        problems.push(
          `confirmed_flush_lsn ${confirmedFlush.toString(16)} passed the stored checkpoint ${checkpoint} (next commit at ${next})`,
        );
      }
    }
    if (judged === 0)
      problems.push(`none of ${this.samples.length} samples had a later stream position to judge it by`);
    return problems.slice(0, 20);
  }
}
