import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { mulberry32 } from '@nanosync/connector-testkit';
import { startKafka, startPostgres } from '@nanosync/testcontainers';
import kafkajs from 'kafkajs';
import pg from 'pg';
import { expect, test } from 'vitest';
import { decodeJsonMessage } from '../../src/formats/json.js';
import {
  ConcurrentWriter,
  ENCODED_IN_WORKER,
  NanosyncProcess,
  dropSlots,
  eventually,
  oracle,
  tableRows,
} from './e2e-helpers.js';
import { type ConsumedRecord, consumeCommitted, createSink, uniqueName } from './helpers.js';
import type { ChangeEvent, TableSchema } from '@nanosync/core';
import { NanosyncError } from '@nanosync/core';
import { registerCompressionCodecs } from '../../src/compression.js';
import { KafkaErrorCode } from '../../src/errors.js';

const { Kafka, logLevel } = kafkajs;

const ROWS = 4000;
const KILLS = Number(process.env.NANOSYNC_EOS_KILLS ?? 10);
const SNAPSHOT_KILLS = Number(process.env.NANOSYNC_EOS_SNAPSHOT_KILLS ?? 4);
const SEED = Number(process.env.NANOSYNC_EOS_SEED ?? 20261204);
/** `at_least_once` here shows what the test catches without transactions (it should then fail). */
const DELIVERY = process.env.NANOSYNC_EOS_DELIVERY ?? 'exactly_once';

/** A small seeded generator (the testkit's mulberry32), so a failing run's kill points can be replayed. */
const rng = mulberry32;

