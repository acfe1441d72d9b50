import type { Source } from '../contract/connector.js';
import type { Logger } from '../contract/logger.js';
import { isRetriable } from '../errors.js';
import { describeError } from '../log/logger.js';
import type { Position } from '../model.js';

/**
 * Acknowledges the source, one call at a time and only forwards.
 *
 * The runner offers the minimum checkpoint over the sinks after each checkpoint; positions
 * offered while a call is in flight collapse into the newest. A retriable failure is only
 * logged (the next offer acknowledges further anyway); any other failure goes to `onFailure`.
 */
export class Acknowledger {
  acknowledged: Position | undefined;
  private wanted: Position | undefined;
  private running: Promise<void> | undefined;
  /** True from the start of `run()` until it returns (set and cleared synchronously, unlike the promise). */
  private busy = false;
  private stopped = false;

  constructor(
    private readonly source: Pick<Source, 'acknowledge'>,
    private readonly compare: (a: Position, b: Position) => number,
    private readonly logger: Logger,
    private readonly onAcknowledged: (position: Position) => void,
    private readonly onFailure: (err: unknown) => void,
  ) {}

  offer(position: Position | undefined): void {
    if (this.stopped || position === undefined) return;
    if (this.acknowledged !== undefined && this.compare(position, this.acknowledged) <= 0) return;
    if (this.wanted !== undefined && this.compare(position, this.wanted) <= 0) return;
    this.wanted = position;
    if (!this.busy) {
      this.busy = true;
      this.running = this.run();
    }
  }

  /** No more acknowledgements after this (the pipeline failed or is being torn down). */
  stop(): void {
    this.stopped = true;
    this.wanted = undefined;
  }

  /** Resolves when no call is in flight. */
  async idle(): Promise<void> {
    while (this.busy) await this.running;
  }

  private async run(): Promise<void> {
    // The loop's exit test and `busy = false` run in one synchronous step, so an offer made
    // while the last call was finishing is never left behind.
    try {
      while (!this.stopped && this.wanted !== undefined) {
        const position = this.wanted;
        this.wanted = undefined;
        if (this.acknowledged !== undefined && this.compare(position, this.acknowledged) <= 0) continue;
        try {
          await this.source.acknowledge(position);
          this.acknowledged = position;
          this.onAcknowledged(position);
        } catch (err) {
          if (!isRetriable(err)) {
            this.stopped = true;
            this.onFailure(err);
            return;
          }
          this.logger.warn('acknowledging the source failed; will acknowledge further with the next checkpoint', {
            error: describeError(err),
          });
        }
      }
    } finally {
      this.busy = false;
    }
  }
}
