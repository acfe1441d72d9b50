import { loadavg } from 'node:os';
import { join } from 'node:path';
import { type BenchContext, debeziumReason } from '../context.js';
import { startDebezium } from '../debezium/connect.js';
import type { DebeziumJars } from '../debezium/resolve.js';
import { countMessages, LatencyCollector } from '../kafka.js';
import { nanosyncUnavailableReason, startNanosync } from '../nanosync.js';
import { connect, createChangeTable, insertRows, type PgClient } from '../pg.js';
import { machineCpuTicks, ProcessTreeMonitor } from '../proc.js';
import { type Measurement, notAvailable, type Ratio, type ScenarioResult } from '../report.js';
import { cpuPerMillion, percentile, ratio, summarizeLatencies } from '../stats.js';
import { errorMessage, log, sleep, type Tool, waitFor } from '../util.js';
import {
  createTopics,
  debeziumSpec,
  debeziumTopic,
  dropNewSlots,
  newSlot,
  slotActive,
  slotNames,
  stopTool,
  timeBudget,
} from './common.js';

const TABLE = 'bench_s3';
const TICKS_PER_SECOND = 50;
const FRACTIONS = [0.25, 0.5, 0.75];

interface Phase {
  rate: number;
  startMs: number;
  endMs: number;
  events: number;
}

/** Inserts at `rate` rows/s for `seconds`: one transaction per 20 ms tick holding the rows due by then. */
async function steadyLoad(client: PgClient, rate: number, seconds: number, firstId: number): Promise<Phase> {
  const startMs = Date.now();
  const started = performance.now();
  let sent = 0;
  for (let tick = 1; ; tick++) {
    const elapsed = (performance.now() - started) / 1000;
    if (elapsed >= seconds) break;
    const due = Math.floor(rate * elapsed) - sent;
    if (due > 0) {
      await insertRows(client, TABLE, firstId + sent, due);
      sent += due;
    }
    const wait = started + (tick * 1000) / TICKS_PER_SECOND - performance.now();
    if (wait > 0) await sleep(wait);
  }
  return { rate, startMs, endMs: Date.now(), events: sent };
}

interface Runner {
  label: string;
  topic: string;
  /**
   * The tool's process, a way to learn that it failed while its process lives on, and (nanosync)
   * the heap sampler's file, which says where its main thread's time went.
   */
  start(): Promise<{ tool: Tool; failure?: () => string | undefined; heapFile?: string }>;
}

/**
 * Whether the tail comes from a few stalls or from steady queueing: the highest latency per
 * second of the phase (by commit time), the five worst seconds as `second:ms`, and how many
 * seconds had any event over 100 ms.
 */
export function stallSeconds(
  samples: readonly { committedAtMs: number; arrivedAtMs: number }[],
  startMs: number,
): { worstSeconds: string[]; secondsOver100Ms: number; seconds: number } {
  const worst = new Map<number, number>();
  for (const s of samples) {
    const second = Math.floor((s.committedAtMs - startMs) / 1000);
    const ms = s.arrivedAtMs - s.committedAtMs;
    if (ms > (worst.get(second) ?? Number.NEGATIVE_INFINITY)) worst.set(second, ms);
  }
  const sorted = [...worst].sort((a, b) => b[1] - a[1]);
  return {
    worstSeconds: sorted.slice(0, 5).map(([second, ms]) => `${second}:${Math.round(ms)}`),
    secondsOver100Ms: sorted.filter(([, ms]) => ms > 100).length,
    seconds: worst.size,
  };
}

/** Why waiting on a tool is pointless now: it exited, or reported a fatal error. */
function gone(tool: Tool, failure: (() => string | undefined) | undefined): string | undefined {
  if (tool.exit) return `exited (${tool.exit.code ?? tool.exit.signal}); log ${tool.logFile}`;
  return failure?.();
}

