import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { S5Tool } from '../args.js';
import { type BenchContext, debeziumReason } from '../context.js';
import { type DebeziumConnectorSpec, startDebezium } from '../debezium/connect.js';
import { countMessages } from '../kafka.js';
import { measureUntil, type RunMeasurement } from '../measure.js';
import { type NanosyncPipelineSpec, nanosyncUnavailableReason, startNanosync } from '../nanosync.js';
import { connect, createSnapshotTable, type PgClient, rowValues } from '../pg.js';
import type { Measurement, Ratio, ScenarioResult } from '../report.js';
import { notAvailable } from '../report.js';
import { cpuPerMillion, ratio } from '../stats.js';
import { errorMessage, log, sleep, tailOf, type Tool } from '../util.js';
import { createTopics, debeziumSpec, debeziumTopic, dropNewSlots, slotNames, stopTool } from './common.js';

const TABLE = 'bench_s5';
const SIGNAL_TABLE = 'bench_s5_dbz_signal';

/**
 * A writer at a fixed rate against the table being snapshotted: every 50 ms one transaction
 * that updates and deletes random existing keys (keys the snapshot is reading or will read)
 * and inserts as many new rows as it deleted, so the table keeps its size.
 * Mix per 10 changes: 5 updates, 2½ deletes, 2½ inserts.
 */
class FixedRateWriter {
  private running = false;
  private loop: Promise<void> | undefined;
  private nextId: number;
  changes = 0;
  transactions = 0;
  private startedAt = 0;
  private stoppedAt = 0;
  error: string | undefined;

  constructor(
    private readonly url: string,
    private readonly table: string,
    private readonly rate: number,
    private readonly maxKey: number,
  ) {
    this.nextId = maxKey + 1;
  }

