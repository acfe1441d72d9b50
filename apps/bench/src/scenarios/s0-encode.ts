import { OrderedWorkerPool, type PoolTask } from '@nanosync/core/host';
import type { MessageFormat } from '@nanosync/sink-kafka';
import type { BenchOptions } from '../args.js';
import { type Measurement, notAvailable, type ScenarioResult } from '../report.js';
import {
  type BareEvent,
  consumeFramed,
  copyChunk,
  decodeChunk,
  decodeMessages,
  encodeFramed,
  insertMessages,
  packMessages,
  type S0Design,
  type S0Task,
  s0Position,
  s1Relation,
  s1Table,
  widen,
} from '../s0-rows.js';
import { cpuPerMillion, ratio } from '../stats.js';
import { errorMessage, log } from '../util.js';

const WORKER = new URL('../workers/s0-encode-worker.js', import.meta.url);
const ROWS_PER_CHUNK = 1_000;
/** Bytes of chunks one worker may hold (the pool's bound): a few chunks of about 150 KB each. */
const BYTES_PER_WORKER = 1024 * 1024;
const FORMATS: readonly MessageFormat[] = ['json', 'avro'];
const DESIGNS: readonly S0Design[] = ['clone', 'transfer', 'own', 'stream'];
/** What a design's run is compared with: the snapshot path inline, or the stream path inline. */
type Shape = 'snapshot' | 'stream';
const shapeOf = (design: S0Design): Shape => (design === 'stream' ? 'stream' : 'snapshot');
const SHAPES: readonly Shape[] = ['snapshot', 'stream'];
const WORKER_COUNTS = [1, 2, 4] as const;
/** Chunks each timed run sends through first, untimed: the workers' code compiles on first use. */
const WARM_UP_CHUNKS = 20;
/** Columns of S0's wide rows (json, inline only): S1's 16 is just below where V8 stops keeping objects built column by column fast. */
const WIDE_COLUMNS = 40;

const DESIGN_WORDS: Record<S0Design, string> = {
  clone: 'main decodes, events cloned to workers, workers encode',
  transfer: 'COPY bytes moved to workers, workers decode and encode',
  own: 'workers have their own rows, decode and encode',
  stream: 'pgoutput Insert messages packed and moved to workers, workers decode and encode',
};

interface RunResult {
  records: number;
  bytes: number;
  seconds: number;
  cpuSeconds: number;
  mainCpuSeconds: number;
}

/** CPU of the calling thread only (Node ≥ 23.9), else undefined. */
function threadCpuSeconds(): number | undefined {
  const fn = (process as { threadCpuUsage?: () => { user: number; system: number } }).threadCpuUsage;
  if (!fn) return undefined;
  const usage = fn.call(process);
  return (usage.user + usage.system) / 1e6;
}

async function timed(work: () => Promise<{ records: number; bytes: number }>): Promise<RunResult> {
  const cpu0 = process.cpuUsage();
  const main0 = threadCpuSeconds() ?? Number.NaN;
  const t0 = performance.now();
  const { records, bytes } = await work();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const main1 = threadCpuSeconds() ?? Number.NaN;
  return { records, bytes, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, mainCpuSeconds: main1 - main0 };
}

/** The rows of a run, made before any clock starts: COPY text per chunk, and the same rows as pgoutput Insert messages. */
interface Input {
  chunks: Buffer[];
  messages: Buffer[][];
}

const slice = (input: Input, count: number): Input => ({
  chunks: input.chunks.slice(0, count),
  messages: input.messages.slice(0, count),
});

function inline(
  input: Input,
  format: MessageFormat,
  shape: Shape,
  table = s1Table(),
): Promise<{ records: number; bytes: number }> {
  const relation = s1Relation(table);
  let records = 0;
  let bytes = 0;
  for (let i = 0; i < input.chunks.length; i++) {
    const events =
      shape === 'stream'
        ? decodeMessages(input.messages[i]!, relation, s0Position(i))
        : decodeChunk(input.chunks[i]!, table, s0Position(i));
    const sunk = consumeFramed(encodeFramed(events, format));
    records += sunk.records;
    bytes += sunk.bytes;
  }
  return Promise.resolve({ records, bytes });
}

