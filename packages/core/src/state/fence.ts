import { ErrorCode, NanosyncError } from '../errors.js';
import type { LeaseFence } from './store.js';

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
