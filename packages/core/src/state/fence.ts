import { ErrorCode, NanosyncError } from '../errors.js';
import type { LeaseFence, StateStore } from './store.js';

/**
 * The error a store raises when a fenced write finds the lease moved on: `current` is the
 * lease row as found (undefined when the pipeline has no lease any more). Not retriable: the
 * runner that made the write no longer owns the pipeline and must stop.
 */
export function leaseFenceError(
  pipeline: string,
  what: string,
  fence: LeaseFence,
  current: { holder: string; epoch: number } | undefined,
): NanosyncError {
  const now =
    current === undefined
      ? 'the pipeline has no lease any more'
      : current.holder === fence.holder && current.epoch === fence.epoch
        ? 'the lease is unchanged'
        : `the lease is now held by ${current.holder || 'nobody'} at epoch ${current.epoch}`;
  return new NanosyncError(
    ErrorCode.PipelineLeaseHeld,
    `pipeline "${pipeline}": refused to ${what} for ${fence.holder} at lease epoch ${fence.epoch}: ${now}; this server lost the pipeline and stops running it`,
    {
      retriable: false,
      details: {
        pipeline,
        holder: fence.holder,
        epoch: fence.epoch,
        currentHolder: current?.holder,
        currentEpoch: current?.epoch,
      },
    },
  );
}

/** True when `current` (the lease row) still matches the fence. */
export function fenceHolds(fence: LeaseFence, current: { holder: string; epoch: number } | undefined): boolean {
  return current !== undefined && current.holder === fence.holder && current.epoch === fence.epoch;
}

/**
 * `store` as one lease holder sees it: every write of a pipeline's progress (checkpoints,
 * partition plans, chunks and completions, clearing them, state changes) is made with `fence`, so
 * it is refused once another server took the lease over (and `onRefused` is told, whoever
 * catches the error). Everything else passes through.
 */
export function fencedStore(
  store: StateStore,
  fence: LeaseFence,
  onRefused?: (error: NanosyncError) => void,
): StateStore {
  const watch = <T>(write: Promise<T>): Promise<T> =>
    onRefused === undefined
      ? write
      : write.catch((err: unknown) => {
          if (NanosyncError.is(err, ErrorCode.PipelineLeaseHeld)) onRefused(err as NanosyncError);
          throw err;
        });
  return {
    getPipeline: (name) => store.getPipeline(name),
    listPipelines: () => store.listPipelines(),
    upsertPipeline: (record) => store.upsertPipeline(record),
    updatePipeline: (name, patch) => watch(store.updatePipeline(name, patch, fence)),
    deletePipeline: (name) => store.deletePipeline(name),
    savePartitions: (pipeline, table, partitions) => watch(store.savePartitions(pipeline, table, partitions, fence)),
    listPartitions: (pipeline, table) => store.listPartitions(pipeline, table),
    markPartitionDone: (pipeline, table, id, rowsRead) =>
      watch(store.markPartitionDone(pipeline, table, id, rowsRead, fence)),
    saveChunk: (pipeline, chunk) => watch(store.saveChunk(pipeline, chunk, fence)),
    listChunks: (pipeline, table) => store.listChunks(pipeline, table),
    clearPartitions: (pipeline, _fence, table) => watch(store.clearPartitions(pipeline, fence, table)),
    saveCheckpoint: (pipeline, sink, position) => watch(store.saveCheckpoint(pipeline, sink, position, fence)),
    getCheckpoints: (pipeline) => store.getCheckpoints(pipeline),
    clearCheckpoints: (pipeline) => watch(store.clearCheckpoints(pipeline, fence)),
    acquireLease: (pipeline, holder, ttlMs) => store.acquireLease(pipeline, holder, ttlMs),
    getLease: (pipeline) => store.getLease(pipeline),
    releaseLease: (pipeline, holder) => store.releaseLease(pipeline, holder),
    listLeases: () => store.listLeases(),
    registerServer: (id, ttlMs, details) => store.registerServer(id, ttlMs, details),
    listServers: () => store.listServers(),
    removeServer: (id) => store.removeServer(id),
    getMeta: (key) => store.getMeta(key),
    setMeta: (key, value) => store.setMeta(key, value),
    // The engine owns the store; a runner's view must not close it.
    close: async () => {},
  };
}
