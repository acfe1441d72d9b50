import { startKafka, startPostgres } from '@nanosync/testcontainers';
import { expect, test } from 'vitest';
import {
  ConcurrentWriter,
  ENCODED_IN_WORKER,
  NanosyncProcess,
  SlotFlushSampler,
  STREAM_ENCODED_IN_WORKER,
  e2eWorkspace,
  eventually,
  firstRecordsIn,
  oracle,
  tableRows,
  writePipelines,
} from './e2e-helpers.js';
import { type ConsumedRecord, consumeAll, uniqueName } from './helpers.js';

const ROWS = 50_000;

/**
 * PostgreSQL → Kafka through the real CLI (`nanosync run --file`), with a writer changing
 * the table the whole time and the pipeline process SIGKILLed in the middle of the
 * snapshot. After a restart and drain, the topic passes the oracle of RELIABILITY.md. The
 * same with the snapshot decoded and encoded in 1 and in 3 worker threads (concurrent mode:
 * the merge drops rows by the keys of raw chunks); each such run must have written
 * batches the workers encoded. With workers the stream goes through them too once the
 * snapshot is done: the restarted process is SIGKILLed again once it wrote stream batches the
 * workers encoded, under the writer, and a third one takes over from its checkpoints.
 */
test.each([{ workers: 0 }, { workers: 1 }, { workers: 3 }])(
  'postgres → kafka: concurrent writer, SIGKILL mid-snapshot, restart, oracle passes (workers: $workers)',
  { timeout: 600_000 },
  async ({ workers }) => {
    await using postgres = await startPostgres();
    await using kafka = await startKafka();
    await using workspace = await e2eWorkspace(postgres, 'ns-kafka-e2e-');
    const { url, db, dir } = workspace;
    const pipeline = uniqueName('kafka_e2e').replace(/-/g, '_');
    const topic = uniqueName('ns-e2e');
    let writer: ConcurrentWriter | undefined;
    let sampler: SlotFlushSampler | undefined;
    let third: NanosyncProcess | undefined;
    try {
      await db.query(
        'CREATE TABLE public.e2e_orders (id bigint PRIMARY KEY, note text, amount numeric(20,2), qty int, flag bool)',
      );
      await db.query(
        `INSERT INTO public.e2e_orders SELECT g, 'row ' || g || repeat('x', 200), g * 1.5, g, g % 2 = 0 FROM generate_series(1, $1) g`,
        [ROWS],
      );
      const { stateFile, args } = await writePipelines(dir, {
        postgresUrl: url,
        brokers: kafka.brokers,
        pipelines: [
          {
            name: pipeline,
            tables: ['public.e2e_orders'],
            snapshot: { concurrency: 2, target_rows_per_partition: 1000 },
            sink: { topic, compression: 'lz4' },
            workers,
          },
        ],
      });
      sampler = new SlotFlushSampler(url, `nanosync_slot_${pipeline}`, stateFile, pipeline);

      const first = new NanosyncProcess(args);
      // The test window opens when the slot is made (its confirmed_flush_lsn, the start position,
      // is set once the slot is consistent; on a busy server it waits for running transactions
      // first): changes before it are in the snapshot only.
      await eventually(
        async () =>
          (
            await db.query(
              'SELECT 1 FROM pg_replication_slots WHERE database = current_database() AND confirmed_flush_lsn IS NOT NULL',
            )
          ).rowCount
            ? true
            : undefined,
        'the replication slot',
        180_000,
        () => first.output,
      );
      writer = new ConcurrentWriter(db, 'public.e2e_orders', ROWS + 1, () => ROWS);
      const atKill = await firstRecordsIn(kafka.brokers, topic, 180_000, () => first.output);
      await first.kill('SIGKILL');
      expect(atKill, 'the kill landed before the snapshot finished').toBeLessThan(ROWS);

      await using second = new NanosyncProcess(args);
      let last = second;
      if (workers > 0) {
        // The stream phase through the workers, killed there, under the writer.
        await eventually(
          async () => (second.output.includes(STREAM_ENCODED_IN_WORKER) ? true : undefined),
          'stream batches the worker threads encoded, written to Kafka',
          240_000,
          () => second.output.slice(-3000),
        );
        await second.kill('SIGKILL');
        third = new NanosyncProcess(args);
        const running = third;
        last = running;
        await eventually(
          async () => (running.output.includes(STREAM_ENCODED_IN_WORKER) ? true : undefined),
          'stream batches the worker threads encoded after the second kill',
          240_000,
          () => running.output.slice(-3000),
        );
      } else {
        await new Promise((r) => setTimeout(r, 5_000));
      }
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
        () => `${problems.join('\n')}\n--- nanosync output ---\n${last.output.slice(-4000)}`,
      );
      expect(problems).toEqual([]);
      expect(changes.length).toBeGreaterThan(0);
      // With workers, snapshot chunks reached Kafka as batches the worker threads encoded (the
      // line may come from either process: the first one's log can be cut by the SIGKILL).
      const outputs = first.output + second.output + (third?.output ?? '');
      if (workers > 0) expect(outputs, outputs.slice(-3000)).toContain(ENCODED_IN_WORKER);
      else expect(outputs).not.toContain(ENCODED_IN_WORKER);
      await last.kill('SIGTERM');
      // Item 4, sampled through the whole run, shutdown included.
      expect(await sampler.stopAndCheck(records)).toEqual([]);
    } finally {
      await writer?.stop().catch(() => undefined);
      await sampler?.stop().catch(() => undefined);
      await third?.kill('SIGKILL').catch(() => undefined);
    }
  },
);
