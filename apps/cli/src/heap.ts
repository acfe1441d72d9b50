import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past what survived the last full collection
 * before it collects again, in percent. V8's own choice goes up to 300% on a machine with
 * much memory, which let a pipeline's heap reach four times its live data.
 *
 * It was 50% while the live heap was 45–65 MB (decoded rows as objects). With rows and
 * records carried as bytes, the live heap of S1 and S2 is about 26 MB, and 50% left V8
 * about 21 MB of room after a full collection: less than its young generation (3 × the
 * binary's 8 MiB semi-space), which is when V8 starts the next incremental marking at
 * once. Pipelines ran a mark-compact about every 100 ms (57 per 500k rows into Kafka), and
 * the marking threads took CPU from the other core. At 100% the room is about 34 MB: in one
 * slot the mark-compacts fell to a third or a half, CPU per event by 11–32% in S1 and S2 into
 * Kafka, and peak RSS rose 4–20 MB, to 197 MB at most (apps/bench/README.md, "Heap growth
 * back to 100%"). 150% saved a little more CPU and went over 200 MB.
 */
export const HEAP_GROWING_PERCENT = 100;

/**
 * Sets {@link HEAP_GROWING_PERCENT} for this process, unless Node was started with its own
 * `--heap-growing-percent`. V8 reads the setting at every full collection, so it applies
 * however nanosync was started (the `nanosync` binary, `node …/bin.js`, tsx).
 */
export function limitHeapGrowth(
  execArgv: readonly string[] = process.execArgv,
  setFlags: (flags: string) => void = setFlagsFromString,
): boolean {
  if (execArgv.some((arg) => arg.startsWith('--heap-growing-percent') || arg.startsWith('--heap_growing_percent')))
    return false;
  setFlags(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return true;
}
