import { type ChangeBatch, type ChangeEvent, ErrorCode, NanosyncError, type Position } from '@nanosync/core';

export interface BatchLimits {
  /** Events per batch (default 1000). */
  maxEvents: number;
  /** Approximate bytes per batch, measured on the wire messages (default 1 MiB). */
  maxBytes: number;
  /** Finished batches waiting for the consumer before the producer is paused (default 4). */
  maxQueuedBatches: number;
}

export const DEFAULT_BATCH_LIMITS: BatchLimits = { maxEvents: 1000, maxBytes: 1 << 20, maxQueuedBatches: 4 };

interface Boundary {
  /** How many pending events belong to committed transactions. */
  count: number;
  position: Position;
  flushLsn: bigint;
}

/**
 * Between the replication connection (producer) and core (consumer): turns events into
 * bounded batches and applies backpressure.
 *
 * Events accumulate in a pending batch. A transaction's commit marks a boundary inside it;
 * a batch is cut
 * - when the next event would take the pending batch past `maxEvents` or `maxBytes`: up to
 *   the last boundary when there is one (that batch gets the boundary as `safePosition`),
 *   otherwise all of it, without `safePosition` (the middle of a large transaction);
 * - when the consumer asks for a batch and none is queued: up to the last boundary, one
 *   turn of the event loop later (`setImmediate`), so a quiet stream delivers each commit
 *   at once while a busy one fills its batches. Without that turn a consumer that keeps up
 *   would take one batch per transaction: every message of a socket read is handled in
 *   microtasks, between which the consumer asks again, and a backlog of one-change
 *   transactions became one batch (and one trip through core and the sink) per event.
 * `safePosition` is therefore set exactly on batches that end at a commit.
 *
 * `push` resolves only while fewer than `maxQueuedBatches` batches wait; the producer awaits
 * it before reading the next message, which stops reads from the socket and lets TCP flow
 * control hold the server back. Memory stays bounded by the batch limits whatever the size
 * of a transaction.
 */
export class BatchQueue implements AsyncIterable<ChangeBatch> {
  readonly #limits: BatchLimits;
  #pending: ChangeEvent[] = [];
  #pendingBytes = 0;
  #boundary: Boundary | undefined;
  readonly #queue: ChangeBatch[] = [];
  #consumerWaiting: (() => void) | undefined;
  #producerWaiting: (() => void)[] = [];
  #failure: { error: unknown } | undefined;
  #closed = false;
  /** A cut at the boundary for the waiting consumer is scheduled (see the class comment). */
  #cutScheduled = false;

  /** Called when a `safePosition` leaves the queue's control (it is in a queued batch). */
  onSafePosition: (position: Position, flushLsn: bigint) => void = () => {};

  constructor(limits: Partial<BatchLimits> = {}) {
    this.#limits = { ...DEFAULT_BATCH_LIMITS, ...limits };
  }

