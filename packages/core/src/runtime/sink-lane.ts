import {
  type DeadLetterTarget,
  type EncodedBatch,
  type EncodedEvents,
  eventIndexOf,
  recordIndexOf,
  type Sink,
} from '../contract/connector.js';
import type { Logger } from '../contract/logger.js';
import { ErrorCode, isRetriable, NanosyncError } from '../errors.js';
import { describeError } from '../log/logger.js';
import type { ChangeEvent, Position } from '../model.js';
import type { StateStore } from '../state/store.js';
import { backoffDelay, type RetryPolicy, sleep } from './backoff.js';
import type { SinkErrorPolicy } from '../config/types.js';
import { deadLetterOf, deadLetterReason } from './dead-letters.js';
import type { EventMapper } from './mappings.js';
import { removeSpillFolder, SpillLog } from './spill-log.js';
import type { SinkStats } from './stats.js';
import { dieForTest, type SinkThrottle, sinkThrottle, type TestFaults, testFaults } from './test-faults.js';

/**
 * Longest a lane under a continuous load defers saving its checkpoint (see `checkpointNow`).
 */
export const CHECKPOINT_MAX_DEFER_MS = 1_000;

/**
 * Resolves once every lane has processed it, i.e. once everything queued before it in every
 * lane is durable. The snapshot uses one per partition to know when it may mark it done.
 */
export class Barrier {
  readonly promise: Promise<void>;
  private remaining: number;
  private resolve!: () => void;
  private reject!: (err: unknown) => void;

  constructor(lanes: number) {
    this.remaining = lanes;
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.promise.catch(() => {});
    if (lanes === 0) this.resolve();
  }

  arrive(): void {
    if (--this.remaining === 0) this.resolve();
  }

  fail(err: unknown): void {
    this.remaining = -1;
    this.reject(err);
  }
}

/**
 * Snapshot rows or a raw stream batch a worker thread decodes and encodes for this sink (see
 * `snapshot-workers.ts`, `stream-workers.ts`): queued in order like any batch, written with
 * `Sink.writeEncoded` once the worker is done, whatever order the workers finish in.
 */
export interface EncodedPart {
  /** Stream changes (not snapshot rows): counted as stream events, and only ever queued encoded. */
  stream?: boolean;
  /** The sink's records; undefined when its encoder refused the events (they are then written with `write`). */
  batch: Promise<EncodedBatch | undefined>;
  info: EncodedEvents;
  /**
   * The same events, decoded on this thread: written with `write()` when the sink refuses one
   * record (so `on_error` applies) or its encoder refused them, and what goes to the spill log.
   * A stream part's can be called only once its `batch` settled (its bytes are in the worker until then).
   */
  events: () => ChangeEvent[];
  /** What the part weighs against the queue's byte bound. */
  bytes: number;
  /**
   * A stream part's records once its worker is done and its encoder took the events (set by
   * `StreamWorkers`): such parts queued after the one being written may join its write
   * (`Sink.writeEncodedParts`) without waiting for anything.
   */
  ready?: EncodedBatch;
  /** Encoded on the main thread (`workers: 0`, from the JSON text of a chunk or stream batch), not in a worker thread. */
  onMainThread?: boolean;
}

interface LaneItem {
  events: ChangeEvent[];
  /** Set for an encoded part (then `events` is empty). */
  encoded?: EncodedPart;
  safePosition: Position | undefined;
  bytes: number;
  /** Newest commit time in the item (ms), for this sink's lag. */
  commitMs: number | undefined;
  barrier: Barrier | undefined;
}

export interface SinkLaneOptions {
  pipeline: string;
  /** The sink's stable id, also its checkpoint key. */
  name: string;
  sink: Sink;
  store: StateStore;
  mapper: EventMapper | undefined;
  /** Queue bounds: the lane reports `full` at either. */
  maxEvents: number;
  maxBytes: number;
  /** Queued batches are merged into one `write()` up to this many events. */
  maxWriteEvents: number;
  retry: RetryPolicy;
  /** What to do with an event the sink can never write (see `DeadLetter`). Default `fail`. */
  onError?: SinkErrorPolicy;
  /** The dead-letter target, asked for the first time a letter is written (`on_error: dead_letter`). */
  deadLetters?: () => DeadLetterTarget;
  stats: SinkStats;
  logger: Logger;
  /** This sink's checkpoint from the store, if it has one. */
  checkpoint: Position | undefined;
  /** After each durable checkpoint: the runner recomputes the acknowledgement. */
  onCheckpoint: () => void;
  /** The lane gave up (non-retriable error or retries exhausted, or the store failed). */
  onFailure: (err: unknown) => void;
  /**
   * Set when the pipeline has other sinks: a sink that fails for good (its own write error,
   * not the store) stops alone and reports here instead of `onFailure`; the others go on.
   */
  onSinkErrored?: (err: unknown) => void;
  /**
   * Spill instead of holding the source back: once the memory queue is full, batches go to
   * a spill log in `dir` up to `maxBytes`. When that is full too, the lane stops taking
   * events (it `paused`) and, once it has written everything it took, calls `onCaughtUp`:
   * the stream must be read again from this lane's checkpoint.
   */
  spill?: { dir: string; maxBytes: number };
  onPausedDrained?: () => void;
  /** The lane's state changed (spilling, paused, errored): for logs and warnings. */
  onStateChange?: (state: LaneState) => void;
  /**
   * Whether this server's lease of the pipeline is still valid by the local clock (see
   * `LeaseKeeper.mayWrite`); checked before every sink and dead-letter write, retries
   * included. Absent: no lease to check (a runner outside the engine).
   */
  leaseValid?: () => boolean;
  now?: () => number;
}