  async start(): Promise<void> {
    const client = await connect(this.url);
    await client.query('SET synchronous_commit = off');
    this.running = true;
    this.startedAt = performance.now();
    const tickMs = 50;
    const perTick = Math.max(1, this.rate * (tickMs / 1000));
    this.loop = (async () => {
      let due = performance.now();
      let owed = 0;
      try {
        while (this.running) {
          owed += perTick;
          const n = Math.floor(owed);
          owed -= n;
          if (n > 0) {
            const updates = Math.ceil(n / 2);
            const deletes = Math.floor((n - updates) / 2);
            const inserts = n - updates - deletes;
            const keys = new Set<number>();
            while (keys.size < updates + deletes) keys.add(1 + Math.floor(Math.random() * this.maxKey));
            const list = [...keys];
            const first = this.nextId;
            this.nextId += inserts;
            await client.query(
              `WITH u AS (UPDATE ${this.table} SET b1 = b1 + 1, f1 = random(), s1 = substr(md5(random()::text), 1, 20)
                           WHERE id = ANY($1::bigint[]) RETURNING 1),
                    d AS (DELETE FROM ${this.table} WHERE id = ANY($2::bigint[]) RETURNING 1)
               INSERT INTO ${this.table} SELECT g, ${rowValues('g')} FROM generate_series($3::bigint, $4::bigint) g`,
              [list.slice(0, updates), list.slice(updates), first, first + inserts - 1],
            );
            this.changes += n;
            this.transactions++;
          }
          due += tickMs;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait);
          else if (wait < -1000) due = performance.now(); // fell behind by more than a second: do not burst
        }
      } catch (error) {
        this.error = errorMessage(error);
      } finally {
        await client.end().catch(() => {});
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.stoppedAt = performance.now();
  }

  /** Changes per second actually written so far. */
  achievedRate(): number {
    const end = this.stoppedAt || performance.now();
    return this.changes / Math.max(0.001, (end - this.startedAt) / 1000);
  }
}

interface SlotSample {
  retained: bigint;
  unconfirmed: bigint;
  confirmed: bigint;
  current: bigint;
}

async function slotSample(client: PgClient, slot: string): Promise<SlotSample | undefined> {
  const { rows } = await client.query<{ retained: string; unconfirmed: string; confirmed: string; current: string }>(
    `SELECT (pg_current_wal_lsn() - restart_lsn)::bigint::text AS retained,
            (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint::text AS unconfirmed,
            (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint::text AS confirmed,
            (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint::text AS current
       FROM pg_replication_slots WHERE slot_name = $1 AND restart_lsn IS NOT NULL`,
    [slot],
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    retained: BigInt(row.retained),
    unconfirmed: BigInt(row.unconfirmed ?? '0'),
    confirmed: BigInt(row.confirmed ?? '0'),
    current: BigInt(row.current),
  };
}

/** What one tool's run is watched for: its slot, and when its snapshot is over. */
interface Watch {
  /** The tool's slot name, once it exists. */
  slot(client: PgClient): Promise<string | undefined>;
  snapshotDone(): Promise<boolean>;
  /** A number that grows while the tool works (stall detection). */
  progress(): Promise<number>;
  /** Called once the slot is active (Debezium: send the snapshot signal). */
  onStreaming?(client: PgClient): Promise<void>;
}

interface S5Run {
  run: RunMeasurement;
  snapshotSeconds: number;
  peakRetainedWalBytes: number;
  walBehindAtEndBytes: number;
  catchUpSeconds: number;
  retainedTimeline: [number, number][];
}

/**
 * Runs `tool` until its snapshot is over and its slot has confirmed everything written up to
 * that moment, sampling the slot every 500 ms: peak retained WAL (current LSN − restart_lsn),
 * the WAL not yet confirmed when the snapshot ended, and how long it then took to catch up.
 */
async function watchRun(ctx: BenchContext, tool: Tool, watch: Watch, abort?: () => string | undefined): Promise<S5Run> {
  const client = await connect(ctx.pgUrl);
  let slot: string | undefined;
  let streaming = false;
  let peak = 0n;
  let snapshotAt: number | undefined;
  let endLsn: bigint | undefined;
  let behindAtEnd = 0n;
  let caughtUpAt: number | undefined;
  let lastSample = 0;
  let confirmed = 0;
  const timeline: [number, number][] = [];
  try {
    const run = await measureUntil({
      tool,
      abort,
      intervalMs: 250,
      stallMs: 300_000,
      started: async () => slot !== undefined,
      check: async () => {
        slot ??= await watch.slot(client);
        const now = performance.now();
        let sample: SlotSample | undefined;
        if (slot !== undefined && now - lastSample >= 500) {
          lastSample = now;
          sample = await slotSample(client, slot);
          if (sample) {
            confirmed = Number(sample.confirmed);
            if (sample.retained > peak) peak = sample.retained;
            timeline.push([Math.round((now - tool.startedAt) / 100) / 10, Number(sample.retained)]);
          }
        }
        if (slot !== undefined && !streaming) {
          const { rows } = await client.query<{ active: boolean }>(
            'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
            [slot],
          );
          if (rows[0]?.active) {
            streaming = true;
            await watch.onStreaming?.(client);
          }
        }
        if (snapshotAt === undefined && streaming && (await watch.snapshotDone())) {
          snapshotAt = performance.now();
          const s = slot ? await slotSample(client, slot) : undefined;
          endLsn = s?.current;
          behindAtEnd = s?.unconfirmed ?? 0n;
        }
        if (snapshotAt !== undefined && caughtUpAt === undefined && slot !== undefined) {
          const s = sample ?? (await slotSample(client, slot));
          if (s && endLsn !== undefined && s.confirmed >= endLsn) caughtUpAt = performance.now();
        }
        const p = (await watch.progress()) + (snapshotAt === undefined ? 0 : 1);
        return { progress: p + confirmed, done: caughtUpAt !== undefined };
      },
    });
    return {
      run,
      snapshotSeconds: ((snapshotAt ?? 0) - tool.startedAt) / 1000,
      peakRetainedWalBytes: Number(peak),
      walBehindAtEndBytes: Number(behindAtEnd),
      catchUpSeconds: ((caughtUpAt ?? 0) - (snapshotAt ?? 0)) / 1000,
      retainedTimeline: thin(timeline, 40),
    };
  } finally {
    await client.end().catch(() => {});
  }
}

/** At most `n` points of a timeline, evenly spread, the peak kept. */
function thin(points: [number, number][], n: number): [number, number][] {
  if (points.length <= n) return points;
  const step = points.length / n;
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) out.push(points[Math.floor(i * step)]!);
  const peak = points.reduce((a, b) => (b[1] > a[1] ? b : a));
  if (!out.includes(peak)) out.push(peak);
  return out.sort((a, b) => a[0] - b[0]);
}

interface HeapSample {
  t: number;
  heapUsed: number;
  rss: number;
  external: number;
  arrayBuffers: number;
}

async function heapSamples(file: string): Promise<HeapSample[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as HeapSample);
}

