import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BenchContext } from '../context.js';
import { type DebeziumConnectorSpec, debeziumTopic, startDebezium } from '../debezium/connect.js';
import { countMessages, createTopic } from '../kafka.js';
import { measureUntil, type Progress } from '../measure.js';
import { type NanosyncPipelineSpec, type NanosyncProcess, startNanosync } from '../nanosync.js';
import { connect, dropSlotQuietly, type PgClient, slots } from '../pg.js';
import type { Measurement } from '../report.js';
import { cpuPerMillion } from '../stats.js';
import { errorMessage, log, type Tool } from '../util.js';

export function toMeasurement(
  tool: string,
  events: number,
  run: Awaited<ReturnType<typeof measureUntil>>,
  details?: Record<string, unknown>,
): Measurement {
  return {
    tool,
    status: 'ok',
    events,
    seconds: run.seconds,
    eventsPerSecond: events / run.seconds,
    startupSeconds: run.startupSeconds,
    peakRssBytes: run.usage.peakRssBytes,
    cpuSeconds: run.usage.cpuSeconds,
    cpuSecondsPerMillion: cpuPerMillion(run.usage.cpuSeconds, events),
    ...(details ? { details } : {}),
  };
}

/** Messages in the measured topic at completion (more than the events = duplicates were written). */
async function topicCount(
  ctx: BenchContext,
  details: Record<string, unknown> | undefined,
): Promise<{ messagesInTopic?: number }> {
  const topic = details?.topic;
  return typeof topic === 'string' ? { messagesInTopic: await countMessages(ctx.admin, topic) } : {};
}

/** Seconds of a run's heap file left out of its averages (start-up: modules loading, connections). */
const STARTUP_SECONDS = 10;

/**
 * The highest V8 heap (used, reserved and resident), off-heap (`external`, of which
 * `arrayBuffers`: Buffers), RSS, its anonymous and file-backed parts and glibc's main malloc
 * heap as the process itself reported them (workers/heap-sampler.mjs, every 500 ms): what the
 * peak RSS of the run is made of; and after start-up the average `heapTotal` and the lowest
 * `heapUsed` (the live data's floor). Empty when the sampler wrote nothing.
 */
export async function memoryPeaks(file: string): Promise<Record<string, number>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return {};
  }
  const peak = {
    heapUsed: 0,
    heapTotal: 0,
    external: 0,
    arrayBuffers: 0,
    rss: 0,
    v8Physical: 0,
    rssAnon: 0,
    rssFile: 0,
    brkHeap: 0,
  };
  // The main thread's CPU over the process's life (each line has its interval's share).
  let mainThreadCpuMs = 0;
  // After start-up: the average heapTotal and the lowest heapUsed (what the collections leave,
  // i.e. the live data). Both move far less between runs than the peaks, which are one moment.
  let heapTotalSum = 0;
  let samples = 0;
  let heapFloor = Number.POSITIVE_INFINITY;
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const s = JSON.parse(line) as Partial<typeof peak> & { cpuMs?: number; t?: number };
      for (const k of Object.keys(peak) as (keyof typeof peak)[]) peak[k] = Math.max(peak[k], s[k] ?? 0);
      if (typeof s.cpuMs === 'number' && Number.isFinite(s.cpuMs)) mainThreadCpuMs += s.cpuMs;
      if ((s.t ?? 0) > STARTUP_SECONDS && s.heapTotal !== undefined && s.heapUsed !== undefined) {
        heapTotalSum += s.heapTotal;
        samples++;
        heapFloor = Math.min(heapFloor, s.heapUsed);
      }
    } catch {
      // a line cut by the process's end
    }
  }
  if (peak.rss === 0) return {};
  const mb = (n: number) => Math.round(n / 1024 / 1024);
  return {
    peakHeapUsedMB: mb(peak.heapUsed),
    peakHeapTotalMB: mb(peak.heapTotal),
    peakExternalMB: mb(peak.external),
    peakArrayBuffersMB: mb(peak.arrayBuffers),
    peakOwnRssMB: mb(peak.rss),
    ...(samples > 0 ? { meanHeapTotalMB: mb(heapTotalSum / samples), heapFloorMB: mb(heapFloor) } : {}),
    ...(mainThreadCpuMs > 0 ? { mainThreadCpuSeconds: Math.round(mainThreadCpuMs / 10) / 100 } : {}),
    ...(peak.v8Physical > 0 ? { peakV8ResidentMB: mb(peak.v8Physical) } : {}),
    ...(peak.rssAnon > 0
      ? { peakRssAnonMB: mb(peak.rssAnon), peakRssFileMB: mb(peak.rssFile), peakMallocBrkHeapMB: mb(peak.brkHeap) }
      : {}),
  };
}