/**
 * One sink's bounded queue and writer.
 *
 * Items are written strictly in order. After `sink.write()` resolves (the events are
 * durable), the item's `safePosition`, when it has one, becomes this sink's checkpoint in
 * the store; only then does the lane report it, so the source is never acknowledged past
 * what the store holds. A keepalive (no events, a position) takes the same path, behind
 * whatever is queued, which is what lets an idle pipeline release WAL.
 *
 * The queue never blocks the producer by itself: `push` always enqueues and `full` tells
 * the producer to wait (`waitForRoom`) before reading more from the source. A slow sink
 * therefore holds the others back only once its own queue is full. It may overshoot its
 * bounds by one batch.
 */
export type LaneState = 'running' | 'spilling' | 'paused' | 'errored';

export class SinkLane {
  readonly name: string;
  checkpoint: Position | undefined;
  queuedEvents = 0;
  queuedBytes = 0;
  /** `running`; `spilling` (backlog in the spill log); `paused` (spill full: takes no events); `errored`. */
  state: LaneState = 'running';
  /** Why the lane is `errored`. */
  error: unknown;
  private spillLog: SpillLog | undefined;
  private readonly spillBarriers = new Map<number, Barrier>();
  /**
   * Whether the last batch the lane took ends a transaction (has a safe position). A full
   * spill log pauses the lane only then: what it took ends where a checkpoint can be saved,
   * so each re-read moves the checkpoint on, even past a transaction larger than the queue
   * and the spill budget together (which is spilled whole, beyond the budget).
   */
  private tookToBoundary = true;
  private nextBarrierId = 0;
  private readonly queue: LaneItem[] = [];
  private head = 0;
  private wake: (() => void) | undefined;
  private roomWaiters: (() => void)[] = [];
  private draining = false;
  private stopped = false;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  /** Skip stream events at or before this position (this sink already has them). */
  private skipThrough: Position | undefined;
  private compare: ((a: Position, b: Position) => number) | undefined;
  private lastItemLagMs: number | undefined;
  private readonly now: () => number;
  private deadLetterTarget: DeadLetterTarget | undefined;
  /** Test-only fault points (NANOSYNC_TEST_FAULT with NODE_ENV=test; see test-faults.ts). */
  private readonly faults: TestFaults | undefined = testFaults();
  /** Test-only: this sink slowed to a share of the others' speed (`throttle:FILE`). */
  private readonly throttle: SinkThrottle | undefined =
    this.faults?.throttleFile === undefined ? undefined : sinkThrottle(this.faults.throttleFile);
  private streamWrites = 0;
  /** Stream events written by this lane (for `kill-after-events:N`). */
  private streamEventsWritten = 0;
  /** Snapshot events this lane wrote in this process (`kill-after-reads`). */
  private readEventsWritten = 0;
  /** Position of the last durable write whose checkpoint is not saved yet (see `checkpointNow`). */
  private unsaved: Position | undefined;
  /** When the last checkpoint was saved (lane clock). */
  private savedAt = 0;
  /** A write refused by the lease check was logged (once per lane; see `checkLease`). */
  private leaseRefusalLogged = false;
  /** Whether this lane wrote a stream batch a worker encoded (logged once). */
  private wroteEncodedStream = false;

  constructor(private readonly options: SinkLaneOptions) {
    this.name = options.name;
    this.checkpoint = options.checkpoint;
    this.now = options.now ?? Date.now;
  }

  /** True while the producer must wait for this lane; a lane that can spill never makes it wait. */
  get full(): boolean {
    if (this.options.spill !== undefined || this.state === 'errored') return false;
    return this.memoryFull;
  }

  private get memoryFull(): boolean {
    return this.queuedEvents >= this.options.maxEvents || this.queuedBytes >= this.options.maxBytes;
  }

  get closed(): boolean {
    return this.draining || this.stopped;
  }

  /** Bytes and events in the spill log. */
  get spilledBytes(): number {
    return this.spillLog?.bytes ?? 0;
  }