function toS5Measurement(label: string, rows: number, r: S5Run, details: Record<string, unknown>): Measurement {
  return {
    tool: label,
    status: 'ok',
    events: rows,
    seconds: r.run.seconds,
    startupSeconds: r.run.startupSeconds,
    peakRssBytes: r.run.usage.peakRssBytes,
    cpuSeconds: r.run.usage.cpuSeconds,
    cpuSecondsPerMillion: cpuPerMillion(r.run.usage.cpuSeconds, rows),
    snapshotSeconds: r.snapshotSeconds,
    peakRetainedWalBytes: r.peakRetainedWalBytes,
    walBehindAtEndBytes: r.walBehindAtEndBytes,
    catchUpSeconds: r.catchUpSeconds,
    details: { ...details, retainedWalTimeline: r.retainedTimeline },
  };
}

async function runNanosync(ctx: BenchContext, mode: 'concurrent' | 'blocking', rows: number): Promise<Measurement> {
  const label = `nanosync → Kafka (${mode})`;
  const reason = nanosyncUnavailableReason('kafka');
  if (reason) return notAvailable(label, reason);
  const topic = `ns_s5_${mode}_${ctx.runId}`;
  const workDir = join(ctx.workRoot, `ns-s5-${mode}`);
  const heapFile = join(workDir, 'heap.jsonl');
  const spec: NanosyncPipelineSpec = {
    name: `bench-s5-${mode}-${ctx.runId}`,
    pgUrl: ctx.pgUrl,
    table: `public.${TABLE}`,
    replicationType: 'cdc_backfill',
    snapshotMode: mode,
    sink: { kind: 'kafka', brokers: ctx.brokers, topic, compression: ctx.producer.compression },
    workDir,
    heapFile,
  };
  const client = await connect(ctx.pgUrl);
  const before = await slotNames(client);
  let ns: Awaited<ReturnType<typeof startNanosync>> | undefined;
  try {
    await createTopics(ctx, topic);
    log(`S5: nanosync, snapshot.mode ${mode}`);
    ns = await startNanosync(spec);
    const running = ns;
    let rowsRead = 0;
    const r = await watchRun(
      ctx,
      running.tool,
      {
        slot: async (c) => {
          const { rows: found } = await c.query<{ slot_name: string }>(
            'SELECT slot_name FROM pg_replication_slots WHERE database = current_database()',
          );
          return found.map((s) => s.slot_name).find((s) => !before.has(s));
        },
        snapshotDone: async () => {
          const status = await running.status();
          const snap = status?.snapshot as { done?: boolean; partitionsTotal?: number; rowsRead?: number } | undefined;
          rowsRead = snap?.rowsRead ?? rowsRead;
          return snap !== undefined && (snap.partitionsTotal ?? 0) > 0 && snap.done === true;
        },
        progress: async () => rowsRead + (await countMessages(ctx.admin, topic)),
      },
      running.failure,
    );
    const heap = await heapSamples(heapFile);
    const peakHeap = heap.reduce((m, s) => Math.max(m, s.heapUsed), 0);
    const peakRss = heap.reduce((m, s) => Math.max(m, s.rss), 0);
    const m = toS5Measurement(label, rows, r, {
      topic,
      messagesInTopic: await countMessages(ctx.admin, topic),
      log: running.tool.logFile,
      heapTimeline: thinHeap(heap, 40),
      peakHeapUsedBytes: peakHeap,
      peakProcessRssBytes: peakRss,
    });
    m.peakHeapBytes = peakHeap;
    return m;
  } catch (error) {
    return notAvailable(label, errorMessage(error));
  } finally {
    await stopTool(ns?.tool);
    await dropNewSlots(client, before).catch(() => {});
    await client.end().catch(() => {});
  }
}

function thinHeap(samples: HeapSample[], n: number): [number, number, number][] {
  const points = samples.map((s) => [s.t, s.heapUsed] as [number, number]);
  const kept = new Set(thin(points, n).map((p) => p[0]));
  return samples.filter((s) => kept.has(s.t)).map((s) => [Math.round(s.t), s.heapUsed, s.rss]);
}

