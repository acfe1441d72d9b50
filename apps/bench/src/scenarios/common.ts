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
    ns = await startNanosync(spec);
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