  get spilledEvents(): number {
    return this.spillLog?.events ?? 0;
  }

  /**
   * Start writing. A lane that may spill first removes what an earlier run left in its spill
   * folder: a spill log is never replayed (the stream is read again from the checkpoints).
   */
  start(): void {
    if (this.loop !== undefined) return;
    if (this.options.spill !== undefined) removeSpillFolder(this.options.spill.dir, this.name);
    this.loop = this.run();
  }

  /**
   * Replays after a restart start at the minimum checkpoint over all sinks; a sink that is
   * further ahead skips what it already has (whole batches up to its checkpoint).
   */
  skipUpTo(position: Position | undefined, compare: (a: Position, b: Position) => number): void {
    this.skipThrough = position;
    this.compare = compare;
  }

  /** Enqueue one batch (mapped for this sink). `bytes` is the batch's approximate size before mapping. */
  push(events: ChangeEvent[], safePosition: Position | undefined, bytes: number, commitMs: number | undefined): void {
    // A paused lane takes nothing (it is read again from its checkpoint): not even mapped.
    if (this.closed || this.state === 'paused') return;
    if (this.skipThrough !== undefined) {
      const compare = this.compare!;
      if (safePosition !== undefined && compare(safePosition, this.skipThrough) <= 0) return;
      const through = this.skipThrough;
      const firstNew = events.findIndex((e) => compare(e.position, through) > 0);
      if (firstNew < 0 && safePosition === undefined) return;
      this.skipThrough = undefined;
      if (firstNew !== 0) events = firstNew < 0 ? [] : events.slice(firstNew);
    }
    const mapped = this.options.mapper && events.length > 0 ? this.options.mapper.mapEvents(events) : events;
    if (mapped.length === 0 && safePosition === undefined) return;
    const size = mapped === events || events.length === 0 ? bytes : Math.ceil((bytes * mapped.length) / events.length);
    if (
      this.options.spill !== undefined &&
      (this.memoryFull || (this.spillLog !== undefined && !this.spillLog.empty))
    ) {
      this.spillItem({ events: mapped, safePosition, bytes: size, commitMs, barrier: undefined });
      this.tookToBoundary = safePosition !== undefined;
      return;
    }
    this.tookToBoundary = safePosition !== undefined;
    if (mapped.length === 0) {
      const tail = this.queue.length > this.head ? this.queue[this.queue.length - 1]! : undefined;
      if (tail !== undefined && tail.events.length === 0 && tail.barrier === undefined) {
        // Merge consecutive keepalives: an idle stream behind a slow sink stays one item.
        tail.safePosition = safePosition;
        return;
      }
    }
    this.queue.push({ events: mapped, safePosition, bytes: size, commitMs, barrier: undefined });
    this.queuedEvents += mapped.length;
    this.queuedBytes += size;
    this.signal();
  }

  /**
   * Whether this lane can take stream batches encoded in a worker: it maps no events and never
   * spills (both need the events on this thread when the batch is queued).
   */
  get takesEncodedStream(): boolean {
    return this.options.mapper === undefined && this.options.spill === undefined;
  }

  /**
   * Whether a stream batch from `first` to `last` would be cut by what this lane skips after a
   * restart (it already has some of the batch's events but not all): such a batch must come decoded.
   */
  cutsStreamBatch(first: Position, last: Position): boolean {
    if (this.skipThrough === undefined || this.closed) return false;
    const compare = this.compare!;
    return compare(first, this.skipThrough) <= 0 && compare(last, this.skipThrough) > 0;
  }

  /**
   * Enqueue snapshot rows encoded in a worker (a whole chunk, at one position), or a stream
   * batch (`part.stream`, with the batch's `safePosition` and newest commit time). A lane that
   * maps events (target_mappings) or must spill takes snapshot rows decoded instead: the spill
   * log holds events only, and a spilling sink is the slow one, not the main thread. Stream
   * parts are only given to a lane that `takesEncodedStream`.
   */
  pushEncoded(part: EncodedPart, safePosition?: Position, commitMs?: number): void {
    if (this.closed || this.state === 'paused') return;
    if (this.skipThrough !== undefined) {
      if (this.compare!(part.info.last, this.skipThrough) <= 0) return;
      if (part.stream === true && this.compare!(part.info.first, this.skipThrough) <= 0)
        throw new NanosyncError(
          ErrorCode.Internal,
          `sink ${this.name}: an encoded stream batch from ${part.info.first} to ${part.info.last} straddles the position this sink resumes after (${this.skipThrough})`,
        );
      this.skipThrough = undefined;
    }
    if (part.stream === true) {
      if (!this.takesEncodedStream)
        throw new NanosyncError(ErrorCode.Internal, `sink ${this.name} cannot take encoded stream batches`);
      this.tookToBoundary = safePosition !== undefined;
      this.queue.push({ events: [], encoded: part, safePosition, bytes: part.bytes, commitMs, barrier: undefined });
      this.queuedEvents += part.info.count;
      this.queuedBytes += part.bytes;
      this.signal();
      return;
    }
    if (
      this.options.mapper !== undefined ||
      (this.options.spill !== undefined && (this.memoryFull || (this.spillLog !== undefined && !this.spillLog.empty)))
    ) {
      this.push(part.events(), undefined, part.bytes, undefined);
      return;
    }
    this.tookToBoundary = false;
    this.queue.push({
      events: [],
      encoded: part,
      safePosition: undefined,
      bytes: part.bytes,
      commitMs: undefined,
      barrier: undefined,
    });
    this.queuedEvents += part.info.count;
    this.queuedBytes += part.bytes;
    this.signal();
  }

