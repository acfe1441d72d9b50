import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext } from '../context.js';
import { countMessages } from '../kafka.js';
import { packageVersion } from '../machine.js';
import { runToExit } from '../measure.js';
import { REPO_ROOT } from '../nanosync.js';
import { averageBytes, makePayloads, parseProducerPerformance } from '../payloads.js';
import { type Measurement, notAvailable, type ScenarioResult } from '../report.js';
import { cpuPerMillion, ratio } from '../stats.js';
import { errorMessage, log } from '../util.js';
import { createTopics } from './common.js';

const WORKERS = join(dirname(fileURLToPath(import.meta.url)), '../workers');
/** The sink's default max_bytes_in_flight: the most message bytes it hands its client in one send. */
const SINK_BYTES_PER_SEND = 1024 * 1024;

/** The Node clients S4 compares, each driven by its own worker the way the sink drives its client. */
export const NODE_CLIENTS = [
  { id: 'kafkajs', pkg: 'kafkajs', worker: 'kafkajs-producer.ts' },
  { id: 'platformatic', pkg: '@platformatic/kafka', worker: 'platformatic-producer.ts' },
  // The same client with the sink's Produce encoder (connectors/sink-kafka/src/fast-produce.ts),
  // which is how the sink's producer runs it.
  {
    id: 'platformatic-sink-encoder',
    pkg: '@platformatic/kafka',
    worker: 'platformatic-producer.ts',
    sinkEncoder: true,
  },
] as const;
type NodeClient = (typeof NODE_CLIENTS)[number] & { label: string };

/** `kafkajs 2.2.4`: the client with the version installed, so a report names what really ran. */
async function withLabel(client: (typeof NODE_CLIENTS)[number]): Promise<NodeClient> {
  const version = (await packageVersion(client.pkg)) ?? '(version unknown)';
  const encoder = 'sinkEncoder' in client ? " with the sink's Produce encoder" : '';
  return { ...client, label: `${client.pkg} ${version}${encoder}` };
}

async function nodeClientRun(
  ctx: BenchContext,
  client: NodeClient,
  payloadFile: string,
  records: number,
  compression: string,
): Promise<Measurement> {
  const label = `${client.label} (as the sink drives it), ${compression}`;
  const topic = `s4_${client.id}_${compression}_${ctx.runId}`;
  try {
    await createTopics(ctx, topic);
    const options = {
      brokers: ctx.brokers,
      topic,
      records,
      payloadFile,
      compression,
      maxBytesInFlight: SINK_BYTES_PER_SEND,
      sinkEncoder: 'sinkEncoder' in client,
    };
    const logFile = join(ctx.workRoot, `s4-${client.id}-${compression}.log`);
    log(`S4: ${client.label} producer, ${compression}, ${records.toLocaleString('en-US')} records`);
    const run = await runToExit(
      label,
      process.execPath,
      ['--conditions=@nanosync/source', '--import', 'tsx', join(WORKERS, client.worker), JSON.stringify(options)],
      { logFile, cwd: REPO_ROOT },
    );
    const output = await readFile(logFile, 'utf8');
    if (run.code !== 0)
      throw new Error(`worker exited with ${run.code}: ${output.trim().split('\n').slice(-3).join(' | ')}`);
    const line = output
      .trim()
      .split('\n')
      .reverse()
      .find((l) => l.startsWith('{'));
    const summary = line ? (JSON.parse(line) as { records: number; seconds: number; bytes: number }) : undefined;
    if (!summary) throw new Error(`no summary from the worker; see ${logFile}`);
    const stored = await countMessages(ctx.admin, topic);
    return {
      tool: label,
      status: 'ok',
      events: summary.records,
      seconds: summary.seconds,
      eventsPerSecond: summary.records / summary.seconds,
      startupSeconds: run.seconds - summary.seconds,
      peakRssBytes: run.usage.peakRssBytes,
      cpuSeconds: run.usage.cpuSeconds,
      cpuSecondsPerMillion: cpuPerMillion(run.usage.cpuSeconds, summary.records),
      details: { topic, storedMessages: stored, mbPerSecond: summary.bytes / 1024 / 1024 / summary.seconds },
    };
  } catch (error) {
    return notAvailable(label, errorMessage(error));
  }
}

