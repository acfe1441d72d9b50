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
import { type ConsumedRecord, consumeAll, uniqueName } from './helpers.js';

const ROWS = 500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * PostgreSQL → Kafka through `nanosync run`, with the broker stopped for 30 s while a
 * writer keeps changing the table. While Kafka is down nothing can be durable, so the
 * replication slot must not be acknowledged past where it was; after the broker returns
 * the pipeline catches up by itself and the topic passes the oracle.
 */
test(
  'postgres → kafka: broker down for 30 s, slot not acknowledged meanwhile, no loss',
  { timeout: 600_000 },
  async () => {
    await using postgres = await startPostgres();
    await using kafka = await startKafka({ fresh: true });
    await using workspace = await e2eWorkspace(postgres, 'ns-kafka-e2e-outage-');
    const { url, db, dir } = workspace;
    const pipeline = uniqueName('kafka_outage').replace(/-/g, '_');
    const topic = uniqueName('ns-e2e-outage');
    let writer: ConcurrentWriter | undefined;
    let sampler: SlotFlushSampler | undefined;
    try {
      await db.query(
        'CREATE TABLE public.e2e_orders (id bigint PRIMARY KEY, note text, amount numeric(20,2), qty int, flag bool)',
      );
      await db.query(
        `INSERT INTO public.e2e_orders SELECT g, 'row ' || g, g * 1.5, g, g % 2 = 0 FROM generate_series(1, $1) g`,
        [ROWS],
      );
      const { stateFile, args } = await writePipelines(dir, {
        postgresUrl: url,
        brokers: kafka.brokers,
        pipelines: [{ name: pipeline, tables: ['public.e2e_orders'], sink: { topic, message_format: 'json' } }],
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
      await sleep(3_000);
      const slot = async () =>
        (
          await db.query<{ lsn: string }>(
            'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE database = current_database()',
          )
        ).rows[0]?.lsn;
      await eventually(
        async () => ((await topicSize(kafka.brokers, topic)) > ROWS ? true : undefined),
        'live changes in Kafka',
        120_000,
        context,
      );

      await kafka.stop();
      await sleep(5_000); // writes acknowledged just before the stop may still be checkpointed
      const heldAt = await slot();
      const samples: (string | undefined)[] = [];
      for (let i = 0; i < 25; i++) {
        await sleep(1_000);
        samples.push(await slot());
      }
      expect(heldAt).toBeDefined();
      expect(new Set(samples)).toEqual(new Set([heldAt]));
      expect(proc.running).toBe(true);

      await kafka.start();
      await sleep(5_000);
      await writer.stop();
      const changes = writer.changes;
      writer = undefined;
      const expected = await tableRows(db, 'public.e2e_orders');
      let problems: string[] = [];
      let records: ConsumedRecord[] = [];
      await eventually(
        async () => {
          records = await consumeAll(kafka.brokers, topic);
          problems = oracle(records, expected, changes);
          return problems.length === 0 ? true : undefined;
        },
        'the topic to converge on the table',
        240_000,
        () => `${problems.join('\n')}\n--- nanosync output ---\n${context()}`,
      );
      await eventually(
        async () => ((await slot()) !== heldAt ? true : undefined),
        'the slot to advance again',
        120_000,
        context,
      );
      await proc.kill('SIGTERM');
      // Item 4, sampled through the whole run, shutdown included.
      expect(await sampler.stopAndCheck(records)).toEqual([]);
    } finally {
      await writer?.stop().catch(() => undefined);
      await sampler?.stop().catch(() => undefined);
    }
  },
);
