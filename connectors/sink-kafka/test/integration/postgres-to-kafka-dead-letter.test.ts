import { randomBytes } from 'node:crypto';
import { startKafka, startPostgres } from '@nanosync/testcontainers';
import { expect, test } from 'vitest';
import {
  ConcurrentWriter,
  NanosyncProcess,
  SlotFlushSampler,
  e2eWorkspace,
  eventually,
  oracle,
  tableRows,
  topicSize,
  writePipelines,
} from './e2e-helpers.js';
import { type ConsumedRecord, consumeAll, createTopic, uniqueName } from './helpers.js';

const ROWS = 300;
/** The topic refuses messages over this; the two big rows are several times larger. */
const MAX_MESSAGE_BYTES = 64 * 1024;
const BIG_IDS = ['100001', '100002'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * PostgreSQL → Kafka with `on_error: dead_letter`: a row larger than the topic's
 * `max.message.bytes` (one in the snapshot, one inserted while streaming) cannot be
 * written. Each lands in `<topic_prefix>dlq` with its table, key, position, sink and the
 * broker's refusal; the pipeline keeps running, every other change reaches the topic (the
 * oracle passes on the table without the two rows) and the slot moves past them.
 */
test(
  'postgres → kafka: rows over max.message.bytes go to the dead-letter topic, everything else is delivered',
  { timeout: 600_000 },
  async () => {
    await using postgres = await startPostgres();
    await using kafka = await startKafka();
    await using workspace = await e2eWorkspace(postgres, 'ns-kafka-e2e-dlq-');
    const { url, db, dir } = workspace;
    const pipeline = uniqueName('kafka_dlq').replace(/-/g, '_');
    const prefix = `${uniqueName('ns-dlq')}.`;
    const topic = `${prefix}public_e2e_orders`;
    const dlq = `${prefix}dlq`;
    let writer: ConcurrentWriter | undefined;
    let sampler: SlotFlushSampler | undefined;
    // Random text: it stays large after the sink's compression.
    const big = randomBytes(3 * MAX_MESSAGE_BYTES).toString('base64');
    try {
      await createTopic(kafka.brokers, topic, 1, [{ name: 'max.message.bytes', value: String(MAX_MESSAGE_BYTES) }]);
      await db.query(
        'CREATE TABLE public.e2e_orders (id bigint PRIMARY KEY, note text, amount numeric(20,2), qty int, flag bool)',
      );
      await db.query(
        `INSERT INTO public.e2e_orders SELECT g, 'row ' || g, g * 1.5, g, g % 2 = 0 FROM generate_series(1, $1) g`,
        [ROWS],
      );
      await db.query(`INSERT INTO public.e2e_orders VALUES ($1, $2, 1, 1, true)`, [BIG_IDS[0], big]);
      const { stateFile, args } = await writePipelines(dir, {
        postgresUrl: url,
        brokers: kafka.brokers,
        pipelines: [
          {
            name: pipeline,
            tables: ['public.e2e_orders'],
            onError: 'dead_letter',
            sink: { topic_prefix: prefix, message_format: 'json' },
          },
        ],
      });
      sampler = new SlotFlushSampler(url, `nanosync_slot_${pipeline}`, stateFile, pipeline);
      await using proc = new NanosyncProcess(args);
      const context = () => proc.output.slice(-4000);
      await eventually(
        async () => ((await topicSize(kafka.brokers, topic)) >= ROWS ? true : undefined),
        'the snapshot in Kafka',
        180_000,
        context,
      );

      writer = new ConcurrentWriter(db, 'public.e2e_orders', ROWS + 1, () => ROWS);
      await sleep(2_000);
      await db.query(`INSERT INTO public.e2e_orders VALUES ($1, $2, 2, 2, false)`, [BIG_IDS[1], big]);
      await sleep(3_000);
      await writer.stop();
      const changes = writer.changes;
      writer = undefined;
      const { rows: lsnRows } = await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      const lastLsn = lsnRows[0]!.lsn;

      // Everything but the two big rows converges on the table.
      const expected = await tableRows(db, 'public.e2e_orders');
      for (const id of BIG_IDS) expected.delete(id);
      let problems: string[] = [];
      let records: ConsumedRecord[] = [];
      await eventually(
        async () => {
          records = await consumeAll(kafka.brokers, topic);
          problems = oracle(
            records.filter((r) => r.key === null || !BIG_IDS.includes(String(JSON.parse(r.key)[0]))),
            expected,
            changes,
          );
          return problems.length === 0 ? true : undefined;
        },
        'the topic to converge on the table without the big rows',
        240_000,
        () => `${problems.join('\n')}\n--- nanosync output ---\n${context()}`,
      );
      // Neither big row ever reached the data topic.
      expect(records.filter((r) => r.key !== null && BIG_IDS.includes(String(JSON.parse(r.key)[0])))).toEqual([]);

      let letters: ConsumedRecord[] = [];
      await eventually(
        async () => {
          letters = await consumeAll(kafka.brokers, dlq);
          return letters.length >= 2 ? true : undefined;
        },
        'two dead letters',
        120_000,
        context,
      );
      expect(letters).toHaveLength(2);
      const decoded = letters.map((l) => ({ record: l, letter: JSON.parse(l.value!.toString('utf8')) }));
      expect(decoded.map((d) => d.letter.key.id).sort()).toEqual(BIG_IDS);
      for (const { record, letter } of decoded) {
        expect(letter).toMatchObject({
          pipeline,
          sink: '0:kafka',
          table: 'public.e2e_orders',
          op: letter.key.id === BIG_IDS[0] ? 'read' : 'insert',
          error: { code: 'NS_K6003' },
        });
        expect(letter.error.message).toContain(`key [${letter.key.id}]`);
        expect(letter.after.note).toBe(big);
        expect(typeof letter.position).toBe('string');
        expect(record.headers['ns-position']).toBe(letter.position);
        expect(record.key).toBe(JSON.stringify(letter.key));
      }
      // The streamed big row's position is a real WAL position inside the test window.
      const streamed = decoded.find((d) => d.letter.key.id === BIG_IDS[1])!.letter;

      // The pipeline kept going: still live, counted, and the slot moved past the dead letters.
      await eventually(
        async () => {
          const { rows } = await db.query<{ ok: boolean }>(
            'SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2',
            [lastLsn, `nanosync_slot_${pipeline}`],
          );
          return rows[0]?.ok ? true : undefined;
        },
        'the slot to pass the dead letters',
        120_000,
        context,
      );
      expect(proc.output.split('\n').filter((l) => l.includes('event dead-lettered'))).toHaveLength(2);
      expect(streamed.commitTime).toBeDefined();
      await proc.kill('SIGTERM');
      expect(await sampler.stopAndCheck(records)).toEqual([]);
    } finally {
      await writer?.stop().catch(() => undefined);
      await sampler?.stop().catch(() => undefined);
    }
  },
);