/**
 * Debezium's incremental snapshot (DBLog-style watermarks, chunks of
 * incremental.snapshot.chunk.size rows), requested through a signal table once the
 * connector streams; falls back to its blocking initial snapshot when that cannot run.
 */
async function runDebezium(ctx: BenchContext, rows: number): Promise<Measurement> {
  const reason = debeziumReason(ctx);
  if (reason) return notAvailable('Debezium → Kafka', reason);
  const client = await connect(ctx.pgUrl);
  try {
    await client.query(`DROP TABLE IF EXISTS ${SIGNAL_TABLE}`);
    await client.query(
      `CREATE TABLE ${SIGNAL_TABLE} (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048))`,
    );
  } finally {
    await client.end().catch(() => {});
  }
  const incremental = await runDebeziumMode(ctx, rows, 'incremental');
  if (incremental.status === 'ok') return incremental;
  log(`S5: Debezium incremental snapshot failed (${incremental.reason}); running its blocking snapshot instead`);
  const blocking = await runDebeziumMode(ctx, rows, 'initial');
  if (blocking.status === 'ok') {
    blocking.details = { ...blocking.details, incrementalFailed: incremental.reason };
  }
  return blocking;
}

async function runDebeziumMode(ctx: BenchContext, rows: number, mode: 'incremental' | 'initial'): Promise<Measurement> {
  const label = `Debezium → Kafka (${mode === 'incremental' ? 'incremental snapshot, signal table' : 'blocking initial snapshot'})`;
  const base = debeziumSpec(ctx, `s5_${mode}`, `public.${TABLE}`, mode === 'incremental' ? 'no_data' : 'initial');
  const spec: DebeziumConnectorSpec =
    mode === 'incremental' ? { ...base, signalTable: `public.${SIGNAL_TABLE}` } : base;
  const topic = debeziumTopic(spec);
  const logFile = join(spec.workDir, 'connect.log');
  const client = await connect(ctx.pgUrl);
  const before = await slotNames(client);
  let tool: Tool | undefined;
  try {
    await createTopics(ctx, topic);
    log(`S5: Debezium, ${mode} snapshot`);
    tool = await startDebezium(ctx.debezium as Exclude<BenchContext['debezium'], { unavailable: string }>, spec);
    const running = tool;
    const done =
      mode === 'incremental'
        ? /incremental snapshotting of table '?[^']*bench_s5'? finished|Incremental snapshot.*(?:completed|finished)/i
        : /Snapshot ended with SnapshotResult \[status=COMPLETED|Snapshot completed/i;
    const failed = /ERROR .*(?:WorkerSourceTask|Task threw|Failed to process signal|incremental)/i;
    let failure: string | undefined;
    const r = await watchRun(
      ctx,
      running,
      {
        slot: async () => spec.slot,
        snapshotDone: async () => {
          const text = await readFile(logFile, 'utf8').catch(() => '');
          if (failed.test(text)) failure = (await tailOf(logFile, 3)).slice(0, 300);
          return done.test(text);
        },
        progress: async () => countMessages(ctx.admin, topic),
        onStreaming:
          mode === 'incremental'
            ? async (c) => {
                await sleep(1_000);
                await c.query(`INSERT INTO ${SIGNAL_TABLE} VALUES ($1, 'execute-snapshot', $2)`, [
                  `s5-${ctx.runId}`,
                  JSON.stringify({ 'data-collections': [`public.${TABLE}`], type: 'incremental' }),
                ]);
              }
            : undefined,
      },
      () => failure,
    );
    return toS5Measurement(label, rows, r, {
      topic,
      messagesInTopic: await countMessages(ctx.admin, topic),
      log: logFile,
      snapshot: mode,
    });
  } catch (error) {
    return notAvailable(label, errorMessage(error));
  } finally {
    await stopTool(tool);
    await dropNewSlots(client, before).catch(() => {});
    await client.end().catch(() => {});
  }
}