/** (key, position, record kind) that occur more than once: what exactly-once forbids. */
function duplicates(records: ConsumedRecord[]): string[] {
  const counts = new Map<string, number>();
  for (const r of records) {
    const position = r.headers['ns-position'];
    const id = `${r.key} @ ${position} ${r.value === null ? 'tombstone' : (r.headers['ns-op'] ?? '')}`;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return [...counts].filter(([, n]) => n > 1).map(([id, n]) => `${id} ×${n}`);
}

const table: TableSchema = {
  schema: 'public',
  name: 'eos',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
};
const change = (n: number): ChangeEvent => ({
  table,
  op: 'insert',
  key: { id: n },
  after: { id: n, note: `n${n}` },
  position: `0000000003000000:${n.toString(16).toUpperCase().padStart(8, '0')}`,
});

test('exactly_once: a replayed batch is skipped after a restart, a new producer fences the old one', async () => {
  await using kafka = await startKafka();
  const topic = uniqueName('ns-eos-sink');
  const props = { brokers: kafka.brokers.join(','), topic, delivery: 'exactly_once' };
  const batch1 = [1, 2, 3].map(change);
  const batch2 = [4, 5].map(change);
  {
    await using first = createSink(props);
    await first.sink.open([table]);
    await first.sink.write(batch1);
  }
  // A restart whose state store missed the checkpoint replays batch 1 before batch 2.
  await using second = createSink(props);
  await second.sink.open([table]);
  await second.sink.write([...batch1.slice(1), ...batch2]);
  await second.sink.write(batch1);
  const seen = await consumeCommitted(kafka.brokers, topic, { idleMs: 2000 });
  expect(seen.map((r) => r.headers['ns-position'])).toEqual([...batch1, ...batch2].map((e) => e.position));
  expect(
    second.logger.lines.some((l) => l.startsWith('WRN') && l.includes('an earlier transaction already committed')),
  ).toBe(true);

  // A third producer with the same transactional id takes over: the second may not write again.
  await using third = createSink(props);
  await third.sink.open([table]);
  await third.sink.write([change(6)]);
  const fenced = await second.sink.write([change(7)]).catch((e: unknown) => e);
  expect(fenced).toBeInstanceOf(NanosyncError);
  expect((fenced as NanosyncError).code).toBe(KafkaErrorCode.KafkaTransaction);
  expect((fenced as NanosyncError).retriable).toBe(false);
  // INVALID_PRODUCER_EPOCH has two causes, and the message names both.
  expect((fenced as Error).message).toMatch(/another producer started with the same transactional id/);
  expect((fenced as Error).message).toMatch(/ran longer than its timeout \(\d+ ms\)/);
  const after = await consumeCommitted(kafka.brokers, topic, { idleMs: 2000 });
  expect(after.map((r) => r.headers['ns-position'])).toEqual([1, 2, 3, 4, 5, 6].map((n) => change(n).position));

  // Snapshot chunks: the transaction names the last chunk it committed (carried over by
  // transactions without one); after a restart that chunk, read again with a new position,
  // is skipped, and the next chunk is written.
  const snapTopic = uniqueName('ns-eos-snap');
  const snapProps = { brokers: kafka.brokers.join(','), topic: snapTopic, delivery: 'exactly_once' };
  // Positions as a concurrent snapshot gives them: a chunk's rows share its high watermark's.
  const read = (id: number, chunk: string, at: number): ChangeEvent => ({
    table,
    op: 'read',
    key: { id },
    after: { id, note: `s${id}` },
    position: change(at).position,
    chunk,
  });
  {
    await using before = createSink(snapProps);
    expect(before.sink.skipsCommittedChunk).toBe(true);
    await before.sink.open([table]);
    await before.sink.write([read(10, 'chunk-a', 15), read(11, 'chunk-a', 15)]);
    await before.sink.write([change(20)]);
  }
  await using restarted = createSink(snapProps);
  await restarted.sink.open([table]);
  await restarted.sink.write([read(10, 'chunk-a', 30), read(11, 'chunk-a', 30), read(12, 'chunk-b', 30)]);
  // The rest of a chunk this producer committed itself (core set an event of it aside) is written.
  await restarted.sink.write([read(13, 'chunk-b', 30)]);
  const snapSeen = await consumeCommitted(kafka.brokers, snapTopic, { idleMs: 2000 });
  expect(snapSeen.map((r) => `${r.key}/${r.headers['ns-chunk'] ?? '-'}/${r.headers['ns-position']}`).sort()).toEqual(
    [
      `[10]/chunk-a/${change(15).position}`,
      `[11]/chunk-a/${change(15).position}`,
      `[12]/chunk-b/${change(30).position}`,
      `[13]/chunk-b/${change(30).position}`,
      `[20]/-/${change(20).position}`,
    ].sort(),
  );
  expect(
    restarted.logger.lines.some((l) => l.includes('skipped a snapshot chunk an earlier transaction already committed')),
  ).toBe(true);
  // An at-least-once sink neither keeps nor skips chunks.
  await using plain = createSink({ brokers: kafka.brokers.join(','), topic: snapTopic });
  expect(plain.sink.skipsCommittedChunk).toBe(false);
}, 180_000);

/**
 * How far the snapshot got, from the state store (read-only; undefined while it cannot be
 * read): chunks and partitions recorded as done, and whether the snapshot is complete.
 */
function snapshotProgress(stateFile: string): { progress: number; done: boolean } {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(stateFile, { readOnly: true });
    const chunks = db.prepare("SELECT count(*) AS n FROM snapshot_chunks WHERE status = 'done'").get() as { n: number };
    const partitions = db.prepare("SELECT count(*) AS n FROM partitions WHERE status = 'done'").get() as { n: number };
    const pipeline = db.prepare('SELECT snapshot_done FROM pipelines').get() as { snapshot_done: number } | undefined;
    return { progress: chunks.n + 1000 * partitions.n, done: pipeline?.snapshot_done === 1 };
  } catch {
    return { progress: -1, done: false };
  } finally {
    db?.close();
  }
}

