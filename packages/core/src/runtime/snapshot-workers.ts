import type {
  EncodedBatch,
  RawRows,
  Sink,
  SinkDefinition,
  Source,
  SourceDefinition,
  SinkWorkerModule,
  SourceWorkerModule,
} from '../contract/connector.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import type { ChangeEvent, Position, Row, TableSchema } from '../model.js';
import type { EncodedPart } from './sink-lane.js';
import {
  createPipelineHandler,
  type PipelineWorkerData,
  type PipelineWorkerResult,
  type PipelineWorkerTask,
} from './pipeline-tasks.js';
import { readEvents } from './read-events.js';
import { OrderedWorkerPool } from './worker-pool.js';

/** Bytes of chunks one worker may hold at once (a chunk is at most `snapshot.chunk_bytes`). */
const MAX_BYTES_PER_WORKER = 64 * 1024 * 1024;

/** Where the chunks are encoded: a pool of worker threads, or this thread (`threads` 0). */
interface TaskRunner {
  readonly size: number;
  /** Whether a task's raw bytes must be a copy of their own (moved to another thread). */
  readonly moves: boolean;
  run(task: PipelineWorkerTask, raw: ArrayBuffer): Promise<PipelineWorkerResult>;
  close(): Promise<void>;
}

/** One chunk handed to the workers, shared by the lanes it goes to. */
interface ChunkJob {
  result: Promise<PipelineWorkerResult>;
  events: () => ChangeEvent[];
}

/**
 * The main thread's side of a pipeline's worker threads for one run: the pool (a core worker,
 * `pipeline-worker.ts`, that imports the source's and the sinks' worker modules), what each
 * chunk becomes for each sink, and the inline decoding a lane falls back to (a record the sink
 * refuses, the spill log). Closed with the run.
 *
 * With `threads` 0 there is no pool: the same tasks run on this thread, without copying the
 * chunk, and only where the source writes chunks as JSON text and every sink encodes from it
 * (`createJsonRowWriter`, `createJsonEncoder`). That path never makes rows into objects, which
 * is what makes it worth taking without a thread; otherwise the snapshot decodes as usual.
 */
export class SnapshotWorkers {
  /** Chunks decoded and encoded by the workers in this run. */
  chunks = 0;
  private readonly tableIndex = new Map<TableSchema, number>();
  private readonly decoders = new Map<number, (raw: Uint8Array) => Row[]>();

  private constructor(
    private readonly pool: TaskRunner,
    private readonly data: PipelineWorkerData,
    private readonly sourceModule: SourceWorkerModule,
  ) {
    for (const [i, t] of data.tables.entries()) this.tableIndex.set(t, i);
  }

