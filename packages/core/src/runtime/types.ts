import type { MaterializedPipeline } from '../config/stored-definition.js';
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from './backoff.js';

/**
 * A stored pipeline turned into something runnable (the config module's
 * `materializePipeline`): validated config plus connector definitions and their resolved
 * configs. The engine asks for it each time it starts a pipeline, so `${env:…}` references
 * are resolved at run time, never stored.
 */
export type { MaterializedPipeline };

/** One sink of a materialized pipeline; `name` (`${index}:${connection}`) is its checkpoint key. */
export type MaterializedSink = MaterializedPipeline['sinks'][number];

/** Tuning of the runtime. Every field has a default; tests shrink the times. */
export interface RuntimeOptions {
  /** Sink writes and source (re)starts. */
  retry: RetryPolicy;
  /** Per-sink queue bounds. */
  queue: { maxEvents: number; maxBytes: number };
  /** Queued batches are merged into one sink write up to this many events. */
  maxWriteEvents: number;
  /** Rows per chunk asked of `readPartition` and `query`. */
  snapshotChunkRows: number;
  /** How often `source.metrics()` is polled. */
  metricsIntervalMs: number;
  /** Confirmed position unchanged this long while the source head moves → "stalled" warning. */
  stallAfterMs: number;
  /** Budget for a pipeline to drain its queues and checkpoint when it is stopped or paused. */
  stopTimeoutMs: number;
  /** While the state store is failing, how often an ERRORED pipeline checks whether it is back. */
  storeProbeIntervalMs: number;
  /**
   * The server's state folder: sinks' spill logs (`spill/`) and default dead-letter files
   * (`dead-letters/`) live under it. Without one a slow sink holds the others back once its
   * queue is full (no spilling), and `on_error: dead_letter` needs `dead_letter_path`.
   */
  dataDir?: string;
  /** Node options for a pipeline's worker threads; default: this process's (`process.execArgv`). */
  workerExecArgv?: string[];
}

export const DEFAULT_RUNTIME_OPTIONS: RuntimeOptions = {
  retry: DEFAULT_RETRY_POLICY,
  // Bytes bound the queue (events only for very small ones): 4 MiB of estimated event size
  // holds a sink's next write while one is in flight (maxWriteEvents of S1-sized rows is
  // about 3.7 MiB by this estimate); more only raises the pipeline's live heap, which V8 lets
  // grow by half again before it collects, and whose highest point stays resident. Measured
  // against 8 MiB in apps/bench/README.md (issue 19 item 4, fifth pass).
  queue: { maxEvents: 20_000, maxBytes: 4 * 1024 * 1024 },
  maxWriteEvents: 5_000,
  snapshotChunkRows: 2_000,
  metricsIntervalMs: 15_000,
  stallAfterMs: 5 * 60_000,
  stopTimeoutMs: 7_000,
  storeProbeIntervalMs: 5_000,
};

export type RuntimeOverrides = Partial<Omit<RuntimeOptions, 'retry' | 'queue'>> & {
  retry?: Partial<RetryPolicy>;
  queue?: Partial<RuntimeOptions['queue']>;
};

export function runtimeOptions(overrides: RuntimeOverrides = {}): RuntimeOptions {
  return {
    ...DEFAULT_RUNTIME_OPTIONS,
    ...overrides,
    retry: { ...DEFAULT_RUNTIME_OPTIONS.retry, ...overrides.retry },
    queue: { ...DEFAULT_RUNTIME_OPTIONS.queue, ...overrides.queue },
  };
}