async function measureTool(
  ctx: BenchContext,
  runner: Runner,
  rates: number[],
  nextId: { value: number },
): Promise<Measurement[]> {
  const client = await connect(ctx.pgUrl);
  const before = await slotNames(client);
  let tool: Tool | undefined;
  const collector = new LatencyCollector(ctx.kafka, runner.topic);
  try {
    await createTopics(ctx, runner.topic);
    log(`S3: starting ${runner.label}`);
    const started = await runner.start();
    tool = started.tool;
    const running = tool;
    const stopped = () => gone(running, started.failure);
    await waitFor(
      `${runner.label} to create and use its slot`,
      async () => {
        const slot = await newSlot(client, before);
        return slot !== undefined && (await slotActive(client, slot));
      },
      {
        timeoutMs: 120_000,
        abort: stopped,
      },
    );
    // Warm-up at the lowest rate, not measured (JIT, connection pools, first topic metadata),
    // so the first phase does not pay for a cold start. The phases below only count their own commits.
    const warmup = await steadyLoad(client, rates[0] ?? 100, ctx.options.quick ? 1 : 5, nextId.value);
    nextId.value += warmup.events;
    await waitFor(
      `${runner.label} to deliver the warm-up`,
      async () => (await countMessages(ctx.admin, runner.topic)) >= warmup.events,
      {
        timeoutMs: 180_000,
        abort: stopped,
      },
    );
    // The consumer reads each phase only after the load ends: the broker stamped every arrival,
    // so reading later changes no latency, and reading meanwhile would take CPU from the tool on
    // the cores it shares with the writer, PostgreSQL and the broker (a JSON parse per event).
    await collector.start();
    const consumerCrashed = () => (collector.crashed ? `latency consumer crashed: ${collector.crashed}` : undefined);
    await waitFor(
      'the latency consumer to read the warm-up',
      () => collector.samples.length + collector.unparsed >= warmup.events || undefined,
      { timeoutMs: 60_000, abort: consumerCrashed },
    ).catch((error) => {
      if (collector.crashed) throw error;
    });
    collector.pause();
    const monitor = new ProcessTreeMonitor(running.pid).start();
    const out: Measurement[] = [];
    let delivered = await countMessages(ctx.admin, runner.topic);
    for (const rate of rates) {
      monitor.sample();
      const cpuBefore = monitor.usage().cpuSeconds;
      const machineBefore = machineCpuTicks();
      const phase = await steadyLoad(client, rate, ctx.options.latencySeconds, nextId.value);
      nextId.value += phase.events;
      const expected = delivered + phase.events;
      // A tool slower than the load drains its backlog here; give up only when it stops making progress.
      let seen = -1;
      let lastMove = performance.now();
      await waitFor(
        `${runner.label} to deliver the ${rate}/s phase`,
        async () => {
          const count = await countMessages(ctx.admin, runner.topic);
          if (count !== seen) {
            seen = count;
            lastMove = performance.now();
          }
          return count >= expected;
        },
        {
          timeoutMs: 30 * 60_000,
          intervalMs: 50,
          abort: () =>
            stopped() ??
            (performance.now() - lastMove > 60_000
              ? `no progress for 60 s at ${seen} of ${expected} messages`
              : undefined),
        },
      );
      delivered = expected;
      const deliveredAtMs = Date.now();
      const machineAfter = machineCpuTicks();
      monitor.sample();
      const usage = monitor.usage();
      const inPhase = () =>
        collector.samples.filter((s) => s.committedAtMs >= phase.startMs - 5 && s.committedAtMs <= phase.endMs + 5);
      collector.resume();
      await waitFor('the latency consumer to catch up', () => inPhase().length >= phase.events || undefined, {
        timeoutMs: 60_000,
        abort: consumerCrashed,
      }).catch((error) => {
        if (collector.crashed) throw error;
      });
      collector.pause();
      const samples = inPhase();
      if (samples.length < phase.events) {
        // Percentiles over part of a phase would hide its worst events: say what is missing instead.
        const reason = `the latency consumer read ${samples.length} of the phase's ${phase.events} events within 60 s of their delivery (${collector.unparsed} messages unparsed)`;
        log(`S3: ${runner.label} at ${rate}/s: ${reason}`);
        out.push(notAvailable(runner.label, reason, { targetRate: rate, events: phase.events }));
        continue;
      }
      const latencies = samples.map((s) => s.arrivedAtMs - s.committedAtMs);
      // Where the time goes, when the tool stamps its own processing time (Debezium): commit → connector → broker.
      const processed = samples.filter((s) => s.processedAtMs !== undefined);
      const breakdown =
        processed.length > 0
          ? {
              commitToToolP50Ms: percentile(
                processed.map((s) => (s.processedAtMs as number) - s.committedAtMs),
                50,
              ),
              toolToBrokerP50Ms: percentile(
                processed.map((s) => s.arrivedAtMs - (s.processedAtMs as number)),
                50,
              ),
            }
          : {};
      out.push({
        tool: runner.label,
        status: 'ok',
        targetRate: rate,
        events: phase.events,
        seconds: (phase.endMs - phase.startMs) / 1000,
        eventsPerSecond: phase.events / ((phase.endMs - phase.startMs) / 1000),
        latency: summarizeLatencies(latencies),
        peakRssBytes: usage.peakRssBytes,
        cpuSeconds: usage.cpuSeconds - cpuBefore,
        cpuSecondsPerMillion: cpuPerMillion(usage.cpuSeconds - cpuBefore, phase.events),
        details: {
          unparsedMessages: collector.unparsed,
          missingSamples: phase.events - latencies.length,
          ...breakdown,
          ...stallSeconds(samples, phase.startMs),
          // Load start → last event delivered: is the tail CPU starvation (the run-queue wait
          // of nanosync's main thread, every core busy), collection pauses or our own code?
          ...(machineBefore && machineAfter
            ? {
                machineBusyPercent: Math.round(
                  (100 * (machineAfter.busy - machineBefore.busy)) / (machineAfter.total - machineBefore.total),
                ),
              }
            : {}),
          loadAverage: Math.round(loadavg()[0]! * 10) / 10,
          ...(started.heapFile ? await timeBudget(started.heapFile, phase.startMs, deliveredAtMs) : {}),
        },
      });
      log(
        `S3: ${runner.label} at ${rate}/s: p50 ${out.at(-1)?.latency?.p50Ms?.toFixed(1)} ms, p99 ${out.at(-1)?.latency?.p99Ms?.toFixed(1)} ms` +
          ('commitToToolP50Ms' in breakdown
            ? ` (p50 commit → connector ${breakdown.commitToToolP50Ms?.toFixed(1)} ms, connector → broker ${breakdown.toolToBrokerP50Ms?.toFixed(1)} ms)`
            : '') +
          (out.at(-1)?.details?.runQueueWaitMsPerS !== undefined
            ? `; main thread per s: ${out.at(-1)?.details?.mainThreadCpuMsPerS} ms CPU, ${out.at(-1)?.details?.runQueueWaitMsPerS} ms waiting for a core, ${out.at(-1)?.details?.gcPauseMsPerS} ms GC; machine ${out.at(-1)?.details?.machineBusyPercent}% busy`
            : ''),
      );
    }
    monitor.stop();
    return out;
  } finally {
    await collector.stop();
    await stopTool(tool);
    await dropNewSlots(client, before).catch(() => {});
    await client.end().catch(() => {});
  }
}