export async function runS5(ctx: BenchContext): Promise<ScenarioResult> {
  const rows = ctx.options.rows;
  const rate = ctx.options.s5Rate;
  const tools = ctx.options.s5Tools;
  const result: ScenarioResult = {
    id: 'S5',
    title: 'Snapshot while a writer changes the table: concurrent and blocking snapshots',
    parameters: { rows, writerRate: rate },
    measurements: [],
    ratios: [],
    notes: [
      'snapshot s = process start → snapshot over (nanosync: every partition durable in the sink; Debezium: its log says the snapshot finished).',
      'peak WAL = highest pg_current_wal_lsn() − restart_lsn of the tool’s slot, sampled every 500 ms; behind at end = WAL not confirmed by the slot when the snapshot ended; catch-up s = from then until the slot confirmed everything written up to that moment.',
      'The writer (per 10 changes: 5 updates, 2½ deletes, 2½ inserts; the updated and deleted keys random over the whole table) runs through every tool’s run; tools run one at a time on the same table, which it keeps changing.',
    ],
  };
  const client = await connect(ctx.pgUrl);
  try {
    log(`S5: generating ${rows.toLocaleString('en-US')} rows`);
    const started = performance.now();
    const { bytes } = await createSnapshotTable(client, TABLE, rows);
    result.parameters.tableMB = Math.round(bytes / 1024 / 1024);
    result.parameters.generateSeconds = Math.round((performance.now() - started) / 100) / 10;
  } finally {
    await client.end();
  }
  const writer = new FixedRateWriter(ctx.pgUrl, TABLE, rate, rows);
  await writer.start();
  const byTool = new Map<S5Tool, Measurement>();
  try {
    for (const tool of tools) {
      const m =
        tool === 'debezium'
          ? await runDebezium(ctx, rows)
          : await runNanosync(ctx, tool, rows).catch((error) =>
              notAvailable(`nanosync → Kafka (${tool})`, errorMessage(error)),
            );
      if (writer.error) m.details = { ...m.details, writerError: writer.error };
      byTool.set(tool, m);
      result.measurements.push(m);
    }
  } finally {
    await writer.stop();
  }
  result.parameters.writerAchievedRate = Math.round(writer.achievedRate());
  result.parameters.writerChanges = writer.changes;
  if (writer.error) result.notes.push(`The writer stopped early: ${writer.error}`);

  const ok = (t: S5Tool) => {
    const m = byTool.get(t);
    return m?.status === 'ok' ? m : undefined;
  };
  const why = (...ts: S5Tool[]) =>
    ts.map((t) => byTool.get(t)).find((m) => m === undefined || m.status === 'n/a')?.reason ?? 'not run (--s5-tools)';
  const pair = (name: string, a: S5Tool, b: S5Tool, pick: (m: Measurement) => number | undefined, meaning: string) => {
    const ma = ok(a);
    const mb = ok(b);
    const r: Ratio = { name, meaning, value: ma && mb ? ratio(pick(ma), pick(mb)) : undefined };
    if (r.value === undefined) r.reason = why(a, b);
    return r;
  };
  result.ratios.push(
    pair(
      'peak retained WAL concurrent ÷ blocking',
      'concurrent',
      'blocking',
      (m) => m.peakRetainedWalBytes,
      'WAL the slot pins during the snapshot with the stream running alongside, over the blocking snapshot (<1 = less)',
    ),
    pair(
      'WAL behind at snapshot end concurrent ÷ blocking',
      'concurrent',
      'blocking',
      (m) => Math.max(1, m.walBehindAtEndBytes ?? 0),
      'backlog left when the snapshot ends (<1 = consumers live sooner)',
    ),
    pair(
      'snapshot seconds concurrent ÷ blocking',
      'concurrent',
      'blocking',
      (m) => m.snapshotSeconds,
      'price of reading between watermarks while streaming (>1 = the concurrent snapshot takes longer)',
    ),
    pair(
      'snapshot seconds nanosync concurrent ÷ Debezium',
      'concurrent',
      'debezium',
      (m) => m.snapshotSeconds,
      'same table and writer (<1 = nanosync faster)',
    ),
    pair(
      'peak retained WAL nanosync concurrent ÷ Debezium',
      'concurrent',
      'debezium',
      (m) => m.peakRetainedWalBytes,
      'WAL pinned by each tool’s slot during its snapshot (<1 = nanosync pins less)',
    ),
  );
  return result;
}
