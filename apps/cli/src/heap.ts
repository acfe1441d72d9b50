import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past what survived the last full collection
 * before it collects again, in percent. V8's own choice goes up to 300% on a machine with
 * much memory, so a pipeline whose live data is 60 MB reached 250 MB of heap between two
 * collections; 50% keeps the peak at about one and a half times the live data. Measured in
 * the bench (apps/bench/README.md, issue 19 third pass): against 100%, peak RSS 274/275/216 →
 * 226/262/193 MB in S1 and 227–255 → 194–207 MB in S2, CPU per event within the run-to-run
 * noise (S1 +5–8%; that run also had a 4 MiB lane queue, whose own effect was small).
 */
export const HEAP_GROWING_PERCENT = 50;

/**
 * Sets {@link HEAP_GROWING_PERCENT} for this process, unless Node was started with its own
 * `--heap-growing-percent`. V8 reads the setting at every full collection, so it applies
 * however nanosync was started (the `nanosync` binary, `node …/bin.js`, tsx).
 */
export function limitHeapGrowth(execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((arg) => arg.startsWith('--heap-growing-percent') || arg.startsWith('--heap_growing_percent')))
    return false;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return true;
}