/**
 * Where the nanosync process's time went between `startMs` and `endMs` (wall clock), from the
 * heap sampler's lines: per second of the interval, its main thread's CPU, the time it was
 * runnable but waited for a core (run queue, from schedstat: CPU starvation), and V8's
 * collection pauses; the longest event-loop delay and collection pause; and the worst
 * 500 ms sample's run-queue wait. Empty without samples.
 */
export async function timeBudget(file: string, startMs: number, endMs: number): Promise<Record<string, number>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return {};
  }
  const sum = { cpuMs: 0, waitMs: 0, gcMs: 0 };
  let loopMaxMs = 0;
  let gcMaxMs = 0;
  let worstWaitMs = 0;
  let samples = 0;
  for (const line of text.split('\n')) {
    if (!line) continue;
    let s: Partial<Record<'at' | 'cpuMs' | 'waitMs' | 'gcMs' | 'gcMaxMs' | 'loopMaxMs', number>>;
    try {
      s = JSON.parse(line);
    } catch {
      continue; // a line cut by the process's end
    }
    if (s.at === undefined || s.at < startMs || s.at > endMs || s.waitMs === undefined) continue;
    samples++;
    sum.cpuMs += s.cpuMs ?? 0;
    sum.waitMs += s.waitMs;
    sum.gcMs += s.gcMs ?? 0;
    loopMaxMs = Math.max(loopMaxMs, s.loopMaxMs ?? 0);
    gcMaxMs = Math.max(gcMaxMs, s.gcMaxMs ?? 0);
    worstWaitMs = Math.max(worstWaitMs, s.waitMs);
  }
  if (samples === 0) return {};
  const perSecond = (ms: number) => Math.round((ms / (endMs - startMs)) * 1000);
  return {
    mainThreadCpuMsPerS: perSecond(sum.cpuMs),
    runQueueWaitMsPerS: perSecond(sum.waitMs),
    gcPauseMsPerS: perSecond(sum.gcMs),
    worstRunQueueWaitMsIn500Ms: Math.round(worstWaitMs),
    longestGcPauseMs: Math.round(gcMaxMs),
    longestLoopDelayMs: Math.round(loopMaxMs),
  };
}

/** Names of replication slots in the bench database right now. */
export async function slotNames(client: PgClient): Promise<Set<string>> {
  return new Set((await slots(client)).map((s) => s.slotName));
}

/** Drops the slots that appeared since `before` (after their tool stopped), so they do not pin WAL for the rest of the run. */
export async function dropNewSlots(client: PgClient, before: ReadonlySet<string>): Promise<void> {
  for (const slot of await slots(client)) {
    if (!before.has(slot.slotName)) await dropSlotQuietly(client, slot.slotName);
  }
}

/** Finds the slot a tool created: the one that was not there before. */
export async function newSlot(client: PgClient, before: ReadonlySet<string>): Promise<string | undefined> {
  return (await slots(client)).find((s) => !before.has(s.slotName))?.slotName;
}

export async function slotActive(client: PgClient, slot: string | undefined): Promise<boolean> {
  if (!slot) return false;
  return (await slots(client)).some((s) => s.slotName === slot && s.active);
}

