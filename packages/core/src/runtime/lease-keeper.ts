import type { Logger } from '../contract/logger.js';
import { describeError } from '../log/logger.js';
import type { LeaseInfo, StateStore } from '../state/store.js';

/** Why a kept lease ended without being let go: another server holds it, or it lapsed and was taken again (a new epoch). */
export type LeaseLoss = { takenBy: LeaseInfo } | { newEpoch: number };

export interface LeaseKeeperOptions {
  store: StateStore;
  pipeline: string;
  holder: string;
  /** Epoch of the lease as taken; a renewal that comes back with another one means it lapsed. */
  epoch: number;
  ttlMs: number;
  /** Time between renewals (a third of the TTL by default in the engine). */
  intervalMs: number;
  logger: Logger;
  /** Called once, from the renewal that found the lease gone; the keeper has stopped by then. */
  onLost: (loss: LeaseLoss) => void;
  /** Monotonic clock in ms (tests); default `performance.now`. */
  now?: () => number;
}

/**
 * Part of the lease time the server gives up before writing to its sinks (see
 * {@link LeaseKeeper.mayWrite}): covers a write handed to the sink just before the check
 * and clocks that run at slightly different rates here and at the store.
 */
export const LEASE_WRITE_MARGIN = 1 / 5;

/**
 * Renews one pipeline lease on its own timer, from the moment it is taken until it is let
 * go ({@link stop}) or found lost. Nothing the pipeline does (its preflight, waiting for a
 * replication slot another process holds, a slow sink, a stop that takes its time) and
 * nothing another pipeline of the server does can delay a renewal: the engine's periodic
 * pass only follows changes, it does not renew.
 *
 * One renewal at a time: a renewal the store is slow to answer (a lock, a network stall)
 * is not stacked up behind; the next tick after it answers renews again.
 */
export class LeaseKeeper {
  readonly epoch: number;
  /** Set once the lease was found taken by another server or lapsed; the keeper no longer renews. */
  lost = false;
  /** Local time of the last renewal the store confirmed (the taking counts as the first). */
  renewedAt = Date.now();
  /**
   * Monotonic time a confirmed renewal was asked for (the taking counts as the first): the
   * store's expiry is at least a TTL after it, whatever the wall clock or a freeze did.
   */
  private confirmedAskedAt: number;
  private readonly now: () => number;
  private stopped = false;
  private failing = false;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;

  constructor(private readonly options: LeaseKeeperOptions) {
    this.epoch = options.epoch;
    this.now = options.now ?? (() => performance.now());
    this.confirmedAskedAt = this.now();
  }

  /**
   * Whether the lease is still this server's by the local monotonic clock, with a safety
   * margin: not lost, and less than TTL × (1 − {@link LEASE_WRITE_MARGIN}) since the last
   * confirmed renewal was asked for. A server that was frozen (SIGSTOP, a VM pause, a long
   * GC) past that must not write to its sinks before a renewal confirms the lease again:
   * another server may have taken the pipeline over and written newer changes meanwhile.
   */
  mayWrite(): boolean {
    if (this.lost) return false;
    const { ttlMs } = this.options;
    return this.now() < this.confirmedAskedAt + ttlMs * (1 - LEASE_WRITE_MARGIN);
  }

  start(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Stop renewing; resolves once a renewal in flight has answered, so a release that follows comes after it. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.inFlight;
  }

  private tick(): void {
    if (this.stopped || this.inFlight !== undefined) return;
    this.inFlight = this.renew().finally(() => {
      this.inFlight = undefined;
    });
  }

  private async renew(): Promise<void> {
    const { store, pipeline, holder, ttlMs, logger } = this.options;
    let result: Awaited<ReturnType<StateStore['acquireLease']>>;
    const asked = this.now();
    try {
      result = await store.acquireLease(pipeline, holder, ttlMs);
    } catch (err) {
      if (!this.failing)
        logger.warn('could not renew the pipeline lease; retrying', {
          name: pipeline,
          error: describeError(err),
          last_renewed_ms_ago: Date.now() - this.renewedAt,
        });
      this.failing = true;
      return;
    }
    if (this.stopped) return;
    if (this.failing) logger.info('pipeline lease renewed again', { name: pipeline });
    this.failing = false;
    if (!result.acquired) return this.lose({ takenBy: result.lease });
    if (result.epoch !== this.epoch) return this.lose({ newEpoch: result.epoch });
    this.renewedAt = Date.now();
    this.confirmedAskedAt = asked;
  }

  private lose(loss: LeaseLoss): void {
    this.lost = true;
    this.stopped = true;
    clearInterval(this.timer);
    this.options.onLost(loss);
  }
}
