import { join } from 'node:path';
import { type BenchContext, debeziumReason, pgBinary } from '../context.js';
import { countMessages } from '../kafka.js';
import { LineCounter } from '../line-counter.js';
import { runToExit } from '../measure.js';
import { nanosyncUnavailableReason } from '../nanosync.js';
import { connect, createSnapshotTable } from '../pg.js';
import { type Measurement, notAvailable, type ScenarioResult } from '../report.js';
import { cpuPerMillion, ratio } from '../stats.js';
import { errorMessage, log } from '../util.js';
import { createTopics, debeziumSpec, debeziumTopic, runDebeziumMeasured, runNanosyncMeasured } from './common.js';

const TABLE = 'bench_s1';

/** `psql -c "COPY (SELECT * FROM t) TO STDOUT" > /dev/null`: how fast the server can hand the table out at all. */
async function copyBaseline(ctx: BenchContext, rows: number): Promise<Measurement> {
  const psql = pgBinary(ctx, 'psql');
  const script = `exec "$0" -X -q -d "$1" -c "COPY (SELECT * FROM ${TABLE}) TO STDOUT" > /dev/null`;
  // One untimed pass so both the baseline and the tools read a table that is in the page cache.
  await runToExit('psql COPY (warm-up)', 'sh', ['-c', script, psql, ctx.pgUrl], {
    logFile: join(ctx.workRoot, 's1-copy-warmup.log'),
  });
  const run = await runToExit('psql COPY', 'sh', ['-c', script, psql, ctx.pgUrl], {
    logFile: join(ctx.workRoot, 's1-copy.log'),
  });
  if (run.code !== 0) throw new Error(`psql COPY exited with ${run.code}; see ${run.tool.logFile}`);
  return {
    tool: 'COPY TO STDOUT (psql > /dev/null)',
    status: 'ok',
    events: rows,
    seconds: run.seconds,
    eventsPerSecond: rows / run.seconds,
    peakRssBytes: run.usage.peakRssBytes,
    cpuSeconds: run.usage.cpuSeconds,
    cpuSecondsPerMillion: cpuPerMillion(run.usage.cpuSeconds, rows),
  };
}

