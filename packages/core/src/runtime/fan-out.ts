import type { ChangeEvent, Position, Row } from '../model.js';
import { Barrier, type EncodedPart, type SinkLane } from './sink-lane.js';

/**
 * The pipeline's sinks seen as one: a batch goes to every lane, the producer waits only
 * while some lane is full, and the pipeline's resume point is the minimum checkpoint.
 */
export class FanOut {
  constructor(readonly lanes: readonly SinkLane[]) {}

  start(): void {
    for (const lane of this.lanes) lane.start();
  }

  /**
   * Hand a batch to every lane. Returns true when some lane is now full: the caller must
   * `await waitForRoom()` before taking more from the source (that is the backpressure).
   */
  push(events: ChangeEvent[], safePosition: Position | undefined, commitMs?: number): boolean {
    const bytes = events.length === 0 ? 0 : estimateBytes(events);
    let full = false;
    for (const lane of this.lanes) {
      lane.push(events, safePosition, bytes, commitMs);
      if (lane.full) full = true;
    }
    return full;
  }

  /**
   * Hand a chunk a worker encoded to every lane: `parts[i]` to lane i (the lanes are in the
   * order of the pipeline's sinks). Returns true when some lane is now full, like `push`.
   * A stream batch comes with its `safePosition` and newest commit time, as in `push`.
   */
  pushEncoded(parts: readonly EncodedPart[], safePosition?: Position, commitMs?: number): boolean {
    let full = false;
    for (const [i, lane] of this.lanes.entries()) {
      lane.pushEncoded(parts[i]!, safePosition, commitMs);
      if (lane.full) full = true;
    }
    return full;
  }

  /** Some lane is full: the producer must wait (`waitForRoom`). */
  get full(): boolean {
    return this.lanes.some((lane) => lane.full);
  }

  async waitForRoom(): Promise<void> {
    for (const lane of this.lanes) if (lane.full) await lane.waitForRoom();
  }

  /** A marker behind everything pushed so far; resolves when every lane has made that durable. */
  barrier(): Promise<void> {
    const barrier = new Barrier(this.lanes.length);
    for (const lane of this.lanes) lane.pushBarrier(barrier);
    return barrier.promise;
  }

  /** Minimum checkpoint over the sinks, or undefined while some sink has none (nothing to acknowledge yet). */
  minCheckpoint(compare: (a: Position, b: Position) => number): Position | undefined {
    let min: Position | undefined;
    for (const lane of this.lanes) {
      if (lane.checkpoint === undefined) return undefined;
      if (min === undefined || compare(lane.checkpoint, min) < 0) min = lane.checkpoint;
    }
    return min;
  }

  /** Where the stream resumes: the minimum checkpoint, counting a sink without one as `start`. */
  resumePosition(start: Position, compare: (a: Position, b: Position) => number): Position {
    let min: Position | undefined;
    for (const lane of this.lanes) {
      const p = lane.checkpoint ?? start;
      if (min === undefined || compare(p, min) < 0) min = p;
    }
    return min ?? start;
  }

  async drain(): Promise<void> {
    await Promise.all(this.lanes.map((lane) => lane.drain()));
  }

  stop(): void {
    for (const lane of this.lanes) lane.stop();
  }
}

/**
 * Approximate heap size of a batch, for the queue's byte bound: a few events are measured
 * and the average is scaled, so the cost does not grow with the batch.
 */
export function estimateBytes(events: readonly ChangeEvent[]): number {
  const n = events.length;
  if (n === 0) return 0;
  const samples = n < 3 ? n : 3;
  let total = 0;
  for (let s = 0; s < samples; s++) {
    const e = events[Math.floor((s * (n - 1)) / Math.max(1, samples - 1))]!;
    total += 96 + rowBytes(e.after) + rowBytes(e.before) + rowBytes(e.key);
  }
  return Math.ceil((total / samples) * n);
}

function rowBytes(row: Row | undefined): number {
  if (row === undefined) return 0;
  let n = 0;
  for (const key in row) {
    n += 16 + key.length;
    const v = row[key];
    if (typeof v === 'string') n += 2 * v.length;
    else if (v instanceof Uint8Array) n += v.byteLength;
    else if (Array.isArray(v)) n += 16 * v.length;
    else n += 8;
  }
  return n;
}