  /**
   * Ask the connectors what their workers need and start the pool. Returns why not instead
   * when some part cannot work in a worker now (a connector without the calls, a table the
   * source decodes only here, a sink that declines).
   */
  static async start(input: {
    pipeline: string;
    threads: number;
    tables: readonly TableSchema[];
    source: { definition: SourceDefinition<unknown>; source: Source };
    sinks: { name: string; definition: SinkDefinition<unknown>; sink: Sink }[];
    execArgv?: string[];
  }): Promise<SnapshotWorkers | string> {
    const { source } = input;
    const module = source.definition.workerModule;
    if (module === undefined)
      return `the source connector ${source.definition.type} cannot decode rows in a worker thread`;
    if (source.source.readPartitionChunk === undefined || source.source.decoderSetup === undefined)
      return `the source connector ${source.definition.type} cannot hand over undecoded chunks`;
    // Without threads, only the JSON text path is worth it: asked before any setup is made.
    const inline = input.threads <= 0;
    const sourceModule = (await import(module)) as SourceWorkerModule;
    if (inline && sourceModule.createJsonRowWriter === undefined)
      return `the source connector ${source.definition.type} does not write chunks as JSON text`;
    const setups: unknown[] = [];
    for (const table of input.tables) {
      const setup = await source.source.decoderSetup(table);
      if (setup === undefined) return `the source decodes table ${table.schema}.${table.name} on the main thread only`;
      setups.push(setup);
    }
    const sinks: PipelineWorkerData['sinks'] = [];
    for (const s of input.sinks) {
      const sinkModule = s.definition.workerModule;
      if (sinkModule === undefined || s.sink.encoderSetup === undefined || s.sink.writeEncoded === undefined)
        return `sink ${s.name} (connector ${s.definition.type}) cannot encode records in a worker thread`;
      const jsonModule = inline ? ((await import(sinkModule)) as SinkWorkerModule) : undefined;
      if (jsonModule !== undefined && jsonModule.createJsonEncoder === undefined)
        return `sink ${s.name} (connector ${s.definition.type}) does not encode chunks from JSON text`;
      const setup = await s.sink.encoderSetup([...input.tables]);
      if (setup === undefined) return `sink ${s.name} cannot encode these tables in a worker thread now`;
      if (jsonModule !== undefined && jsonModule.createJsonEncoder?.(setup) === undefined)
        return `sink ${s.name} does not encode these tables from JSON text`;
      sinks.push({ module: sinkModule, setup });
    }
    const data: PipelineWorkerData = { tables: [...input.tables], source: { module, setups }, sinks };
    if (inline) {
      const handle = await createPipelineHandler(data);
      const runner: TaskRunner = {
        size: 0,
        moves: false,
        run: async (task) => (await handle(task)).result,
        close: async () => {},
      };
      return new SnapshotWorkers(runner, data, sourceModule);
    }
    const pool = await OrderedWorkerPool.start<PipelineWorkerTask, PipelineWorkerResult, PipelineWorkerData>({
      name: `${input.pipeline} snapshot`,
      module: workerModuleUrl(),
      size: input.threads,
      data,
      maxBytesPerWorker: MAX_BYTES_PER_WORKER,
      execArgv: input.execArgv ?? workerExecArgv(process.execArgv),
    });
    const runner: TaskRunner = {
      size: pool.size,
      moves: true,
      run: async (task, raw) => {
        for await (const result of pool.map([{ task, transfer: [raw], bytes: raw.byteLength }])) return result;
        throw new NanosyncError(ErrorCode.Internal, 'the worker pool gave no result for a chunk');
      },
      close: () => pool.close(),
    };
    return new SnapshotWorkers(runner, data, sourceModule);
  }

  get threads(): number {
    return this.pool.size;
  }

  /** Whether chunks of this table go through the workers (a table of the snapshot this run planned). */
  handles(table: TableSchema): boolean {
    return this.tableIndex.has(table);
  }

  /**
   * Hand a raw chunk to the workers: one part per sink (in the order of the sinks), each
   * resolving to its encoded batch, or undefined when that sink's encoder refused the events
   * (it then writes `events()`, decoded here, so on_error applies). `keep`: only these rows
   * (1 per row kept). The raw bytes are copied for the workers: this thread keeps them for
   * the fallbacks.
   */
  encode(
    table: TableSchema,
    raw: RawRows,
    position: Position,
    chunk: string | undefined,
    keep: Uint8Array | undefined,
  ): EncodedPart[] {
    const index = this.tableIndex.get(table);
    if (index === undefined)
      throw new Error(`table ${table.schema}.${table.name} is not one the workers were set up for`);
    // To a thread, a copy of its own (this thread keeps the chunk for the fallbacks); here, the chunk itself.
    const copy = this.pool.moves ? raw.bytes.slice(0) : raw.bytes;
    const task: PipelineWorkerTask = { table: index, raw: copy, position };
    if (chunk !== undefined) task.chunk = chunk;
    if (keep !== undefined) task.keep = keep;
    const job: ChunkJob = {
      result: this.run(task, copy),
      events: memo(() => this.decodeEvents(table, index, raw.bytes, position, chunk, keep)),
    };
    job.result.catch(() => {});
    const count = keep === undefined ? raw.rows : countKept(keep);
    this.chunks++;
    return this.data.sinks.map((_, i) => {
      const batch = job.result.then((r) => {
        const b = r.batches[i]!;
        return 'error' in b ? undefined : (b as EncodedBatch);
      });
      // A lane stopped before it reached this part never awaits it.
      batch.catch(() => {});
      return {
        batch,
        info:
          chunk === undefined
            ? { count, first: position, last: position }
            : { count, first: position, last: position, chunk },
        events: job.events,
        bytes: raw.bytes.byteLength * 2,
        ...(this.pool.moves ? {} : { onMainThread: true }),
      };
    });
  }

