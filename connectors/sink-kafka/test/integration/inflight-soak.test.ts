import type { ChangeEvent, ConnectorContext, TableSchema } from '@nanosync/core';
import { startKafka } from '@nanosync/testcontainers';
import { expect, test } from 'vitest';
import { kafkaSinkPropertiesSchema } from '../../src/config.js';
import { decodeJsonMessage } from '../../src/formats/json.js';
import { KafkaSink } from '../../src/sink.js';
import { checkPerKeyOrder } from '../order-check.js';
import { consumeAll, inMemoryLogger, uniqueName } from './helpers.js';

/**
 * Soak test of the sink's idempotent producer under broker crashes: keyed records with a
 * number per key (1, 2, 3, …) go through `KafkaSink.write` exactly as core hands batches to
 * it, with `requestsInFlight` produce requests outstanding, while the broker is SIGKILLed
 * and restarted on the same data several times. Afterwards every partition is read back:
 * nothing missing, per key nothing written for the first time before an earlier record of
 * that key, the last record of each key its highest number, and duplicates only of records
 * the sink had to send again (a failed request it retried; at-least-once allows those).
 *
 * The sink sends one request at a time. `NS_SOAK_IN_FLIGHT=2,5` runs the same soak with more
 * outstanding (the test seam `requestsInFlight`), which @platformatic/kafka 2.12.1 does not
 * keep in order (see *One request in flight* in the README); `NS_SOAK_KILLS` sets the rounds.
 */
const inFlightRuns = (process.env.NS_SOAK_IN_FLIGHT ?? '1').split(',').map((n) => Number(n.trim()));
const kills = Number(process.env.NS_SOAK_KILLS ?? 5);
const KEYS = 240;
const BATCH = 500;

const table: TableSchema = {
  schema: 'public',
  name: 'soak',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'seq', type: { kind: 'int32' }, nullable: false },
    { name: 'pad', type: { kind: 'string' }, nullable: false },
  ],
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (const inFlight of inFlightRuns) {
  test(
    `${inFlight} produce request(s) in flight, broker SIGKILLed ${kills} times: per key every record, in order`,
    { timeout: 900_000 },
    async () => {
      await using kafka = await startKafka({ fresh: true });
      const topic = uniqueName('ns-it-soak');
      const config = kafkaSinkPropertiesSchema.parse({
        brokers: kafka.brokers.join(','),
        topic,
        num_partitions: 6,
        // Small requests, so each write is many of them and a kill finds several outstanding.
        max_bytes_in_flight: 16_384,
        // Ride out every restart inside the write (core would replay the batch otherwise).
        max_retries: 300,
        retry_backoff_ms: 100,
        retry_backoff_max_ms: 1000,
        request_timeout_ms: 10_000,
      });
      const logger = inMemoryLogger();
      const abort = new AbortController();
      const context: ConnectorContext = { pipeline: 'soak', logger, signal: abort.signal };
      const sink = new KafkaSink(config, context, undefined, { requestsInFlight: inFlight });
      await sink.open([table]);

      const highest = new Map<string, number>();
      /** `key#seq` → index of the batch that carried it. */
      const batchOf = new Map<string, number>();
      /** Batches whose write retried a request (or failed and was written again). */
      const resent = new Set<number>();
      let acked = 0;
      let replays = 0;
      let stop = false;
      let rng = 0x2545f491;
      const nextKey = () => {
        rng ^= rng << 13;
        rng ^= rng >>> 17;
        rng ^= rng << 5;
        return (rng >>> 0) % KEYS;
      };

      const writer = (async () => {
        for (let b = 0; !stop; b++) {
          const events: ChangeEvent[] = [];
          for (let j = 0; j < BATCH; j++) {
            const id = nextKey();
            const key = `[${id}]`;
            const seq = (highest.get(key) ?? 0) + 1;
            highest.set(key, seq);
            batchOf.set(`${key}#${seq}`, b);
            events.push({
              table,
              op: 'update',
              key: { id },
              after: { id, seq, pad: 'x'.repeat(300) },
              position: `${(b * BATCH + j).toString(16).padStart(16, '0')}:00000000`,
            });
          }
          // As core does: a failed write is written again whole.
          for (;;) {
            const linesBefore = logger.lines.length;
            try {
              await sink.write(events);
              if (logger.lines.slice(linesBefore).some((l) => l.startsWith('WRN kafka'))) resent.add(b);
              break;
            } catch (err) {
              resent.add(b);
              replays++;
              logger.warn('soak: write failed, writing the batch again', { error: String(err) });
            }
          }
          acked++;
        }
      })();

      const untilAcked = async (n: number) => {
        while (acked < n) await sleep(20);
      };
      const downMs = [500, 2500, 1000, 4000, 1500];
      for (let round = 0; round < kills; round++) {
        await untilAcked(acked + 3);
        await kafka.kill();
        await sleep(downMs[round % downMs.length]!);
        await kafka.start();
      }
      await untilAcked(acked + 3);
      stop = true;
      await writer;
      abort.abort();
      await sink.close();

      const records = (await consumeAll(kafka.brokers, topic)).map((r) => ({
        key: r.key!,
        seq: decodeJsonMessage(r.value!, { table }).after!.seq as number,
        partition: r.partition,
        offset: BigInt(r.offset),
      }));
      const report = checkPerKeyOrder(highest, records);
      const sentCount = [...highest.values()].reduce((a, b) => a + b, 0);
      const retries = logger.lines.filter((l) => l.startsWith('WRN kafka produce failed, retrying')).length;
      const unexplained = report.duplicates.filter((d) => !resent.has(batchOf.get(`${d.key}#${d.seq}`)!));
      console.log(
        `soak in-flight=${inFlight}: ${sentCount} records sent in ${acked} batches, ${records.length} read back; ` +
          `${kills} kills, ${retries} request retries, ${resent.size} batches with a resend, ${replays} batch replays; ` +
          `${report.duplicates.length} duplicated, ${report.missing.length} missing, ${report.outOfOrder.length} out of order, ` +
          `${report.staleLast.length} keys with a stale last value`,
      );
      // What the retried requests failed with, most frequent first.
      const causes = new Map<string, number>();
      for (const l of logger.lines.filter((l) => l.startsWith('WRN kafka'))) {
        const fields = l.indexOf(' {');
        const cause = `${l.slice(4, fields)}: ${(JSON.parse(l.slice(fields + 1)) as { error?: string }).error ?? ''}`;
        causes.set(cause, (causes.get(cause) ?? 0) + 1);
      }
      for (const [cause, count] of [...causes].sort((a, b) => b[1] - a[1]).slice(0, 6))
        console.log(`soak in-flight=${inFlight}: ${count}× ${cause}`);
      for (const line of [
        ...report.outOfOrder.slice(0, 10).map((l) => `out of order ${l}`),
        ...report.missing.slice(0, 10).map((l) => `missing ${l}`),
      ])
        console.log(`soak in-flight=${inFlight}: ${line}`);

      // The kills reached the sink: it had requests to retry.
      expect(retries).toBeGreaterThan(0);
      expect(report.misplaced).toEqual([]);
      expect(report.missing).toEqual([]);
      expect(report.outOfOrder).toEqual([]);
      expect(report.staleLast).toEqual([]);
      expect(unexplained).toEqual([]);
    },
  );
}