/** Snapshot records (op `read`) of one key in one chunk seen more than once: a chunk written twice. */
function snapshotRepeats(records: ConsumedRecord[]): string[] {
  const counts = new Map<string, number>();
  for (const r of records) {
    if (r.headers['ns-op'] !== 'read') continue;
    const id = `${r.key} in chunk ${r.headers['ns-chunk']}`;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return [...counts].filter(([, n]) => n > 1).map(([id, n]) => `${id} ×${n}`);
}

interface KillRun {
  records: ConsumedRecord[];
  problems: string[];
  changes: number;
  /** SIGKILLs that landed while the snapshot was under way. */
  snapshotKills: number;
  output: string;
  /** Processes of the run that wrote a batch their worker threads encoded. */
  encodedInWorkers: number;
}

/**
 * The pipeline through the real CLI (PostgreSQL → Kafka, `delivery`) while a writer changes
 * the table: SIGKILLed `snapshotKills` times during the snapshot (each by the test-only hook
 * `kill-after-reads:N`, after a seeded number of snapshot rows are durable in Kafka and
 * before their chunk is recorded as done), then
 * `streamKills` times while streaming, each shortly after a statement that changes a few
 * hundred rows (a batch of hundreds of records sent in small requests, so kills land
 * mid-batch). Returns what a read_committed consumer sees once the topic converged on the
 * table under the oracle of RELIABILITY.md.
 */
async function runWithKills(
  delivery: string,
  snapshotKills: number,
  streamKills: number,
  workers = 0,
): Promise<KillRun> {
  await using postgres = await startPostgres();
  await using kafka = await startKafka();
  const url = await postgres.createDatabase();
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const dir = await mkdtemp(join(tmpdir(), 'ns-kafka-eos-'));
  const pipeline = uniqueName('kafka_eos').replace(/-/g, '_');
  const topic = uniqueName('ns-eos');
  const random = rng(SEED);
  let writer: ConcurrentWriter | undefined;
  try {
    await db.query(
      'CREATE TABLE public.eos_orders (id bigint PRIMARY KEY, note text, amount numeric(20,2), qty int, flag bool)',
    );
    await db.query(
      `INSERT INTO public.eos_orders SELECT g, 'row ' || g, g * 1.5, g, g % 2 = 0 FROM generate_series(1, $1) g`,
      [ROWS],
    );
    const config = join(dir, 'nanosync.yaml');
    // Partitions of 1,000 rows read in chunks of 100: the snapshot is many chunks and transactions.
    await writeFile(
      config,
      `connections:
  - name: pg
    type: postgres
    dsn: ${JSON.stringify(url)}
  - name: kafka
    type: kafka
    properties:
      brokers: ${JSON.stringify(kafka.brokers.join(','))}
pipelines:
  - name: ${pipeline}
    workers: ${workers}
    source:
      connection: pg
      tables: [public.eos_orders]
    snapshot:
      concurrency: 2
      target_rows_per_partition: 1000
      chunk_rows: 100
    sink:
      connection: kafka
      properties:
        topic: ${topic}
        delivery: ${delivery}
        max_bytes_in_flight: 2048
`,
    );
    const stateFile = join(dir, 'state', 'state.db');
    const args = ['run', '--file', config, '--state', stateFile, '--listen', '127.0.0.1:0'];

    // Each process of the snapshot phase SIGKILLs itself (test-only hook, NODE_ENV=test) once a
    // durable write brings the snapshot rows it wrote to a seeded 150–549: after a chunk's rows
    // are in Kafka and before that chunk is recorded as done, the window exactly-once must
    // cover. The kill point depends on rows, not on timing, so every kill lands mid-snapshot.
    const hooked = (kill: number) =>
      kill < snapshotKills
        ? {
            env: {
              NODE_ENV: 'test',
              NANOSYNC_TEST_FAULT: `kill-after-reads:${150 + Math.floor(random() * 400)}`,
            },
          }
        : {};
    let current = new NanosyncProcess(args, hooked(0));
    const outputs: string[] = [];
    let killedMidSnapshot = 0;
    for (let kill = 0; kill < snapshotKills; kill++) {
      let exited = false;
      void current.exited.then(() => {
        exited = true;
      });
      await eventually(
        async () => (exited || snapshotProgress(stateFile).done ? true : undefined),
        'the fault hook to kill the process during the snapshot',
        240_000,
        () => current.output,
      );
      if (!exited) break;
      const exit = await current.exited;
      if (exit.signal !== 'SIGKILL' || !current.output.includes('nanosync test fault: SIGKILL'))
        throw new Error(
          `the process was not killed by its fault hook (exit ${exit.code ?? exit.signal})\n${current.output.slice(-3000)}`,
        );
      if (!snapshotProgress(stateFile).done) killedMidSnapshot++;
      // The writer starts after the first kill: the slot (the start position) exists by then,
      // so every change it makes comes after the start position and must reach the topic.
      writer ??= new ConcurrentWriter(db, 'public.eos_orders', ROWS + 1, () => ROWS);
      outputs.push(current.output);
      current = new NanosyncProcess(args, hooked(kill + 1));
    }
    writer ??= new ConcurrentWriter(db, 'public.eos_orders', ROWS + 1, () => ROWS);
    await eventually(
      async () => (snapshotProgress(stateFile).done ? true : undefined),
      'the snapshot to complete',
      300_000,
      () => current.output,
    );
    for (let kill = 0; kill < streamKills; kill++) {
      await new Promise((r) => setTimeout(r, 500 + Math.floor(random() * 2000)));
      // One transaction touching a few hundred rows: a batch of hundreds of records, sent in
      // many small requests (max_bytes_in_flight 2048), so a kill is likely to land mid-batch.
      await db.query('UPDATE public.eos_orders SET qty = qty + 1 WHERE id <= 300');
      await new Promise((r) => setTimeout(r, Math.floor(random() * 800)));
      await current.kill('SIGKILL');
      outputs.push(current.output);
      current = new NanosyncProcess(args);
    }
    await using last = current;
    await new Promise((r) => setTimeout(r, 3000));
    await writer.stop();
    const changes = writer.changes;
    writer = undefined;

    const expected = await tableRows(db, 'public.eos_orders');
    let problems: string[] = [];
    let records: ConsumedRecord[] = [];
    await eventually(
      async () => {
        records = await consumeCommitted(kafka.brokers, topic);
        problems = oracle(records, expected, changes);
        return problems.length === 0 ? true : undefined;
      },
      'the topic to converge on the table',
      300_000,
      () => `${problems.join('\n')}\n--- nanosync output ---\n${last.output.slice(-4000)}`,
    ).catch(() => undefined);
    const output = last.output;
    outputs.push(output);
    await last.kill('SIGTERM');
    return {
      records,
      problems,
      changes: changes.length,
      snapshotKills: killedMidSnapshot,
      output,
      encodedInWorkers: outputs.filter((o) => o.includes(ENCODED_IN_WORKER)).length,
    };
  } finally {
    await writer?.stop().catch(() => undefined);
    await dropSlots(db);
    await db.end();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `delivery: exactly_once` through the real CLI: a writer changes the table the whole time
 * while the pipeline process is SIGKILLed at seeded random moments during the snapshot and
 * while streaming, and restarted. A read_committed consumer must then see every change
 * exactly once (no (key, position) twice), no snapshot row of a key twice in one chunk, and
 * the topic must pass the oracle of RELIABILITY.md.
 */
test(
  `${DELIVERY}: ${SNAPSHOT_KILLS} SIGKILLs during the snapshot and ${KILLS} while streaming (seed ${SEED}) under a concurrent writer; read_committed sees each change and each snapshot row once`,
  { timeout: 1_200_000 },
  async () => {
    const run = await runWithKills(DELIVERY, SNAPSHOT_KILLS, KILLS);
    expect(run.problems, run.output.slice(-4000)).toEqual([]);
    expect(run.snapshotKills).toBeGreaterThanOrEqual(2);
    expect(duplicates(run.records)).toEqual([]);
    expect(snapshotRepeats(run.records)).toEqual([]);
    const reads = run.records.filter((r) => r.headers['ns-op'] === 'read');
    expect(reads.length).toBeGreaterThanOrEqual(ROWS / 2);
    expect(reads.filter((r) => r.headers['ns-chunk'] === undefined)).toEqual([]);
    const streamed = run.records.filter((r) => r.value !== null && decodeJsonMessage(r.value).op !== 'read');
    expect(streamed.length).toBeGreaterThan(KILLS);
    expect(run.changes).toBeGreaterThan(0);
  },
);

/**
 * The same with the snapshot decoded and encoded in 3 worker threads: every chunk goes to
 * Kafka as one encoded batch in the transaction that names it, so a chunk read again after a
 * kill is still skipped once (no snapshot row twice) and the oracle holds.
 */
test(
  `${DELIVERY} with workers: 3: ${SNAPSHOT_KILLS} SIGKILLs during the snapshot and ${KILLS} while streaming (seed ${SEED}); read_committed sees each change and each snapshot row once`,
  { timeout: 1_200_000 },
  async () => {
    const run = await runWithKills(DELIVERY, SNAPSHOT_KILLS, KILLS, 3);
    expect(run.problems, run.output.slice(-4000)).toEqual([]);
    expect(run.snapshotKills).toBeGreaterThanOrEqual(2);
    expect(run.encodedInWorkers).toBeGreaterThanOrEqual(run.snapshotKills);
    expect(duplicates(run.records)).toEqual([]);
    expect(snapshotRepeats(run.records)).toEqual([]);
    const reads = run.records.filter((r) => r.headers['ns-op'] === 'read');
    expect(reads.length).toBeGreaterThanOrEqual(ROWS / 2);
    expect(reads.filter((r) => r.headers['ns-chunk'] === undefined)).toEqual([]);
    expect(run.changes).toBeGreaterThan(0);
  },
);

/** The same snapshot kills with `at_least_once`: chunks read again are written again, which the checks above catch. */
test(
  `at_least_once: the same SIGKILLs during the snapshot repeat snapshot rows of a chunk (the exactly_once checks can fail)`,
  { timeout: 900_000 },
  async () => {
    const run = await runWithKills('at_least_once', SNAPSHOT_KILLS, 0);
    expect(run.problems, run.output.slice(-4000)).toEqual([]);
    expect(run.snapshotKills).toBeGreaterThanOrEqual(2);
    expect(snapshotRepeats(run.records).length).toBeGreaterThan(0);
  },
);
