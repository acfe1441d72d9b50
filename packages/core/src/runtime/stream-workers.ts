import type {
  EncodedBatch,
  Sink,
  SinkDefinition,
  SinkWorkerModule,
  Source,
  SourceDefinition,
  SourceWorkerModule,
} from '../contract/connector.js';
import type { Logger } from '../contract/logger.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import type { ChangeEvent, RawChanges, TableSchema } from '../model.js';
import { createPipelineHandler } from './pipeline-tasks.js';
import type { ChangesTask, PipelineWorkerData, PipelineWorkerResult, PipelineWorkerTask } from './pipeline-worker.js';
import { shapeOf } from './schema-changes.js';
import type { EncodedPart, SinkLane } from './sink-lane.js';
import { workerExecArgv, workerModuleUrl } from './snapshot-workers.js';
import { OrderedWorkerPool } from './worker-pool.js';

/** Bytes of raw batches one worker may hold at once (a batch is at most the source's batch bound, 1 MiB by default). */
const MAX_BYTES_PER_WORKER = 16 * 1024 * 1024;

/** Where the batches are encoded: a pool of worker threads, or this thread (`threads` 0). */
interface BatchRunner {
  readonly size: number;
  submit(task: ChangesTask, bytes: number): Promise<PipelineWorkerResult>;
  close(): Promise<void>;
}

function shapeKey(table: TableSchema): string {
  return `${table.schema}\u0000${table.name}\u0000${shapeOf(table)}`;
}

/**
 * The main thread's side of the change stream through a pipeline's worker threads (issue 19
 * item 3). The source hands batches over raw (`ChangeBatch.raw`: its messages packed into one
 * buffer); each goes, moved and not copied, to the next worker (round-robin), which decodes it
 * with the source's `createChangeDecoder` and encodes every sink's records. The batch is queued
 * in every sink lane at once, in stream order, as a promise of its encoded records: a lane
 * writes (and then checkpoints) its items strictly in queue order, so a worker that finishes
 * early waits for the ones before it, and the source is acknowledged only from checkpoints of
 * what is durable, exactly as with decoded batches. The raw bytes come back with the result,
 * for the fallbacks (a record the sink refuses, an encoder that refuses an event: the batch is
 * decoded here and written with `write()`, so `on_error` applies).
 *
 * With `threads` 0 there is no pool: the same tasks run on this thread, without moving the
 * bytes, and only where the source writes batches as JSON text and every sink encodes from it
 * (`createJsonChangeWriter`, `createJsonChangeEncoder`): that path makes no event, row or value
 * objects, which is what makes it worth taking without a thread.
 */
export class StreamWorkers {
  /** Raw batches handed to the workers in this run. */
  batches = 0;
  /** Raw batches decoded on the main thread instead (see `inlineReason`). */
  inlineBatches = 0;
  private readonly said = new Set<string>();
  private mainDecoder: ((raw: Uint8Array, setup: unknown) => ChangeEvent[]) | undefined;

  private constructor(
    private readonly pool: BatchRunner,
    private readonly sinks: number,
    private readonly shapes: ReadonlySet<string>,
    private readonly sourceModule: SourceWorkerModule,
    private readonly logger: Logger,
  ) {}

  /**
   * Ask the connectors what their workers need and start the pool. Returns why not instead
   * when some part cannot work in a worker now.
   */
  static async start(input: {
    pipeline: string;
    threads: number;
    /** The pipeline's tables as described at the start: the shapes the sinks' encoders are set up for. */
    tables: readonly TableSchema[];
    source: { definition: SourceDefinition<unknown>; source: Source };
    sinks: { name: string; definition: SinkDefinition<unknown>; sink: Sink }[];
    lanes: readonly SinkLane[];
    logger: Logger;
    execArgv?: string[];
  }): Promise<StreamWorkers | string> {
    const module = input.source.definition.workerModule;
    if (module === undefined)
      return `the source connector ${input.source.definition.type} cannot decode changes in a worker thread`;
    const sourceModule = (await import(module)) as SourceWorkerModule;
    if (typeof sourceModule.createChangeDecoder !== 'function')
      return `the source connector ${input.source.definition.type} cannot decode changes in a worker thread (its worker module has no createChangeDecoder)`;
    // Without threads, only the JSON text path is worth it: asked before any setup is made.
    const inline = input.threads <= 0;
    if (inline && sourceModule.createJsonChangeWriter === undefined)
      return `the source connector ${input.source.definition.type} does not write changes as JSON text`;
    for (const lane of input.lanes)
      if (!lane.takesEncodedStream)
        return `sink ${lane.name} spills or maps events, which needs them decoded on the main thread`;
    const sinks: PipelineWorkerData['sinks'] = [];
    for (const s of input.sinks) {
      const sinkModule = s.definition.workerModule;
      if (sinkModule === undefined || s.sink.encoderSetup === undefined || s.sink.writeEncoded === undefined)
        return `sink ${s.name} (connector ${s.definition.type}) cannot encode records in a worker thread`;
      const jsonModule = inline ? ((await import(sinkModule)) as SinkWorkerModule) : undefined;
      if (jsonModule !== undefined && jsonModule.createJsonChangeEncoder === undefined)
        return `sink ${s.name} (connector ${s.definition.type}) does not encode changes from JSON text`;
      const setup = await s.sink.encoderSetup([...input.tables]);
      if (setup === undefined) return `sink ${s.name} cannot encode these tables in a worker thread now`;
      if (jsonModule !== undefined && jsonModule.createJsonChangeEncoder?.(setup) === undefined)
        return `sink ${s.name} does not encode these tables from JSON text`;
      sinks.push({ module: sinkModule, setup });
    }
    const data: PipelineWorkerData = { tables: [], source: { module, setups: [] }, sinks };
    const shapes = new Set(input.tables.map(shapeKey));
    if (inline) {
      const handle = await createPipelineHandler(data);
      // The task's synchronous part (every JSON-text sink's encoding) runs within submit.
      const runner: BatchRunner = {
        size: 0,
        submit: async (task) => (await handle(task)).result,
        close: async () => {},
      };
      return new StreamWorkers(runner, sinks.length, shapes, sourceModule, input.logger);
    }
    const pool = await OrderedWorkerPool.start<PipelineWorkerTask, PipelineWorkerResult, PipelineWorkerData>({
      name: `${input.pipeline} stream`,
      module: workerModuleUrl(),
      size: input.threads,
      data,
      maxBytesPerWorker: MAX_BYTES_PER_WORKER,
      execArgv: input.execArgv ?? workerExecArgv(process.execArgv),
    });
    const runner: BatchRunner = {
      size: pool.size,
      submit: (task, bytes) => pool.submit({ task, transfer: [task.raw], bytes }),
      close: () => pool.close(),
    };
    return new StreamWorkers(runner, sinks.length, shapes, sourceModule, input.logger);
  }