export async function runS1(ctx: BenchContext): Promise<ScenarioResult> {
  const rows = ctx.options.rows;
  const result: ScenarioResult = {
    id: 'S1',
    title: 'Snapshot: a 16-column table read in full',
    parameters: { rows, workers: ctx.options.workers },
    measurements: [],
    ratios: [],
    notes: [
      'Times run from process start to the last row being durable in the sink (Kafka: in the topic; file: on disk); startup s = start → first row in the sink.',
      'CPU and RSS are the tool process tree only: the PostgreSQL backends and the broker are not counted for anyone.',
    ],
  };
  const client = await connect(ctx.pgUrl);
  try {
    log(`S1: generating ${rows.toLocaleString('en-US')} rows`);
    const started = performance.now();
    const { bytes } = await createSnapshotTable(client, TABLE, rows);
    result.parameters.tableMB = Math.round(bytes / 1024 / 1024);
    result.parameters.generateSeconds = Math.round((performance.now() - started) / 100) / 10;
  } finally {
    await client.end();
  }

  const copy = await copyBaseline(ctx, rows).catch((error) =>
    notAvailable('COPY TO STDOUT (psql > /dev/null)', errorMessage(error)),
  );
  result.measurements.push(copy);

  const nsKafkaRun = async (label: string, kafkaTopic: string, delivery?: 'exactly_once'): Promise<Measurement> => {
    const reason = nanosyncUnavailableReason('kafka');
    if (reason) return notAvailable(label, reason);
    try {
      await createTopics(ctx, kafkaTopic);
      return await runNanosyncMeasured(
        ctx,
        label,
        {
          name: `bench-s1-kafka${delivery ? '-eos' : ''}-${ctx.runId}`,
          pgUrl: ctx.pgUrl,
          table: `public.${TABLE}`,
          replicationType: 'snapshot',
          workers: ctx.options.workers,
          sink: {
            kind: 'kafka',
            brokers: ctx.brokers,
            topic: kafkaTopic,
            compression: ctx.producer.compression,
            ...(delivery ? { delivery } : {}),
          },
          workDir: join(ctx.workRoot, `ns-s1-kafka${delivery ? '-eos' : ''}`),
        },
        rows,
        // With exactly_once the offsets also count one commit marker per transaction, so
        // "done" may come that many records early (a few hundred of millions).
        async () => {
          const count = await countMessages(ctx.admin, kafkaTopic);
          return { progress: count, done: count >= rows };
        },
        { started: async () => (await countMessages(ctx.admin, kafkaTopic)) > 0, details: { topic: kafkaTopic } },
      );
    } catch (error) {
      return notAvailable(label, errorMessage(error));
    }
  };
  const nsKafka = await nsKafkaRun('nanosync → Kafka (json)', `ns_s1_${ctx.runId}`);
  result.measurements.push(nsKafka);
  const nsKafkaEos = await nsKafkaRun(
    'nanosync → Kafka (json, exactly_once)',
    `ns_s1_eos_${ctx.runId}`,
    'exactly_once',
  );
  result.measurements.push(nsKafkaEos);

  const nsFile = await (async (): Promise<Measurement> => {
    const label = 'nanosync → file (jsonl)';
    const reason = nanosyncUnavailableReason('file');
    if (reason) return notAvailable(label, reason);
    const file = join(ctx.workRoot, 'ns-s1-file', 'out', 'bench_s1.jsonl');
    const counter = new LineCounter(file);
    try {
      return await runNanosyncMeasured(
        ctx,
        label,
        {
          name: `bench-s1-file-${ctx.runId}`,
          pgUrl: ctx.pgUrl,
          table: `public.${TABLE}`,
          replicationType: 'snapshot',
          workers: ctx.options.workers,
          sink: { kind: 'file', file },
          workDir: join(ctx.workRoot, 'ns-s1-file'),
        },
        rows,
        async () => {
          const count = await counter.count();
          return { progress: count, done: count >= rows };
        },
        { started: async () => (await counter.count()) > 0, details: { file } },
      );
    } catch (error) {
      return notAvailable(label, errorMessage(error));
    }
  })();
  result.measurements.push(nsFile);

  const dbz = await (async (): Promise<Measurement> => {
    const label = 'Debezium → Kafka (json)';
    const reason = debeziumReason(ctx);
    if (reason) return notAvailable(label, reason);
    try {
      const spec = debeziumSpec(ctx, 's1', `public.${TABLE}`, 'initial');
      const topic = debeziumTopic(spec);
      await createTopics(ctx, topic);
      return await runDebeziumMeasured(
        ctx,
        label,
        spec,
        rows,
        async () => {
          const count = await countMessages(ctx.admin, topic);
          return { progress: count, done: count >= rows };
        },
        { details: { topic }, started: async () => (await countMessages(ctx.admin, topic)) > 0 },
      );
    } catch (error) {
      return notAvailable(label, errorMessage(error));
    }
  })();
  result.measurements.push(dbz);

  const rate = (m: Measurement) => (m.status === 'ok' ? m.eventsPerSecond : undefined);
  const why = (...ms: Measurement[]) => ms.find((m) => m.status === 'n/a')?.reason;
  result.ratios.push(
    {
      name: 'nanosync→Kafka ÷ COPY',
      value: ratio(rate(nsKafka), rate(copy)),
      reason: why(nsKafka, copy),
      meaning:
        'share of the raw COPY read speed that nanosync reaches end to end into Kafka (1.0 = as fast as the server can hand the rows out)',
    },
    {
      name: 'nanosync→Kafka exactly_once ÷ at-least-once',
      value: ratio(rate(nsKafkaEos), rate(nsKafka)),
      reason: why(nsKafkaEos, nsKafka),
      meaning:
        'throughput kept with delivery: exactly_once (one transaction per batch) against the default at-least-once, same table and broker',
    },
    {
      name: 'nanosync→file ÷ COPY',
      value: ratio(rate(nsFile), rate(copy)),
      reason: why(nsFile, copy),
      meaning: 'the same into local JSON-lines files, without the broker',
    },
    {
      name: 'nanosync→Kafka ÷ Debezium',
      value: ratio(rate(nsKafka), rate(dbz)),
      reason: why(nsKafka, dbz),
      meaning:
        'snapshot rows/s of nanosync over Debezium’s, same table, broker and producer settings (>1 = nanosync faster)',
    },
  );
  return result;
}