export async function stopTool(tool: Tool | undefined): Promise<void> {
  if (!tool) return;
  await tool.stop(20_000).catch((error) => log(`stopping ${tool.name}: ${errorMessage(error)}`));
}

export function debeziumSpec(
  ctx: BenchContext,
  name: string,
  table: string,
  snapshotMode: DebeziumConnectorSpec['snapshotMode'],
): DebeziumConnectorSpec {
  const id = `${name}_${ctx.runId}`.replaceAll('-', '_');
  return {
    name: id,
    pgUrl: ctx.pgUrl,
    brokers: ctx.brokers,
    table,
    topicPrefix: `dbz_${id}`,
    slot: `dbz_${id}`,
    publication: `dbz_${id}`,
    snapshotMode,
    snapshotThreads: ctx.cores,
    producer: ctx.producer,
    workDir: join(ctx.workRoot, `debezium-${id}`),
  };
}

/** Runs one tool from spawn until `check` is done, then stops it; the slots it created are dropped unless `keepSlots`. */
export async function runNanosyncMeasured(
  ctx: BenchContext,
  label: string,
  spec: NanosyncPipelineSpec,
  events: number,
  check: (client: PgClient, ns: NanosyncProcess) => Promise<Progress>,
  opts: {
    started?: (client: PgClient, slotsBefore: Set<string>) => Promise<boolean>;
    details?: Record<string, unknown>;
  } = {},
): Promise<Measurement> {
  const client = await connect(ctx.pgUrl);
  const before = await slotNames(client);
  let ns: NanosyncProcess | undefined;
  try {
    log(`${label}: starting nanosync (${spec.name})`);
    const heapFile = spec.heapFile ?? join(spec.workDir, 'heap.jsonl');
    ns = await startNanosync({ ...spec, heapFile });
    const running = ns;
    const run = await measureUntil({
      tool: running.tool,
      check: () => check(client, running),
      started: opts.started ? () => opts.started!(client, before) : undefined,
      abort: running.failure,
    });
    log(`${label}: nanosync done in ${run.seconds.toFixed(2)} s`);
    return toMeasurement(label, events, run, {
      ...opts.details,
      ...(await topicCount(ctx, opts.details)),
      ...(await memoryPeaks(heapFile)),
      log: running.tool.logFile,
    });
  } finally {
    await stopTool(ns?.tool);
    await dropNewSlots(client, before).catch(() => {});
    await client.end().catch(() => {});
  }
}

export async function runDebeziumMeasured(
  ctx: BenchContext,
  label: string,
  spec: DebeziumConnectorSpec,
  events: number,
  check: (client: PgClient) => Promise<Progress>,
  opts: {
    keepSlot?: boolean;
    details?: Record<string, unknown>;
    started?: (client: PgClient) => Promise<boolean>;
  } = {},
): Promise<Measurement> {
  if ('unavailable' in ctx.debezium) throw new Error(ctx.debezium.unavailable);
  const client = await connect(ctx.pgUrl);
  const before = await slotNames(client);
  let tool: Tool | undefined;
  try {
    log(`${label}: starting Kafka Connect + Debezium (${spec.name})`);
    tool = await startDebezium(ctx.debezium, spec);
    const running = tool;
    const started = opts.started ?? ((c: PgClient) => slotActive(c, spec.slot));
    const run = await measureUntil({ tool: running, check: () => check(client), started: () => started(client) });
    log(`${label}: Debezium done in ${run.seconds.toFixed(2)} s`);
    return toMeasurement(label, events, run, {
      ...opts.details,
      ...(await topicCount(ctx, opts.details)),
      log: join(spec.workDir, 'connect.log'),
    });
  } finally {
    await stopTool(tool);
    if (!opts.keepSlot) await dropNewSlots(client, before).catch(() => {});
    await client.end().catch(() => {});
  }
}

export async function createTopics(ctx: BenchContext, ...topics: string[]): Promise<void> {
  for (const topic of topics) await createTopic(ctx.admin, topic);
}

export { debeziumTopic };
