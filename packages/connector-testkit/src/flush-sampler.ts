/**
 * RELIABILITY.md oracle item 4 for any source and state store: every `intervalMs`, how far
 * the source was acknowledged (e.g. a PostgreSQL slot's confirmed_flush_lsn), then the
 * checkpoint durably stored. The store only moves forward, so reading it second can only make
 * the check more lenient, never fail a correct pipeline. A sample is dropped when either
 * cannot be read (a server restarting, a store not created yet).
 */
export interface FlushSample {
  /** How far the source was acknowledged, as a number comparable with {@link FlushSamplerOptions.positionLsn}. */
  confirmedFlush: bigint;
  /** The stored checkpoint (or the start position while there is none). */
  checkpoint: string;
}

export interface FlushSamplerOptions {
  /** The source's acknowledged point now, or undefined when it cannot be read. */
  confirmedFlush: () => Promise<bigint | undefined>;
  /** The stored checkpoint now, or undefined when it cannot be read. */
  checkpoint: () => Promise<string | undefined> | string | undefined;
  intervalMs?: number;
}

export class FlushSampler {
  readonly samples: FlushSample[] = [];
  #running = true;
  readonly #done: Promise<void>;

  constructor(private readonly options: FlushSamplerOptions) {
    this.#done = this.#loop();
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      const confirmedFlush = await this.options.confirmedFlush().catch(() => undefined);
      if (confirmedFlush !== undefined) {
        const checkpoint = await Promise.resolve()
          .then(() => this.options.checkpoint())
          .catch(() => undefined);
        if (checkpoint !== undefined) this.samples.push({ confirmedFlush, checkpoint });
      }
      await new Promise((wake) => setTimeout(wake, this.options.intervalMs ?? 100));
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
  }
}

/**
 * Judges flush samples against the stream positions the sink holds: with a checkpoint at P the
 * source may be acknowledged up to the end of P's transaction, which is at most the commit
 * point of the next position delivered after P; never further. A sample with no later
 * position cannot be judged; `minJudged` of them must be. Returns problems (empty: passes).
 */
export function checkFlushSamples(
  samples: readonly FlushSample[],
  streamPositions: Iterable<string>,
  positionLsn: (position: string) => bigint,
  options: { compare?: (a: string, b: string) => number; minJudged?: number } = {},
): { problems: string[]; judged: number } {
  const compare = options.compare ?? ((a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0));
  const positions = [...new Set(streamPositions)].sort(compare);
  const firstAfter = (checkpoint: string): string | undefined => {
    let lo = 0;
    let hi = positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(positions[mid]!, checkpoint) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return positions[lo];
  };
  const problems: string[] = [];
  let judged = 0;
  for (const { confirmedFlush, checkpoint } of samples) {
    const next = firstAfter(checkpoint);
    if (next === undefined) continue;
    judged++;
    if (confirmedFlush > positionLsn(next))
      problems.push(
        `the source was acknowledged to ${confirmedFlush.toString(16)}, past the stored checkpoint ${checkpoint} (next delivered commit at ${next})`,
      );
  }
  if (judged < (options.minJudged ?? 1))
    problems.push(`only ${judged} of ${samples.length} flush samples had a later delivered position to judge them by`);
  return { problems, judged };
}