  /** Events waiting in the pending batch and queued batches (for tests and metrics). */
  get depth(): { pendingEvents: number; queuedBatches: number } {
    return { pendingEvents: this.#pending.length, queuedBatches: this.#queue.length };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Add an event. Returns a promise when the producer has to wait for room in the queue
   * (resolved once there is), `undefined` when it may go on at once: the stream adds every
   * event, and a promise per event was a good part of its cost.
   */
  push(event: ChangeEvent, bytes: number): Promise<void> | undefined {
    if (this.#closed) return undefined;
    // A full batch is cut when the next event arrives, not when it fills up: if the commit
    // comes first, the batch still gets its safePosition.
    const full =
      this.#pending.length >= this.#limits.maxEvents ||
      (this.#pending.length > 0 && this.#pendingBytes + bytes > this.#limits.maxBytes);
    if (full) this.#cutFull();
    this.#pending.push(event);
    this.#pendingBytes += bytes;
    return this.#queue.length >= this.#limits.maxQueuedBatches ? this.#waitForRoom() : undefined;
  }

  /** Every pending event so far belongs to committed transactions; `position` is the last one's boundary. */
  commit(position: Position, flushLsn: bigint): void {
    if (this.#closed) return;
    const lastQueued = this.#queue.at(-1);
    if (
      this.#pending.length === 0 &&
      lastQueued &&
      lastQueued.safePosition === undefined &&
      lastQueued.watermark === undefined
    ) {
      // The transaction's last events filled a batch exactly; that batch now ends at the commit.
      lastQueued.safePosition = position;
      this.onSafePosition(position, flushLsn);
      return;
    }
    this.#boundary = { count: this.#pending.length, position, flushLsn };
    if (this.#consumerWaiting) this.#scheduleCut();
  }

  /**
   * An empty batch carrying `position`: the caller checked that nothing is pending or
   * queued (no open transaction, everything delivered was acknowledged).
   */
  keepalive(position: Position, flushLsn: bigint): void {
    if (this.#closed) return;
    if (this.#pending.length > 0 || this.#boundary)
      throw new NanosyncError(ErrorCode.Internal, 'keepalive while events are pending');
    this.#enqueue({ events: [], safePosition: position }, flushLsn);
  }

  /**
   * A watermark between two transactions: what is pending goes out first (it all belongs to
   * committed transactions), then an empty batch carrying the watermark. Resolves when the
   * producer may continue.
   */
  async watermark(id: string, position: Position): Promise<void> {
    if (this.#closed) return;
    if (this.#boundary) this.#cutAtBoundary();
    if (this.#pending.length > 0)
      throw new NanosyncError(ErrorCode.Internal, 'watermark while events of an open transaction are pending');
    this.#enqueue({ events: [], watermark: { id, position } }, undefined);
    await this.#waitForRoom();
  }

  /** Stop: the consumer sees the end after the batches already queued. */
  close(): void {
    this.#closed = true;
    this.#wakeProducers();
    this.#wakeConsumer();
  }

  /** Stop with an error: the consumer gets it after the batches already queued. */
  fail(error: unknown): void {
    if (!this.#failure) this.#failure = { error };
    this.close();
  }

  async next(): Promise<IteratorResult<ChangeBatch>> {
    for (;;) {
      const batch = this.#queue.shift();
      if (batch) {
        this.#wakeProducers();
        return { done: false, value: batch };
      }
      if (this.#boundary) {
        if (this.#closed) {
          // Committed events go out before the end (or the failure), as they did before it.
          this.#cutAtBoundary();
          continue;
        }
        this.#scheduleCut();
      } else {
        if (this.#failure) throw this.#failure.error;
        if (this.#closed) return { done: true, value: undefined };
      }
      await new Promise<void>((resolve) => {
        this.#consumerWaiting = resolve;
      });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<ChangeBatch> {
    return { next: () => this.next() };
  }

  /** Resolves once fewer than `maxQueuedBatches` batches wait (or the queue is closed). */
  async #waitForRoom(): Promise<void> {
    while (this.#queue.length >= this.#limits.maxQueuedBatches && !this.#closed) {
      await new Promise<void>((resolve) => this.#producerWaiting.push(resolve));
    }
  }

  /** Cut at the boundary for the waiting consumer once the messages already read are handled. */
  #scheduleCut(): void {
    if (this.#cutScheduled) return;
    this.#cutScheduled = true;
    setImmediate(() => {
      this.#cutScheduled = false;
      if (this.#consumerWaiting && this.#queue.length === 0) this.#cutAtBoundary();
    });
  }

  #cutFull(): void {
    if (this.#boundary) {
      const committed = this.#boundary.count;
      this.#cutAtBoundary();
      if (committed > 0) return;
    }
    this.#takePending(this.#pending.length, undefined);
  }

  #cutAtBoundary(): void {
    const boundary = this.#boundary;
    if (!boundary) return;
    this.#takePending(boundary.count, boundary);
  }

  #takePending(count: number, boundary: Boundary | undefined): void {
    const events = count === this.#pending.length ? this.#pending : this.#pending.slice(0, count);
    const rest = count === this.#pending.length ? [] : this.#pending.slice(count);
    // Bytes are not tracked per event; the remainder is charged proportionally.
    const restBytes =
      this.#pending.length === 0 ? 0 : Math.round((this.#pendingBytes * rest.length) / this.#pending.length);
    this.#pending = rest;
    this.#pendingBytes = restBytes;
    if (boundary) this.#boundary = undefined;
    const batch: ChangeBatch = boundary ? { events, safePosition: boundary.position } : { events };
    this.#enqueue(batch, boundary?.flushLsn);
  }

  #enqueue(batch: ChangeBatch, flushLsn: bigint | undefined): void {
    if (batch.safePosition !== undefined && flushLsn !== undefined) this.onSafePosition(batch.safePosition, flushLsn);
    this.#queue.push(batch);
    this.#wakeConsumer();
  }

  #wakeConsumer(): void {
    const waiting = this.#consumerWaiting;
    this.#consumerWaiting = undefined;
    waiting?.();
  }

  #wakeProducers(): void {
    if (this.#queue.length >= this.#limits.maxQueuedBatches && !this.#closed) return;
    const waiting = this.#producerWaiting;
    this.#producerWaiting = [];
    for (const resolve of waiting) resolve();
  }
}
