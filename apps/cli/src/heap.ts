import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past what survived the last full collection
 * before it collects again, in percent, at start. V8's own choice goes up to 300% on a
 * machine with much memory, which let a pipeline's heap reach four times its live data.
 *
 * It was a fixed 50% while the live heap was 45–65 MB (decoded rows as objects). With rows
 * and records carried as bytes, the live heap of S1 and S2 is about 26 MB, and 50% left V8
 * about 21 MB of room after a full collection. That is no more than its young generation
 * may hold, and then V8 starts the next incremental marking at once (seen with
 * `--trace-incremental-marking`). Pipelines ran a mark-compact about every 100 ms (57 per
 * 500k rows into Kafka), and the marking threads took CPU from the other core. At 100% the
 * room is about 34 MB. In one slot the mark-compacts fell to a third or a half and CPU per
 * event by 11–32% in S1 and S2 into Kafka (apps/bench/README.md, "Heap growth back to
 * 100%").
 */
export const HEAP_GROWING_PERCENT = 100;

/**
 * The growth the percentage is set to allow past the live data after the first full
 * collection (V8 adds a few MB of its own): what 100% gives a live heap of 26 MB. A fixed
 * 100% let the pipelines with more live data (S2's one-change transactions, exactly_once)
 * peak at 201–205 MB RSS; with the same room for every live size they peaked at 186–197 MB,
 * and CPU per event stayed within the noise of the fixed 100% elsewhere (same README
 * section).
 */
export const HEAP_ROOM_BYTES = 26 * 1024 * 1024;
const MIN_PERCENT = 50;
const MAX_PERCENT = 200;

/** The growth, in percent, that allows {@link HEAP_ROOM_BYTES} past `liveBytes`. */
export function growingPercentFor(liveBytes: number): number {
  const percent = Math.round((100 * HEAP_ROOM_BYTES) / Math.max(liveBytes, 1));
  return Math.min(MAX_PERCENT, Math.max(MIN_PERCENT, percent));
}

/**
 * Sets {@link HEAP_GROWING_PERCENT} for this process, then after every full collection the
 * percentage that allows {@link HEAP_ROOM_BYTES} past what survived it (V8 reads the
 * setting at every full collection, so it applies however nanosync was started: the
 * `nanosync` binary, `node …/bin.js`, tsx). Nothing is set when Node was started with its own
 * `--heap-growing-percent`.
 */
export function limitHeapGrowth(
  execArgv: readonly string[] = process.execArgv,
  setFlags: (flags: string) => void = setFlagsFromString,
  observe: (onFullCollection: () => void) => unknown = observeFullCollections,
  liveBytes: () => number = () => getHeapStatistics().used_heap_size,
): boolean {
  if (execArgv.some((arg) => arg.startsWith('--heap-growing-percent') || arg.startsWith('--heap_growing_percent')))
    return false;
  let current = HEAP_GROWING_PERCENT;
  setFlags(`--heap-growing-percent=${current}`);
  observe(() => {
    const next = growingPercentFor(liveBytes());
    if (next === current) return;
    current = next;
    setFlags(`--heap-growing-percent=${next}`);
  });
  return true;
}

/**
 * Calls `onFullCollection` after full collections (at most once per batch of `gc` entries
 * the observer gets), not after scavenges. Returns what stops observing.
 */
export function observeFullCollections(onFullCollection: () => void): () => void {
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries())
      if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        onFullCollection();
        return;
      }
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
