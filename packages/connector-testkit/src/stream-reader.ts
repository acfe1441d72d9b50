import type { ChangeBatch, ChangeEvent, Position, Source, TableRef } from '@nanosync/core';

/**
 * Reads a source's stream batch by batch, so a test can change the source between reads
 * and keep one stream open across them. `readUntil` stops at the first batch carrying a
 * `safePosition` after which the condition holds: reads always end on a transaction
 * boundary, as core's would.
 */
export class StreamReader {
  readonly batches: ChangeBatch[] = [];
  readonly events: ChangeEvent[] = [];
  readonly #controller = new AbortController();
  readonly #iterator: AsyncIterator<ChangeBatch>;
  #ended = false;

  constructor(
    readonly source: Source,
    readonly from: Position,
    tables: TableRef[],
    private readonly waitMs: number,
  ) {
    this.#iterator = source.stream(from, { signal: this.#controller.signal, tables })[Symbol.asyncIterator]();
  }

  /** The last `safePosition` read so far. */
  get lastSafePosition(): Position | undefined {
    for (let i = this.batches.length - 1; i >= 0; i--) {
      const safe = this.batches[i]!.safePosition;
      if (safe !== undefined) return safe;
    }
    return undefined;
  }

  /**
   * Read batches until `done(allEventsSoFar)` holds at a batch with a `safePosition`.
   * `what` names the wait in the error when the stream ends or stays silent for `waitMs`.
   */
  async readUntil(done: (events: ChangeEvent[]) => boolean, what: string): Promise<ChangeBatch[]> {
    const read: ChangeBatch[] = [];
    for (;;) {
      const batch = await this.#next(what);
      read.push(batch);
      if (batch.safePosition !== undefined && done(this.events)) return read;
    }
  }

  async #next(what: string): Promise<ChangeBatch> {
    if (this.#ended) throw new Error(`stream from ${this.from} already ended while waiting for ${what}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const silent = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `stream from ${this.source.formatPosition(this.from)} delivered nothing more for ${this.waitMs} ms while waiting for ${what}; got ${this.events.length} event(s): ${describeEvents(this.events)}`,
            ),
          ),
        this.waitMs,
      );
    });
    try {
      const result = await Promise.race([this.#iterator.next(), silent]);
      if (result.done) {
        this.#ended = true;
        throw new Error(`stream from ${this.from} ended (without an abort) while waiting for ${what}`);
      }
      this.batches.push(result.value);
      this.events.push(...result.value.events);
      return result.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stop the stream (abort, then let the iterator clean up). */
  async close(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#controller.abort();
    await Promise.race([
      this.#iterator.return?.().catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, 5_000).unref()),
    ]);
  }
}

/** `insert t#3, update t#1, truncate t` — short, for failure messages. */
export function describeEvents(events: ChangeEvent[], limit = 40): string {
  const text = events
    .slice(0, limit)
    .map((e) => `${e.op} ${e.table.name}${e.op === 'truncate' ? '' : `#${Object.values(e.key).join(',')}`}`)
    .join(', ');
  return events.length > limit ? `${text}, … (${events.length - limit} more)` : text || '(none)';
}