  get threads(): number {
    return this.pool.size;
  }

  /**
   * Why this raw batch must be decoded on the main thread and written decoded (undefined: it
   * goes through the workers): a table whose shape the sinks' worker encoders were not set up
   * for (a schema change since the stream's workers started), or a sink that already has part
   * of the batch (it resumes after a position inside it, after a restart).
   */
  inlineReason(raw: RawChanges, lanes: readonly SinkLane[]): string | undefined {
    for (const { table } of raw.tables) {
      if (!this.shapes.has(shapeKey(table)))
        return `table ${table.schema}.${table.name} changed shape since the stream's worker threads started (its sinks' worker encoders were set up for the shape described then)`;
    }
    for (const lane of lanes)
      if (lane.cutsStreamBatch(raw.first, raw.last))
        return `sink ${lane.name} resumes after a position inside the batch (it already has part of it)`;
    return undefined;
  }

  /** A raw batch's events decoded on this thread, logging once per reason why. */
  decodeInline(raw: RawChanges, why: string): ChangeEvent[] {
    this.inlineBatches++;
    // Without threads every batch is on this thread anyway: nothing to say.
    if (this.pool.size > 0 && !this.said.has(why)) {
      this.said.add(why);
      this.logger.info('a stream batch is decoded and encoded on the main thread, not in a worker thread', {
        reason: why,
      });
    }
    return this.decode(raw.bytes, raw.setup);
  }

  /**
   * Hand a raw batch to the next worker: one part per sink (in the order of the pipeline's
   * sinks), each resolving to that sink's encoded records, or undefined when its encoder
   * refused the events (the lane then writes `events()`, decoded here once the bytes are back).
   * `raw.bytes` is moved to the worker: it is detached here.
   */
  encode(raw: RawChanges): EncodedPart[] {
    const bytes = raw.bytes.byteLength;
    const task: ChangesTask = { kind: 'changes', raw: raw.bytes, setup: raw.setup };
    // On this thread (no pool) the bytes never leave.
    let back: ArrayBuffer | undefined = this.pool.size === 0 ? raw.bytes : undefined;
    let decoded: ChangeEvent[] | undefined;
    const events = () => {
      if (decoded !== undefined) return decoded;
      if (back === undefined)
        throw new NanosyncError(
          ErrorCode.Internal,
          'the events of a stream batch were asked for while its bytes were in a worker thread',
        );
      decoded = this.decode(back, raw.setup);
      return decoded;
    };
    this.batches++;
    const info = { count: raw.count, first: raw.first, last: raw.last };
    const parts: EncodedPart[] = [];
    // One promise per sink, settled from the one result: the bytes are back and the parts'
    // `ready` set before any lane sees its part resolve.
    const settle: { resolve: (b: EncodedBatch | undefined) => void; reject: (err: unknown) => void }[] = [];
    for (let i = 0; i < this.sinks; i++) {
      let resolve!: (b: EncodedBatch | undefined) => void;
      let reject!: (err: unknown) => void;
      const batch = new Promise<EncodedBatch | undefined>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // A lane stopped before it reached this part never awaits it.
      batch.catch(noop);
      settle.push({ resolve, reject });
      parts.push({
        stream: true,
        batch,
        info,
        events,
        bytes: bytes * 2,
        ...(this.pool.size === 0 ? { onMainThread: true } : {}),
      });
    }
    this.pool.submit(task, bytes).then(
      (r) => {
        back = r.raw;
        for (let i = 0; i < parts.length; i++) {
          const b = r.batches[i]!;
          const batch = 'error' in b ? undefined : (b as EncodedBatch);
          if (batch !== undefined) parts[i]!.ready = batch;
          settle[i]!.resolve(batch);
        }
      },
      (err) => {
        const failure = streamWorkerError(err);
        for (const s of settle) s.reject(failure);
      },
    );
    return parts;
  }

  private decode(bytes: ArrayBuffer, setup: unknown): ChangeEvent[] {
    this.mainDecoder ??= this.sourceModule.createChangeDecoder!();
    return this.mainDecoder(new Uint8Array(bytes), setup);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

function noop(): void {}

/** A dead worker ends the run; the pipeline restarts from its checkpoints like after any failure. */
function streamWorkerError(err: unknown): unknown {
  if (NanosyncError.is(err, ErrorCode.WorkerFailed))
    return new NanosyncError(ErrorCode.WorkerFailed, (err as Error).message, {
      retriable: true,
      cause: err,
      details: (err as NanosyncError).details,
    });
  return err;
}