function* tasksFor(
  design: S0Design,
  format: MessageFormat,
  input: Input,
  moved: ArrayBuffer[],
): Generator<PoolTask<S0Task>> {
  const table = design === 'clone' ? s1Table() : undefined;
  for (let i = 0; i < input.chunks.length; i++) {
    const bytes = input.chunks[i]!.length;
    if (design === 'clone') {
      const events: BareEvent[] = decodeChunk(input.chunks[i]!, table!, s0Position(i)).map(
        ({ op, key, after, position }) => (after ? { op, key, after, position } : { op, key, position }),
      );
      yield { task: { format, events }, bytes };
    } else if (design === 'transfer') {
      const copy = moved[i]!;
      yield { task: { format, copy, position: s0Position(i) }, transfer: [copy], bytes };
    } else if (design === 'stream') {
      // Packing the messages as they arrive is the main thread's share of the stream design: timed.
      const packed = packMessages(input.messages[i]!);
      yield { task: { format, messages: packed, position: s0Position(i) }, transfer: [packed], bytes };
    } else yield { task: { format, chunk: i }, bytes, shard: i };
  }
}

type S0Pool = OrderedWorkerPool<S0Task, ArrayBuffer, undefined>;

/** One pool per worker count, its workers holding their own chunks for the `own` design. */
async function startPool(workers: number, chunks: number): Promise<S0Pool> {
  const pool = await OrderedWorkerPool.start<S0Task, ArrayBuffer, undefined>({
    name: 's0-encode',
    module: WORKER,
    size: workers,
    data: undefined,
    maxBytesPerWorker: BYTES_PER_WORKER,
  });
  const prepare = Array.from({ length: workers }, (_, shard) => ({
    task: { prepare: { chunks, rowsPerChunk: ROWS_PER_CHUNK } },
    bytes: 0,
    shard,
  }));
  for await (const _ of pool.map(prepare));
  return pool;
}

async function pooled(pool: S0Pool, design: S0Design, format: MessageFormat, input: Input): Promise<RunResult> {
  // The bytes a transfer run moves stand for what arrives from the socket: made before the clock starts.
  const movable = (list: readonly Buffer[]) =>
    design === 'transfer'
      ? list.map((c) => {
          const copy = new ArrayBuffer(c.length);
          new Uint8Array(copy).set(c);
          return copy;
        })
      : [];
  const run = async (part: Input, moved: ArrayBuffer[]) => {
    let records = 0;
    let bytes = 0;
    for await (const framed of pool.map(tasksFor(design, format, part, moved))) {
      const sunk = consumeFramed(new Uint8Array(framed));
      records += sunk.records;
      bytes += sunk.bytes;
    }
    return { records, bytes };
  };
  // Warm-up in the workers (their code compiles on first use), not timed.
  const warm = slice(input, Math.min(WARM_UP_CHUNKS, input.chunks.length));
  await run(warm, movable(warm.chunks));
  const moved = movable(input.chunks);
  return timed(() => run(input, moved));
}

function measurement(label: string, run: RunResult, details: Record<string, unknown>): Measurement {
  return {
    tool: label,
    status: 'ok',
    events: run.records,
    seconds: run.seconds,
    eventsPerSecond: run.records / run.seconds,
    cpuSeconds: run.cpuSeconds,
    cpuSecondsPerMillion: cpuPerMillion(run.cpuSeconds, run.records),
    details: { ...details, mainThreadCpuSecondsPerMillion: cpuPerMillion(run.mainCpuSeconds, run.records) },
  };
}

/**
 * S0: the in-process ceiling of encoding. S1-shaped rows as COPY text, decoded by the
 * PostgreSQL source's row decoder, encoded by the Kafka sink's key and message codecs, into
 * a null sink; no database, no broker. Inline (0 workers) and through core's worker pool at
 * 1, 2 and 4 workers, for three ways of handing the work to the workers.
 */