async function producerPerformanceRun(
  ctx: BenchContext,
  payloadFile: string,
  records: number,
  compression: string,
): Promise<Measurement> {
  const label = `Java ProducerPerformance, ${compression}`;
  if ('unavailable' in ctx.kafkaLib) return notAvailable(label, ctx.kafkaLib.unavailable);
  const topic = `s4_java_${compression}_${ctx.runId}`;
  try {
    await createTopics(ctx, topic);
    const log4j = join(ctx.workRoot, 's4-log4j.properties');
    await writeFile(
      log4j,
      'log4j.rootLogger=WARN, stderr\nlog4j.appender.stderr=org.apache.log4j.ConsoleAppender\nlog4j.appender.stderr.Target=System.err\nlog4j.appender.stderr.layout=org.apache.log4j.PatternLayout\nlog4j.appender.stderr.layout.ConversionPattern=%p %m%n\n',
    );
    const logFile = join(ctx.workRoot, `s4-producer-performance-${compression}.log`);
    log(`S4: ProducerPerformance, ${compression}, ${records.toLocaleString('en-US')} records`);
    const java = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
    // Heap as kafka-producer-perf-test.sh sets it.
    const run = await runToExit(
      label,
      java,
      [
        '-Xmx512m',
        `-Dlog4j.configuration=file:${log4j}`,
        '-cp',
        `${ctx.kafkaLib.dir}/*`,
        'org.apache.kafka.tools.ProducerPerformance',
        '--topic',
        topic,
        '--num-records',
        String(records),
        '--payload-file',
        payloadFile,
        '--throughput',
        '-1',
        '--producer-props',
        `bootstrap.servers=${ctx.brokers.join(',')}`,
        'acks=all',
        `compression.type=${compression}`,
        `linger.ms=${ctx.producer.lingerMs}`,
      ],
      { logFile },
    );
    const output = await readFile(logFile, 'utf8');
    if (run.code !== 0)
      throw new Error(
        `ProducerPerformance exited with ${run.code}: ${output.trim().split('\n').slice(-3).join(' | ')}`,
      );
    const summary = parseProducerPerformance(output);
    if (!summary) throw new Error(`no summary line from ProducerPerformance; see ${logFile}`);
    const seconds = summary.records / summary.recordsPerSecond;
    return {
      tool: label,
      status: 'ok',
      events: summary.records,
      seconds,
      eventsPerSecond: summary.recordsPerSecond,
      startupSeconds: run.seconds - seconds,
      peakRssBytes: run.usage.peakRssBytes,
      cpuSeconds: run.usage.cpuSeconds,
      cpuSecondsPerMillion: cpuPerMillion(run.usage.cpuSeconds, summary.records),
      details: {
        topic,
        mbPerSecond: summary.mbPerSecond,
        avgLatencyMs: summary.avgLatencyMs,
        maxLatencyMs: summary.maxLatencyMs,
      },
    };
  } catch (error) {
    return notAvailable(label, errorMessage(error));
  }
}

export async function runS4(ctx: BenchContext): Promise<ScenarioResult> {
  const records = ctx.options.records;
  const payloads = makePayloads(1000);
  const payloadFile = join(ctx.workRoot, 's4-payloads.jsonl');
  await writeFile(payloadFile, `${payloads.join('\n')}\n`);
  const result: ScenarioResult = {
    id: 'S4',
    title: 'Kafka ceiling: the same records through each Node client and through the Java client',
    parameters: {
      records,
      recordBytes: Math.round(averageBytes(payloads)),
      acks: 'all',
      compressions: ctx.options.s4Compressions.join(','),
      lingerMs: ctx.producer.lingerMs,
    },
    measurements: [],
    ratios: [],
    notes: [
      'Every client sends the same 1,000 JSON envelopes of S1-shaped rows in turn; seconds are each client’s own send time (process startup excluded, shown as startup s); CPU includes startup.',
      'The Node clients run as the sink drives its client: idempotent, acks=all, one request in flight, keyed records with the three ns-* headers, awaited sends of at most 1 MiB.',
      'Native clients (node-rdkafka, @confluentinc/kafka-javascript) are not measured here: on a machine that reaches only the package registries they install only through a minutes-long C++ build, which a user’s npm install would not do.',
    ],
  };
  for (const compression of ctx.options.s4Compressions) {
    const node: Measurement[] = [];
    for (const client of NODE_CLIENTS)
      node.push(await nodeClientRun(ctx, await withLabel(client), payloadFile, records, compression));
    const java = await producerPerformanceRun(ctx, payloadFile, records, compression);
    result.measurements.push(...node, java);
    NODE_CLIENTS.forEach((client, i) => {
      const m = node[i] as Measurement;
      result.ratios.push({
        name: `${client.id} ÷ ProducerPerformance, ${compression}`,
        value: ratio(m.eventsPerSecond, java.eventsPerSecond),
        reason: [m, java].find((x) => x.status === 'n/a')?.reason,
        meaning:
          'records/s of the Node client over the Java client: the ceiling the client library puts on the sink (1.0 = no cost)',
      });
    });
  }
  return result;
}