  /** The chunk's rows decoded on this thread (the merge's fallback when it must complete rows). */
  decode(table: TableSchema, raw: ArrayBuffer): Row[] {
    const index = this.tableIndex.get(table);
    if (index === undefined)
      throw new Error(`table ${table.schema}.${table.name} is not one the workers were set up for`);
    return this.decoder(index)(new Uint8Array(raw));
  }

  private decoder(index: number): (raw: Uint8Array) => Row[] {
    let decoder = this.decoders.get(index);
    if (decoder === undefined) {
      decoder = this.sourceModule.createRowDecoder(this.data.tables[index]!, this.data.source.setups[index]);
      this.decoders.set(index, decoder);
    }
    return decoder;
  }

  private decodeEvents(
    table: TableSchema,
    index: number,
    raw: ArrayBuffer,
    position: Position,
    chunk: string | undefined,
    keep: Uint8Array | undefined,
  ): ChangeEvent[] {
    return readEvents(table, this.decoder(index)(new Uint8Array(raw)), position, chunk, keep);
  }

  private async run(task: PipelineWorkerTask, copy: ArrayBuffer): Promise<PipelineWorkerResult> {
    try {
      return await this.pool.run(task, copy);
    } catch (err) {
      if (NanosyncError.is(err, ErrorCode.WorkerFailed)) {
        // A dead worker ends the run; the pipeline restarts from its checkpoints like after any failure.
        throw new NanosyncError(ErrorCode.WorkerFailed, (err as Error).message, {
          retriable: true,
          cause: err,
          details: (err as NanosyncError).details,
        });
      }
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** Options that take their value as the next argument when written without `=`. */
const WITH_VALUE = new Set([
  '--conditions',
  '-C',
  '--import',
  '--require',
  '-r',
  '--loader',
  '--experimental-loader',
  '--cpu-prof-dir',
  '--cpu-prof-interval',
]);

/**
 * What of this process's Node options the worker threads get: only those that decide how
 * modules load (conditions, `--import` / `--require` / loaders such as tsx, source maps,
 * warnings) and the CPU profiler's (`--cpu-prof`, its folder and interval). A worker refuses
 * process-wide options (`--max-semi-space-size`, which the `nanosync` binary is started with,
 * heap sizes): passed on, they would fail its start.
 */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    const name = arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg;
    const loads =
      WITH_VALUE.has(name) ||
      name === '--enable-source-maps' ||
      // V8's CPU profiler (the bench's NANOSYNC_BENCH_CPU_PROF): each worker writes a profile of its own.
      name === '--cpu-prof' ||
      name === '--no-warnings' ||
      name === '--experimental-strip-types' ||
      name === '--no-experimental-strip-types';
    // Anything else is left out (a value written apart from its option too: it matches nothing).
    if (!loads) continue;
    kept.push(arg);
    if (WITH_VALUE.has(arg) && i + 1 < execArgv.length) kept.push(execArgv[++i]!);
  }
  return kept;
}

function countKept(keep: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < keep.length; i++) if (keep[i] === 1) n++;
  return n;
}

function memo<T>(make: () => T): () => T {
  let value: T | undefined;
  let made = false;
  return () => {
    if (!made) {
      value = make();
      made = true;
    }
    return value as T;
  };
}

/**
 * The core worker module next to this file: `pipeline-worker.ts` when core runs from its
 * sources (under tsx), `pipeline-worker.js` in a build (a tsup entry of its own).
 */
export function workerModuleUrl(): URL {
  const here = import.meta.url;
  return new URL(here.endsWith('.ts') ? './pipeline-worker.ts' : './pipeline-worker.js', here);
}