  pushBarrier(barrier: Barrier): void {
    if (this.closed) {
      barrier.fail(this.state === 'errored' ? this.error : new Error(`sink ${this.name} is stopping`));
      return;
    }
    if (this.state === 'paused') {
      barrier.fail(this.pausedError());
      return;
    }
    if (this.spillLog !== undefined && !this.spillLog.empty) {
      const id = this.nextBarrierId++;
      this.spillBarriers.set(id, barrier);
      this.spillItem({ events: [], safePosition: undefined, bytes: 0, commitMs: undefined, barrier: id });
      return;
    }
    this.queue.push({ events: [], safePosition: undefined, bytes: 0, commitMs: undefined, barrier });
    this.signal();
  }

  /** Resolves when the lane has room (or stopped). */
  waitForRoom(): Promise<void> {
    if (!this.full || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Stop accepting; resolve when everything queued is durable and checkpointed (or the lane failed). */
  async drain(): Promise<void> {
    this.draining = true;
    this.signal();
    await this.loop;
  }

  /** Stop now: queued items are dropped (not checkpointed, so a restart replays them). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    const err = this.state === 'errored' ? this.error : new Error(`sink ${this.name} stopped`);
    for (let i = this.head; i < this.queue.length; i++) this.queue[i]!.barrier?.fail(err);
    for (const b of this.spillBarriers.values()) b.fail(err);
    this.spillBarriers.clear();
    try {
      this.spillLog?.close();
    } catch (err) {
      this.options.logger.warn('could not remove the spill log of a stopped sink', {
        sink: this.name,
        error: describeError(err),
      });
    }
    this.spillLog = undefined;
    this.queue.length = 0;
    this.head = 0;
    this.queuedEvents = 0;
    this.queuedBytes = 0;
    this.signal();
    this.releaseRoomWaiters();
  }

  /** Seconds from commit to durable in this sink; see `PipelineStatus.lagSeconds`. */
  lagMs(): number | undefined {
    let lag = this.lastItemLagMs;
    for (let i = this.head; i < this.queue.length; i++) {
      const ms = this.queue[i]!.commitMs;
      if (ms !== undefined) {
        lag = Math.max(lag ?? 0, this.now() - ms);
        break;
      }
    }
    return lag;
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private releaseRoomWaiters(): void {
    if (this.roomWaiters.length === 0) return;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }

  private async run(): Promise<void> {
    try {
      while (!this.stopped) {
        this.refill();
        if (this.head >= this.queue.length) {
          if (this.state === 'paused') {
            // Everything taken before the pause is durable: the rest must be read again.
            this.options.onPausedDrained?.();
            break;
          }
          if (this.draining) break;
          await new Promise<void>((resolve) => {
            this.wake = resolve;
          });
          continue;
        }
        await this.processNext();
      }
    } catch (err) {
      if (this.stopped) return;
      const own = NanosyncError.is(err, ErrorCode.SinkWriteFailed) && !isRetriable(err);
      if (own && this.options.onSinkErrored !== undefined) {
        this.state = 'errored';
        this.error = err;
        this.stop();
        this.options.onStateChange?.('errored');
        this.options.onSinkErrored(err);
        return;
      }
      this.stop();
      this.options.onFailure(err);
    }
  }

  /** Append to the spill log, or pause the lane when its budget is spent. */
  private spillItem(item: {
    events: ChangeEvent[];
    safePosition: Position | undefined;
    bytes: number;
    commitMs: number | undefined;
    barrier: number | undefined;
  }): void {
    const spill = this.options.spill!;
    if (this.spillLog !== undefined && this.spillLog.bytes >= spill.maxBytes && this.tookToBoundary) {
      this.state = 'paused';
      this.options.onStateChange?.('paused');
      if (item.barrier !== undefined) {
        this.spillBarriers.get(item.barrier)?.fail(this.pausedError());
        this.spillBarriers.delete(item.barrier);
      }
      this.signal();
      return;
    }
    this.spillLog ??= new SpillLog(
      spill.dir,
      this.name,
      Math.max(1024 * 1024, Math.min(64 * 1024 * 1024, spill.maxBytes / 4)),
    );
    this.spillLog.append(item);
    if (this.state === 'running') {
      this.state = 'spilling';
      this.options.onStateChange?.('spilling');
    }
    this.signal();
  }

  /** Move spilled items back into memory while there is room, oldest first. */
  private refill(): void {
    const log = this.spillLog;
    if (log === undefined) return;
    while (!log.empty && !this.memoryFull) {
      const item = log.shift()!;
      const barrier = item.barrier === undefined ? undefined : this.spillBarriers.get(item.barrier);
      if (item.barrier !== undefined) this.spillBarriers.delete(item.barrier);
      this.queue.push({
        events: item.events,
        safePosition: item.safePosition,
        bytes: item.bytes,
        commitMs: item.commitMs,
        barrier,
      });
      this.queuedEvents += item.events.length;
      this.queuedBytes += item.bytes;
    }
    if (log.empty && this.state === 'spilling') {
      this.state = 'running';
      this.options.onStateChange?.('running');
    }
  }

  private pausedError(): NanosyncError {
    return new NanosyncError(
      ErrorCode.SinkSpillFull,
      `sink ${this.name} fell so far behind that its spill log reached max_spill_bytes (${this.options.spill?.maxBytes} bytes); it is read again from its checkpoint`,
      { retriable: true, details: { sink: this.name } },
    );
  }

  /** Take the next item, merging queued batches after it up to `maxWriteEvents`, and make it durable. */
  private async processNext(): Promise<void> {
    const first = this.take();
    const encoded = first.encoded;
    let events = first.events;
    /** Stream parts written in one `writeEncodedParts` after `encoded`. */
    let joined: EncodedPart[] | undefined;
    let safePosition = first.safePosition;
    let bytes = first.bytes;
    let commitMs = first.commitMs;
    const barriers: Barrier[] = first.barrier ? [first.barrier] : [];
    let merged: ChangeEvent[] | undefined;
    while (encoded === undefined && this.head < this.queue.length) {
      const next = this.queue[this.head]!;
      // An encoded part is written alone: one `writeEncoded` holds one whole chunk.
      if (next.encoded !== undefined) break;
      if (events.length + next.events.length > this.options.maxWriteEvents && events.length > 0) break;
      this.take();
      if (next.events.length > 0) {
        if (events.length === 0) {
          events = next.events;
        } else {
          if (merged === undefined) {
            merged = events.slice();
            events = merged;
          }
          for (let i = 0; i < next.events.length; i++) merged.push(next.events[i]!);
        }
      }
      if (next.safePosition !== undefined) safePosition = next.safePosition;
      if (next.commitMs !== undefined) commitMs = next.commitMs;
      if (next.barrier) barriers.push(next.barrier);
      bytes += next.bytes;
    }
    if (encoded?.stream === true && this.options.sink.writeEncodedParts !== undefined) {
      if (encoded.ready === undefined) await encoded.batch.then(noop, noop);
      if (encoded.ready !== undefined) {
        let count = encoded.info.count;
        while (this.head < this.queue.length) {
          const next = this.queue[this.head]!;
          const part = next.encoded;
          if (part?.stream !== true || part.ready === undefined || next.barrier !== undefined) break;
          if (count + part.info.count > this.options.maxWriteEvents) break;
          this.take();
          joined ??= [];
          joined.push(part);
          count += part.info.count;
          if (next.safePosition !== undefined) safePosition = next.safePosition;
          if (next.commitMs !== undefined) commitMs = next.commitMs;
          bytes += next.bytes;
        }
      }
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }

    const faults = this.faults;
    let checkpointed = false;
    // Only the kill points and the broken order change how a write and its checkpoint follow
    // each other; the throttle (in `writeWithRetries`) leaves it as it is.
    const reorders =
      faults !== undefined &&
      (faults.ackBeforeWrite ||
        faults.killAfterWrite !== undefined ||
        faults.killAfterEvents !== undefined ||
        faults.killAfterReads !== undefined);
    const count = encoded !== undefined ? encodedCount(encoded, joined) : events.length;
    if (!reorders) {
      if (encoded !== undefined) await this.writeEncoded(encoded, joined);
      else if (events.length > 0) await this.write(events);
      if (this.stopped) return;
      if (safePosition !== undefined) this.unsaved = safePosition;
      if (this.unsaved !== undefined && this.unsaved !== this.checkpoint && this.checkpointNow(barriers.length > 0)) {
        const position = this.unsaved;
        await this.options.store.saveCheckpoint(this.options.pipeline, this.name, position);
        this.checkpoint = position;
        this.unsaved = undefined;
        this.savedAt = this.now();
        checkpointed = true;
      }
    } else {
      if (!(await this.writeWithTestFaults(faults!, events, safePosition, encoded, joined))) return;
      checkpointed = safePosition !== undefined;
    }
    const stats = this.options.stats;
    stats.rowsWritten += count;
    if (commitMs !== undefined) this.lastItemLagMs = Math.max(0, this.now() - commitMs);
    else if (events.length === 0 && safePosition !== undefined && this.head >= this.queue.length)
      this.lastItemLagMs = 0;
    stats.lagMs = this.lagMs();
    this.queuedEvents -= count;
    this.queuedBytes -= bytes;
    for (const b of barriers) b.arrive();
    if (checkpointed) this.options.onCheckpoint();
    if (!this.full) this.releaseRoomWaiters();
  }

  /**
   * Whether the checkpoint of what was just written is saved now or after the next write.
   * Saving it costs a synchronous fsync of the state store on the one JavaScript thread; with
   * more batches already waiting, that would delay them (and everything else the process does)
   * for a checkpoint the next write supersedes anyway. So it is saved once the queue is empty
   * (an idle or lightly loaded pipe: every transaction's checkpoint, right after its write),
   * before a barrier is released, when draining, and at least every
   * {@link CHECKPOINT_MAX_DEFER_MS} under a continuous load — checked after each write, no
   * timer. A checkpoint not yet saved only means a longer replay after a crash; the source is
   * acknowledged from saved checkpoints only.
   */
  private checkpointNow(barrier: boolean): boolean {
    if (barrier || this.draining || this.state !== 'running') return true;
    if (this.head < this.queue.length) return this.now() - this.savedAt >= CHECKPOINT_MAX_DEFER_MS;
    return true;
  }

  /**
   * processNext's write-then-checkpoint under test-only faults: the SIGKILL between a durable
   * write and its checkpoint, and the deliberately broken order (checkpoint and acknowledge
   * first, write after). Returns false when the lane stopped meanwhile.
   */
  private async writeWithTestFaults(
    faults: TestFaults,
    events: ChangeEvent[],
    safePosition: Position | undefined,
    encoded?: EncodedPart,
    joined?: EncodedPart[],
  ): Promise<boolean> {
    const checkpointFollows = safePosition !== undefined && safePosition !== this.checkpoint;
    const killHere =
      checkpointFollows &&
      faults.killAfterWrite !== undefined &&
      (encoded?.stream === true || events.some((e) => e.op !== 'read')) &&
      ++this.streamWrites === faults.killAfterWrite;
    const checkpoint = async () => {
      if (!checkpointFollows) return;
      await this.options.store.saveCheckpoint(this.options.pipeline, this.name, safePosition!);
      this.checkpoint = safePosition;
    };
    if (faults.ackBeforeWrite) {
      await checkpoint();
      this.options.onCheckpoint();
      if (killHere) await dieForTest(`after checkpoint ${safePosition} of sink ${this.name}, before its write`);
      if (encoded !== undefined) await this.writeEncoded(encoded, joined);
      else if (events.length > 0) await this.write(events);
      return !this.stopped;
    }
    if (encoded !== undefined) await this.writeEncoded(encoded, joined);
    else if (events.length > 0) await this.write(events);
    if (this.stopped) return false;
    if (faults.killAfterEvents !== undefined) {
      const before = this.streamEventsWritten;
      if (encoded?.stream === true) this.streamEventsWritten += encodedCount(encoded, joined);
      for (const e of events) if (e.op !== 'read') this.streamEventsWritten++;
      if (before < faults.killAfterEvents && this.streamEventsWritten >= faults.killAfterEvents)
        await dieForTest(
          `after a durable write to sink ${this.name} brought its stream events to ${this.streamEventsWritten}${safePosition === undefined ? ' (in the middle of a transaction)' : ''}`,
        );
    }
    if (faults.killAfterReads !== undefined) {
      const before = this.readEventsWritten;
      if (encoded !== undefined && encoded.stream !== true) this.readEventsWritten += encoded.info.count;
      for (const e of events) if (e.op === 'read') this.readEventsWritten++;
      if (before < faults.killAfterReads && this.readEventsWritten >= faults.killAfterReads)
        await dieForTest(
          `after a durable write to sink ${this.name} brought its snapshot events to ${this.readEventsWritten}, before the chunk is recorded`,
        );
    }
    if (killHere) await dieForTest(`after a durable write to sink ${this.name}, before checkpoint ${safePosition}`);
    await checkpoint();
    return true;
  }

  /**
   * The item at the head, its slot cleared: a consumed batch must not stay reachable from
   * the queue array until the next compaction, or memory grows with every batch written.
   */
  private take(): LaneItem {
    const item = this.queue[this.head]!;
    (this.queue as (LaneItem | undefined)[])[this.head] = undefined;
    this.head++;
    return item;
  }

  /**
   * Write events durably. An event the sink blames alone (`eventIndexOf`) under `on_error:
   * dead_letter` or `skip`: the events before it are written (again), it is dead-lettered
   * or skipped, and the write goes on with the rest. A snapshot event, for a sink with
   * `skipsCommittedChunk`: it is set aside and the others are written again in one write.
   */
  private async write(events: ChangeEvent[]): Promise<void> {
    let rest = events;
    while (rest.length > 0) {
      const poisoned = await this.writeWithRetries(rest);
      if (poisoned === undefined || this.stopped) return;
      const event = rest[poisoned.index]!;
      if (event.chunk !== undefined && this.options.sink.skipsCommittedChunk === true) {
        // A sink that skips its last committed chunk must get a chunk in one write: the
        // event is set aside first and the others are written together.
        await this.setAside(event, poisoned.error);
        rest = [...rest.slice(0, poisoned.index), ...rest.slice(poisoned.index + 1)];
        continue;
      }
      if (poisoned.index > 0) await this.write(rest.slice(0, poisoned.index));
      if (this.stopped) return;
      await this.setAside(event, poisoned.error);
      rest = rest.slice(poisoned.index + 1);
    }
  }

  /**
   * Write a part a worker encoded, with the retries of `write`. When the worker's encoder
   * refused the events, or the sink refuses one record of the batch (`recordIndexOf`), the
   * part's events are decoded here and written with `write()`, so on_error applies as ever.
   */
  private async writeEncoded(part: EncodedPart, joined?: EncodedPart[]): Promise<void> {
    const { retry, stats, logger, sink } = this.options;
    const batch = await part.batch;
    if (this.stopped) return;
    if (batch === undefined) {
      await this.write(part.events());
      return;
    }
    const count = encodedCount(part, joined);
    /** Every part's events, decoded here (the fallbacks). */
    const allEvents = () => {
      if (joined === undefined) return part.events();
      const all = part.events().slice();
      for (const p of joined) for (const e of p.events()) all.push(e);
      return all;
    };
    const parts =
      joined === undefined
        ? undefined
        : [{ batch, events: part.info }, ...joined.map((p) => ({ batch: p.ready!, events: p.info }))];
    if (this.throttle !== undefined) {
      await this.throttle.wait(this.options.pipeline, this.name, count, this.abort.signal);
      if (this.stopped) return;
    }
    for (let attempt = 1; ; attempt++) {
      this.checkLease(`${count} encoded events`);
      const started = performance.now();
      try {
        if (parts !== undefined) await sink.writeEncodedParts!(parts);
        else await sink.writeEncoded!(batch, part.info);
        stats.latency.observe((performance.now() - started) / 1000);
        if (++stats.encodedWrites === 1)
          logger.info(
            part.onMainThread === true
              ? `sink wrote its first batch encoded from the JSON text of ${part.stream === true ? 'a stream batch' : 'a chunk'}, on the main thread`
              : 'sink wrote its first batch encoded in a worker thread',
            { sink: this.name, records: part.info.count },
          );
        if (part.stream === true && !this.wroteEncodedStream) {
          this.wroteEncodedStream = true;
          logger.info(
            part.onMainThread === true
              ? 'sink wrote its first stream batch encoded from JSON text, on the main thread'
              : 'sink wrote its first stream batch encoded in a worker thread',
            {
              sink: this.name,
              events: count,
            },
          );
        }
        this.throttle?.written(this.options.pipeline, this.name, count);
        return;
      } catch (err) {
        stats.writeErrors++;
        if (this.stopped) return;
        if (!isRetriable(err) && recordIndexOf(err) !== undefined) {
          logger.info('the sink refused a record of an encoded batch; writing its events one by one', {
            sink: this.name,
            events: count,
            error: describeError(err),
          });
          await this.write(allEvents());
          return;
        }
        if (!isRetriable(err) || attempt >= retry.maxAttempts) {
          const why = isRetriable(err) ? `still failing after ${attempt} attempts` : 'failed';
          throw new NanosyncError(
            ErrorCode.SinkWriteFailed,
            `sink ${this.name}: writing ${count} encoded events ${why}: ${describeError(err)}`,
            { cause: err, details: { sink: this.name } },
          );
        }
        const delay = backoffDelay(attempt, retry);
        logger.warn('sink write failed, retrying', {
          sink: this.name,
          attempt,
          retry_in_ms: delay,
          error: describeError(err),
        });
        await sleep(delay, this.abort.signal);
        if (this.stopped) return;
      }
    }
  }

  private async writeWithRetries(events: ChangeEvent[]): Promise<{ index: number; error: unknown } | undefined> {
    const { retry, stats, logger, sink } = this.options;
    const policy = this.options.onError ?? 'fail';
    if (this.throttle !== undefined) {
      await this.throttle.wait(this.options.pipeline, this.name, events.length, this.abort.signal);
      if (this.stopped) return undefined;
    }
    for (let attempt = 1; ; attempt++) {
      this.checkLease(`${events.length} events`);
      const started = performance.now();
      try {
        await sink.write(events);
        stats.latency.observe((performance.now() - started) / 1000);
        this.throttle?.written(this.options.pipeline, this.name, events.length);
        return undefined;
      } catch (err) {
        stats.writeErrors++;
        if (this.stopped) return undefined;
        if (!isRetriable(err)) {
          const index = eventIndexOf(err);
          if (index !== undefined && index >= 0 && index < events.length && policy !== 'fail')
            return { index, error: err };
        }
        if (!isRetriable(err) || attempt >= retry.maxAttempts) {
          const why = isRetriable(err) ? `still failing after ${attempt} attempts` : 'failed';
          const hint =
            !isRetriable(err) && eventIndexOf(err) !== undefined
              ? " (one event cannot be written by this sink: set the sink's on_error to dead_letter or skip to get past it)"
              : '';
          throw new NanosyncError(
            ErrorCode.SinkWriteFailed,
            `sink ${this.name}: writing ${events.length} events ${why}: ${describeError(err)}${hint}`,
            {
              cause: err,
              details: { sink: this.name },
            },
          );
        }
        const delay = backoffDelay(attempt, retry);
        logger.warn('sink write failed, retrying', {
          sink: this.name,
          attempt,
          retry_in_ms: delay,
          error: describeError(err),
        });
        await sleep(delay, this.abort.signal);
        if (this.stopped) return undefined;
      }
    }
  }

  /** `on_error` for one event: into the dead-letter target (durably) or skipped; counted and logged. */
  private async setAside(event: ChangeEvent, error: unknown): Promise<void> {
    const { stats, logger, retry, pipeline } = this.options;
    const letter = deadLetterOf(pipeline, this.name, event, error);
    const fields = {
      sink: this.name,
      table: letter.table,
      key: JSON.stringify(letter.key),
      position: letter.position,
      error: deadLetterReason(letter),
    };
    if (this.options.onError === 'skip') {
      stats.skippedEvents++;
      logger.warn('event skipped: the sink cannot write it (on_error: skip)', fields);
      return;
    }
    this.deadLetterTarget ??= this.options.deadLetters!();
    for (let attempt = 1; ; attempt++) {
      this.checkLease('a dead letter');
      try {
        await this.deadLetterTarget.write([letter]);
        break;
      } catch (err) {
        if (this.stopped) return;
        if (!isRetriable(err) || attempt >= retry.maxAttempts) {
          throw new NanosyncError(
            ErrorCode.SinkWriteFailed,
            `sink ${this.name}: the event of table ${letter.table} at ${letter.position} cannot be written and writing its dead letter failed: ${describeError(err)}`,
            { cause: err, details: { sink: this.name, table: letter.table, position: letter.position } },
          );
        }
        await sleep(backoffDelay(attempt, retry), this.abort.signal);
      }
    }
    stats.deadLetters++;
    logger.warn('event dead-lettered: the sink cannot write it (on_error: dead_letter)', fields);
  }

  /**
   * Refuse a write once the pipeline's lease may have run out by the local clock: a server
   * frozen past its lease must not write older row images after the server that took the
   * pipeline over wrote newer ones. Retriable: the run restarts from its checkpoint, and the
   * engine stops it when the next renewal finds the lease gone.
   */
  private checkLease(what: string): void {
    const valid = this.options.leaseValid;
    if (valid === undefined || valid()) return;
    // Logged here, once: while the runner stops (drain after a lost renewal, a shutdown) the
    // refusal ends the lane without any other line, and the log must say why writes stopped.
    if (!this.leaseRefusalLogged) {
      this.leaseRefusalLogged = true;
      this.options.logger.warn(
        'sink write refused: lease expired locally; this server writes nothing more until renewed',
        {
          sink: this.name,
          safeguard: 'lease expired locally',
          not_written: what,
          ...(this.closed ? { lane: 'stopping' } : {}),
        },
      );
    }
    throw new NanosyncError(
      ErrorCode.PipelineLeaseHeld,
      `sink ${this.name}: lease expired locally; not writing ${what} until renewed (the lease of pipeline ${this.options.pipeline} was not confirmed within its time, less a safety margin: another server may run it now)`,
      { retriable: true, details: { sink: this.name, pipeline: this.options.pipeline } },
    );
  }

  /** Close the dead-letter target, if one was opened. */
  async closeDeadLetters(): Promise<void> {
    const target = this.deadLetterTarget;
    this.deadLetterTarget = undefined;
    await target?.close?.();
  }
}

function noop(): void {}

/** Events of an encoded part and of the parts written with it. */
function encodedCount(part: EncodedPart, joined: readonly EncodedPart[] | undefined): number {
  let count = part.info.count;
  if (joined !== undefined) for (const p of joined) count += p.info.count;
  return count;
}