export async function runS3(ctx: BenchContext): Promise<ScenarioResult> {
  const fallback = ctx.options.quick ? 2_000 : 5_000;
  const base = ctx.s2Rate ?? ctx.options.s3BaseRate ?? fallback;
  const rates = FRACTIONS.map((f) => Math.max(10, Math.round(base * f)));
  const result: ScenarioResult = {
    id: 'S3',
    title: 'Latency under steady load: source commit → broker arrival',
    parameters: { baseRate: Math.round(base), rates: rates.join('/'), secondsPerRate: ctx.options.latencySeconds },
    measurements: [],
    ratios: [],
    notes: [
      ctx.s2Rate
        ? 'Rates are 25/50/75% of nanosync’s S2 drain rate (100-change transactions), the same for both tools.'
        : ctx.options.s3BaseRate
          ? `S2 did not run: loads are 25/50/75% of ${ctx.options.s3BaseRate}/s (--s3-base-rate).`
          : `S2 did not give a rate: loads are 25/50/75% of ${fallback}/s.`,
      'Latency = broker append time (topic with message.timestamp.type=LogAppendTime) − commit time carried in the event (nanosync `_ns_committed_at`, Debezium `source.ts_us`); ms resolution on the broker side. CPU s / M events is the phase’s own.',
    ],
  };
  const client = await connect(ctx.pgUrl);
  try {
    await createChangeTable(client, TABLE);
  } finally {
    await client.end();
  }
  const nextId = { value: 1 };

  const nsLabel = 'nanosync → Kafka (json)';
  const nsReason = nanosyncUnavailableReason('kafka');
  let nsResults: Measurement[];
  if (nsReason) nsResults = rates.map((rate) => notAvailable(nsLabel, nsReason, { targetRate: rate }));
  else {
    const topic = `ns_s3_${ctx.runId}`;
    const runner: Runner = {
      label: nsLabel,
      topic,
      start: async () => {
        const heapFile = join(ctx.workRoot, 'ns-s3', 'heap.jsonl');
        const ns = await startNanosync({
          heapFile,
          name: `bench-s3-${ctx.runId}`,
          pgUrl: ctx.pgUrl,
          table: `public.${TABLE}`,
          replicationType: 'cdc',
          sink: { kind: 'kafka', brokers: ctx.brokers, topic, compression: ctx.producer.compression },
          workDir: join(ctx.workRoot, 'ns-s3'),
        });
        return { tool: ns.tool, failure: ns.failure, heapFile };
      },
    };
    nsResults = await measureTool(ctx, runner, rates, nextId).catch((error) =>
      rates.map((rate) => notAvailable(nsLabel, errorMessage(error), { targetRate: rate })),
    );
  }
  result.measurements.push(...nsResults);

  const dbzLabel = 'Debezium → Kafka (json)';
  const dbzReason = debeziumReason(ctx);
  let dbzResults: Measurement[];
  if (dbzReason) dbzResults = rates.map((rate) => notAvailable(dbzLabel, dbzReason, { targetRate: rate }));
  else {
    const jars = ctx.debezium as DebeziumJars;
    const spec = debeziumSpec(ctx, 's3', `public.${TABLE}`, 'no_data');
    const runner: Runner = {
      label: dbzLabel,
      topic: debeziumTopic(spec),
      start: async () => ({ tool: await startDebezium(jars, spec) }),
    };
    dbzResults = await measureTool(ctx, runner, rates, nextId).catch((error) =>
      rates.map((rate) => notAvailable(dbzLabel, errorMessage(error), { targetRate: rate })),
    );
  }
  result.measurements.push(...dbzResults);

  const ratios: Ratio[] = rates.map((rate, i) => {
    const ns = nsResults[i];
    const dbz = dbzResults[i];
    return {
      name: `p99 nanosync ÷ Debezium at ${rate}/s`,
      value: ratio(ns?.latency?.p99Ms, dbz?.latency?.p99Ms),
      reason: [ns, dbz].find((m) => m?.status === 'n/a')?.reason,
      meaning: 'tail latency of nanosync relative to Debezium at the same load (<1 = nanosync faster)',
    };
  });
  result.ratios.push(...ratios);
  const split = dbzResults.filter((m) => m.details?.commitToToolP50Ms !== undefined);
  if (split.length > 0) {
    const fmt = (v: unknown) => (typeof v === 'number' ? `${Math.round(v)}` : '?');
    result.notes.push(
      `Debezium p50 split (its envelope ts_us): commit → connector ${split.map((m) => fmt(m.details?.commitToToolP50Ms)).join('/')} ms, connector → broker ${split.map((m) => fmt(m.details?.toolToBrokerP50Ms)).join('/')} ms per rate; it runs with its defaults (poll.interval.ms 500, max.batch.size 2048).`,
    );
  }
  return result;
}