export async function runS0(options: BenchOptions, cores: number): Promise<ScenarioResult> {
  const rows = options.s0Rows;
  const chunkCount = Math.max(1, Math.ceil(rows / ROWS_PER_CHUNK));
  log(`S0: making ${(chunkCount * ROWS_PER_CHUNK).toLocaleString('en-US')} S1 rows as COPY text and pgoutput messages`);
  const chunks = Array.from({ length: chunkCount }, (_, i) => copyChunk(1 + i * ROWS_PER_CHUNK, ROWS_PER_CHUNK));
  const table = s1Table();
  const relation = s1Relation(table);
  const input: Input = {
    chunks,
    messages: chunks.map((c) => insertMessages(c, relation.relationId, table.columns.length)),
  };
  const events = chunkCount * ROWS_PER_CHUNK;
  const textBytes = chunks.reduce((sum, c) => sum + c.length, 0);
  const result: ScenarioResult = {
    id: 'S0',
    title: 'In-process encoding ceiling',
    parameters: {
      rows: events,
      rowsPerChunk: ROWS_PER_CHUNK,
      copyTextMB: Math.round(textBytes / 1024 / 1024),
      cores,
      bytesPerWorker: BYTES_PER_WORKER,
      rounds: options.s0Rounds,
    },
    measurements: [],
    ratios: [],
    notes: [],
  };
  // Warm-up: the codecs' first calls compile; not measured.
  for (const format of FORMATS)
    for (const shape of SHAPES) await inline(slice(input, Math.min(WARM_UP_CHUNKS, chunkCount)), format, shape);

  const mainCpu = new Map<MessageFormat, string[]>();
  const rates = new Map<string, number>();
  const mains = new Map<string, string>();
  const bases = new Map<string, RunResult>();
  for (const format of FORMATS) {
    mainCpu.set(format, []);
    for (const shape of SHAPES) {
      const design = shape === 'stream' ? 'stream inline' : 'inline';
      log(`S0: ${format} ${design}`);
      const base = await timed(() => inline(input, format, shape));
      bases.set(`${format} ${shape}`, base);
      result.measurements.push(measurement(`${format} · ${design} (0 workers)`, base, { format, design, workers: 0 }));
      mainCpu.get(format)!.push(`${design} ${fmt(cpuPerMillion(base.mainCpuSeconds, base.records))}`);
    }
  }
  // Wide rows: the same rows with 40 columns, json, inline; per event against the 16-column rows.
  const wideTable = s1Table(WIDE_COLUMNS);
  const wideChunks = chunks.map((c) => widen(c, WIDE_COLUMNS));
  const wide: Input = {
    chunks: wideChunks,
    messages: wideChunks.map((c) => insertMessages(c, relation.relationId, WIDE_COLUMNS)),
  };
  const widePerEvent: string[] = [];
  for (const shape of SHAPES) {
    const design = shape === 'stream' ? 'stream inline' : 'inline';
    await inline(slice(wide, Math.min(WARM_UP_CHUNKS, chunkCount)), 'json', shape, wideTable);
    log(`S0: json ${design}, ${WIDE_COLUMNS} columns`);
    const run = await timed(() => inline(wide, 'json', shape, wideTable));
    result.measurements.push(
      measurement(`json · ${design}, ${WIDE_COLUMNS} columns (0 workers)`, run, {
        format: 'json',
        design,
        workers: 0,
        columns: WIDE_COLUMNS,
      }),
    );
    const base = bases.get(`json ${shape}`)!;
    const cpuRatio = ratio(cpuPerMillion(run.cpuSeconds, run.records), cpuPerMillion(base.cpuSeconds, base.records));
    result.ratios.push({
      name: `json ${design}: ${WIDE_COLUMNS} ÷ ${table.columns.length} columns, CPU per event`,
      value: cpuRatio,
      meaning: `CPU per row of ${WIDE_COLUMNS}-column rows over ${table.columns.length}-column ones (${(WIDE_COLUMNS / table.columns.length).toFixed(1)} would be in proportion to the columns)`,
    });
    widePerEvent.push(`${design} ${fmt(cpuPerMillion(run.cpuSeconds, run.records))}`);
  }
  // Every pool is started before the first timed run, and each round runs 1, 2 and 4 workers of
  // a format and design one right after the other (the order reversed every other round): the
  // runs a ratio compares are minutes apart otherwise, and this machine's speed drifts by more
  // than the effect in minutes. Each figure is the round with the median rate.
  const pools = new Map<number, S0Pool | string>();
  const runs = new Map<string, RunResult[]>();
  const failures = new Map<string, string>();
  try {
    for (const workers of WORKER_COUNTS) {
      log(`S0: starting ${workers} worker${workers === 1 ? '' : 's'}`);
      try {
        pools.set(workers, await startPool(workers, chunkCount));
      } catch (error) {
        pools.set(workers, `the pool did not start: ${errorMessage(error)}`);
      }
    }
    for (let round = 0; round < options.s0Rounds; round++) {
      const counts = round % 2 === 0 ? WORKER_COUNTS : [...WORKER_COUNTS].reverse();
      for (const format of FORMATS) {
        for (const design of DESIGNS) {
          const base = bases.get(`${format} ${shapeOf(design)}`)!;
          for (const workers of counts) {
            const key = `${format} ${design} ${workers}`;
            if (failures.has(key)) continue;
            log(
              `S0: round ${round + 1}/${options.s0Rounds}, ${format} · ${design} · ${workers} worker${workers === 1 ? '' : 's'}`,
            );
            try {
              const pool = pools.get(workers);
              if (pool === undefined || typeof pool === 'string') throw new Error(pool ?? 'no pool');
              const run = await pooled(pool, design, format, input);
              if (run.records !== base.records || run.bytes !== base.bytes)
                throw new Error(
                  `the sink got ${run.records} records in ${run.bytes} bytes, inline ${base.records} in ${base.bytes}`,
                );
              runs.set(key, [...(runs.get(key) ?? []), run]);
            } catch (error) {
              failures.set(key, errorMessage(error));
            }
          }
        }
      }
    }
  } finally {
    for (const pool of pools.values()) if (typeof pool !== 'string') await pool.close();
  }
  for (const workers of WORKER_COUNTS) {
    for (const format of FORMATS) {
      for (const design of DESIGNS) {
        const label = `${format} · ${design} · ${workers} worker${workers === 1 ? '' : 's'}`;
        const key = `${format} ${design} ${workers}`;
        const failure = failures.get(key);
        const run = medianRun(runs.get(key) ?? []);
        if (failure !== undefined || run === undefined) {
          result.measurements.push(notAvailable(label, failure ?? 'not run'));
          continue;
        }
        const perRound = (runs.get(key) ?? []).map((r) => Math.round(r.records / r.seconds));
        result.measurements.push(
          measurement(label, run, { format, design, workers, eventsPerSecondByRound: perRound }),
        );
        rates.set(key, run.records / run.seconds);
        mains.set(key, fmt(cpuPerMillion(run.mainCpuSeconds, run.records)));
      }
    }
  }
  // Listed by format, then design (each inline run before the designs compared with it), then worker count.
  const rank = (design: string) =>
    design === 'inline' ? -1 : design === 'stream inline' ? DESIGNS.length - 1.5 : DESIGNS.indexOf(design as S0Design);
  const order = (m: Measurement): number[] => {
    const d = m.details ?? {};
    const [format, design, workers] =
      m.status === 'ok' ? [d.format, d.design, d.workers] : [...m.tool.split(' · '), ''].map((p) => p.split(' ')[0]);
    return [FORMATS.indexOf(format as MessageFormat), rank(String(design)), Number.parseInt(String(workers), 10) || 0];
  };
  result.measurements.sort((a, b) => {
    const [x, y] = [order(a), order(b)];
    return x[0]! - y[0]! || x[1]! - y[1]! || x[2]! - y[2]!;
  });
  for (const format of FORMATS) {
    for (const design of DESIGNS) {
      const base = bases.get(`${format} ${shapeOf(design)}`)!;
      const rate = (workers: number) => rates.get(`${format} ${design} ${workers}`);
      mainCpu
        .get(format)!
        .push(`${design} ${WORKER_COUNTS.map((w) => mains.get(`${format} ${design} ${w}`) ?? '–').join('/')}`);
      result.ratios.push(
        {
          name: `${format} ${design}: 1 worker ÷ ${design === 'stream' ? 'stream inline' : 'inline'}`,
          value: ratio(rate(1), base.records / base.seconds),
          meaning: `${DESIGN_WORDS[design]}; events/s with one worker over inline`,
        },
        {
          name: `${format} ${design}: 2 ÷ 1 workers`,
          value: ratio(rate(2), rate(1)),
          meaning: 'scaling from one worker to two (target ≥ 1.7)',
        },
        {
          name: `${format} ${design}: 4 ÷ 1 workers`,
          value: ratio(rate(4), rate(1)),
          meaning: `scaling from one worker to four (${cores} cores here)`,
        },
      );
    }
  }
  result.notes.push(
    'Designs: clone = the main thread decodes the COPY text into events and the pool copies them to the workers (structured clone), which encode; transfer = the COPY bytes are moved to the workers (no copy), which decode and encode; own = each worker has its own rows (as one reading its own snapshot partition through its own connection) and decodes and encodes them; stream = the same rows as pgoutput Insert messages, packed per 1,000 by the main thread and moved to the workers, which decode them with the stream decoder and encode (compared with the stream path inline: the main thread decoding the messages and encoding). Every design hands back one framed buffer per 1,000-row chunk, moved, in order; the null sink walks every record.',
    `Main-thread CPU-s per million events (inline · 1/2/4 workers): ${[...mainCpu].map(([format, parts]) => `${format}: ${parts.join(' · ')}`).join('; ')}. What the main thread pays per event bounds the scaling: it is the part no worker takes.`,
    `Wide rows (${WIDE_COLUMNS} columns, json, inline), CPU-s per million events: ${widePerEvent.join(' · ')}.`,
    'CPU s counts every thread of the bench process. The pool start (workers loading the codecs) is not timed. In one process on a shared machine: compare ratios within one run.',
    `Worker runs: ${options.s0Rounds} round${options.s0Rounds === 1 ? '' : 's'}, each running 1, 2 and 4 workers of a format and design one after the other (the order reversed every other round); each row is the round with the median events/s, and the rates of every round are in the JSON report (eventsPerSecondByRound).`,
  );
  return result;
}

/** The run with the median rate (of an even count, the slower of the middle two). */
function medianRun(list: readonly RunResult[]): RunResult | undefined {
  if (list.length === 0) return undefined;
  const sorted = [...list].sort((a, b) => a.records / a.seconds - b.records / b.seconds);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function fmt(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(1);
}
