import type { Logger, Position } from '@nanosync/core';
import { comparePositions, decodePosition, formatLsn, formatPosition } from '../position.js';

/**
 * Where core's acknowledgements meet the replication slot.
 *
 * The stream registers every `safePosition` it hands out together with the LSN the slot may
 * be told once that position is durable: the commit record's end for a transaction, the
 * server's WAL position for a keepalive. `acknowledge(position)` looks the position up and
 * raises the flush LSN the stream reports in its standby status updates. The flush LSN only
 * grows, and only to an LSN registered for (or derived from) a position core confirmed, so
 * the slot's `confirmed_flush_lsn` never passes what every sink has made durable.
 *
 * One acknowledger lives as long as the `Source`; each `streamChanges` call (and each
 * reconnect inside it) reports through the same instance.
 */
export interface Acknowledger {
  /**
   * Everything up to and including `position` is durable in every sink. `position` is a
   * `safePosition` from a batch, or the pipeline's start position; calls are monotonic.
   * Resolves once the new flush LSN is queued for the server (or kept for the next connection).
   */
  acknowledge(position: Position): Promise<void>;
  /** The highest position core acknowledged so far (or the stream's `from`), if any. */
  readonly confirmedPosition: Position | undefined;
  /** The flush LSN reported to the server (0n until known). */
  readonly flushLsn: bigint;
}

/** The stream's side of the acknowledger (not for core). */
export interface AcknowledgerInternals extends Acknowledger {
  /** A position handed out as `safePosition`, and the LSN the slot may be told once it is durable. */
  register(position: Position, flushLsn: bigint): void;
  /** Treat `position` as acknowledged without moving the slot (the stream's `from`). */
  assumeConfirmed(position: Position): void;
  /** The slot's `confirmed_flush_lsn` as read at connect time: never report less. */
  observeSlotFlush(lsn: bigint): void;
  /** Called after each acknowledgement that changed something (status update, keepalive check). */
  onChange(listener: () => void): () => void;
  isConfirmed(position: Position): boolean;
}

interface PendingEntry {
  lsn: bigint;
  index: number;
  position: Position;
  flushLsn: bigint;
}

function before(entry: { lsn: bigint; index: number }, target: { lsn: bigint; index: number }): boolean {
  return entry.lsn < target.lsn || (entry.lsn === target.lsn && entry.index <= target.index);
}

/**
 * Creates the acknowledger shared by a source's `stream()` and `acknowledge()`:
 *
 * ```ts
 * const acknowledger = createAcknowledger({ logger });
 * stream(from) { return streamChanges({ ..., from, acknowledger }); }
 * acknowledge(position) { return acknowledger.acknowledge(position); }
 * ```
 */
export function createAcknowledger(options: { logger?: Logger } = {}): Acknowledger {
  return new SlotAcknowledger(options.logger);
}

export function internalsOf(acknowledger: Acknowledger): AcknowledgerInternals {
  if (!(acknowledger instanceof SlotAcknowledger)) {
    throw new TypeError('streamChanges needs an acknowledger made by createAcknowledger()');
  }
  return acknowledger;
}

class SlotAcknowledger implements AcknowledgerInternals {
  /** Registered positions not yet acknowledged, ascending. */
  readonly #pending: PendingEntry[] = [];
  readonly #listeners = new Set<() => void>();
  #confirmed: Position | undefined;
  #flushLsn = 0n;

  constructor(private readonly logger: Logger | undefined) {}

  get confirmedPosition(): Position | undefined {
    return this.#confirmed;
  }

  get flushLsn(): bigint {
    return this.#flushLsn;
  }

  register(position: Position, flushLsn: bigint): void {
    const { lsn, index } = decodePosition(position);
    const last = this.#pending.at(-1);
    if (last && before({ lsn, index }, last)) return;
    if (this.#confirmed && comparePositions(position, this.#confirmed) <= 0) return;
    this.#pending.push({ lsn, index, position, flushLsn });
  }

  assumeConfirmed(position: Position): void {
    if (this.#confirmed === undefined || comparePositions(position, this.#confirmed) > 0) this.#confirmed = position;
  }

  observeSlotFlush(lsn: bigint): void {
    if (lsn > this.#flushLsn) this.#flushLsn = lsn;
  }

  isConfirmed(position: Position): boolean {
    return this.#confirmed !== undefined && comparePositions(position, this.#confirmed) <= 0;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async acknowledge(position: Position): Promise<void> {
    const target = decodePosition(position);
    if (this.#confirmed !== undefined && comparePositions(position, this.#confirmed) < 0) {
      this.logger?.warn('acknowledgement went backwards; ignored', {
        position: formatPosition(position),
        confirmed: formatPosition(this.#confirmed),
      });
      return;
    }
    let matched: PendingEntry | undefined;
    let consumed = 0;
    for (const entry of this.#pending) {
      if (!before(entry, target)) break;
      matched = entry;
      consumed++;
    }
    this.#pending.splice(0, consumed);
    let flush: bigint;
    if (matched && matched.lsn === target.lsn && matched.index === target.index) {
      flush = matched.flushLsn;
    } else {
      // Not handed out by this process (a checkpoint from an earlier run, the start
      // position): derive a flush LSN that cannot skip anything unacknowledged. A boundary
      // (L, 0) covers the commits before L; a transaction's last event (C, n) covers the
      // commits before C, and the server replays C itself once, which the stream then drops
      // as already delivered.
      flush = target.lsn;
      if (matched && matched.flushLsn > flush) flush = matched.flushLsn;
    }
    this.#confirmed = position;
    if (flush > this.#flushLsn) {
      this.#flushLsn = flush;
      this.logger?.debug('slot flush position advanced', {
        flush: formatLsn(flush),
        position: formatPosition(position),
      });
    }
    for (const listener of this.#listeners) listener();
  }
}
