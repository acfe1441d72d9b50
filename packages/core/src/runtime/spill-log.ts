import { closeSync, mkdirSync, openSync, readSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { crc32 } from 'node:zlib';
import { ErrorCode, NanosyncError } from '../errors.js';
import { describeError } from '../log/logger.js';
import type { ChangeEvent, Position, TableSchema } from '../model.js';
import { sinkFileName } from './sink-file-name.js';

/** One queued item of a sink lane as the spill log keeps it. */
export interface SpilledItem {
  events: ChangeEvent[];
  safePosition: Position | undefined;
  bytes: number;
  commitMs: number | undefined;
  /** Id of a snapshot barrier held in memory by the lane (a barrier is not data). */
  barrier: number | undefined;
}

interface Segment {
  seq: number;
  file: string;
  fd: number;
  /** Bytes written to it. */
  size: number;
  /** Where the next read starts. */
  readAt: number;
}

const HEADER = 8;

/**
 * A sink lane's overflow: an append-only log of queued batches in segment files under
 * `<dir>`, read back in order once the lane's memory queue has room.
 *
 * Each record is `[u32 length][u32 crc32][payload]` with the payload serialised by V8
 * (lossless for every event value: bytes, NaN, nested arrays). Table schemas are not
 * written: events carry an index into a table list the log keeps in memory (a handful of
 * objects per table, one per schema version). A record whose checksum does not match fails
 * the read, and so does a record cut short: the lane stops instead of writing damaged events.
 * A file operation that fails (disk full, folder removed) throws a retriable `NS_R2008`
 * naming the sink and the folder.
 *
 * It is a buffer, not a source of truth: the lane's checkpoint (and so the acknowledged
 * position) never passes what the sink wrote, so after a crash the source re-reads
 * everything the log held. The lane removes what an earlier run left in `dir` when it starts
 * ({@link removeSpillFolder}), and so does the constructor. It is never fsynced.
 * Fully read segments are deleted at once; `bytes` (what the budget counts) is the size of
 * the segments still on disk.
 */
export class SpillLog {
  /** Bytes on disk (unread, plus the read part of the segment being read). */
  bytes = 0;
  /** Records written and not yet read back, and the events in them. */
  records = 0;
  events = 0;
  private readonly segments: Segment[] = [];
  private seq = 0;
  private readonly tables: TableSchema[] = [];
  private readonly tableIds = new Map<TableSchema, number>();

  /** Opens an empty log for `sink`: whatever an earlier run left in `dir` is removed. */
  constructor(
    readonly dir: string,
    readonly sink: string,
    private readonly segmentBytes = 64 * 1024 * 1024,
  ) {
    this.io('create', () => {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
    });
  }

  get empty(): boolean {
    return this.records === 0;
  }

  append(item: SpilledItem): number {
    const events = item.events.map((e) => ({ ...e, table: this.tableId(e.table) }));
    const payload = serialize({
      e: events,
      s: item.safePosition,
      b: item.bytes,
      c: item.commitMs,
      k: item.barrier,
    });
    const header = Buffer.allocUnsafe(HEADER);
    header.writeUInt32LE(payload.length, 0);
    header.writeUInt32LE(crc32(payload), 4);
    let segment = this.segments[this.segments.length - 1];
    if (segment === undefined || segment.size >= this.segmentBytes) segment = this.openSegment();
    const fd = segment.fd;
    this.io('write', () => {
      writeFully(fd, header);
      writeFully(fd, payload);
    });
    const size = HEADER + payload.length;
    segment.size += size;
    this.bytes += size;
    this.records++;
    this.events += item.events.length;
    return size;
  }

  /** The oldest record not read yet, or undefined when the log is empty. */
  shift(): SpilledItem | undefined {
    if (this.records === 0) return undefined;
    let segment = this.segments[0]!;
    while (segment.readAt >= segment.size) {
      this.dropFirstSegment();
      segment = this.segments[0]!;
    }
    const header = Buffer.allocUnsafe(HEADER);
    this.read(segment, header, segment.readAt);
    const length = header.readUInt32LE(0);
    const sum = header.readUInt32LE(4);
    if (length > segment.size - segment.readAt - HEADER) throw this.corrupt(segment, 'a record runs past the end');
    const payload = Buffer.allocUnsafe(length);
    this.read(segment, payload, segment.readAt + HEADER);
    if (crc32(payload) !== sum) throw this.corrupt(segment, 'checksum mismatch');
    segment.readAt += HEADER + length;
    this.records--;
    const raw = deserialize(payload) as {
      e: (Omit<ChangeEvent, 'table'> & { table: number })[];
      s: Position | undefined;
      b: number;
      c: number | undefined;
      k: number | undefined;
    };
    const events = raw.e.map((e) => ({ ...e, table: this.tables[e.table]! }) as ChangeEvent);
    this.events -= events.length;
    if (segment.readAt >= segment.size && this.segments.length > 1) this.dropFirstSegment();
    else if (this.records === 0) this.reset();
    return { events, safePosition: raw.s, bytes: raw.b, commitMs: raw.c, barrier: raw.k };
  }

  /** Remove every segment (the lane stopped; a restart re-reads from the checkpoint). */
  close(): void {
    this.bytes = 0;
    this.records = 0;
    this.events = 0;
    const segments = this.segments.splice(0);
    this.io('remove', () => {
      for (const s of segments) closeSync(s.fd);
      rmSync(this.dir, { recursive: true, force: true });
    });
  }

  private tableId(table: TableSchema): number {
    let id = this.tableIds.get(table);
    if (id === undefined) {
      id = this.tables.length;
      this.tables.push(table);
      this.tableIds.set(table, id);
    }
    return id;
  }

  private openSegment(): Segment {
    const file = path.join(this.dir, `${String(this.seq++).padStart(8, '0')}.spill`);
    const fd = this.io('write', () => openSync(file, 'w+'));
    const segment: Segment = { seq: this.seq, file, fd, size: 0, readAt: 0 };
    this.segments.push(segment);
    return segment;
  }

  private dropFirstSegment(): void {
    const segment = this.segments.shift()!;
    this.bytes -= segment.size;
    this.io('remove', () => {
      closeSync(segment.fd);
      unlinkSync(segment.file);
    });
  }

  /** Everything read: start over in one empty segment, so the budget counts only what waits. */
  private reset(): void {
    while (this.segments.length > 0) this.dropFirstSegment();
    this.bytes = 0;
  }

  /** Read `buffer.length` bytes at `position`; a record cut short is damage, any other failure an I/O error. */
  private read(segment: Segment, buffer: Buffer, position: number): void {
    const done = this.io('read', () => readFully(segment.fd, buffer, position));
    if (done < buffer.length) throw this.corrupt(segment, `a record is cut short at byte ${position + done}`);
  }

  private corrupt(segment: Segment, why: string): NanosyncError {
    return new NanosyncError(
      ErrorCode.SinkSpillFailed,
      `sink ${this.sink}: the spill log ${segment.file} is damaged at byte ${segment.readAt} (${why}); the sink restarts from its checkpoint`,
      { retriable: true, details: { sink: this.sink, folder: this.dir, file: segment.file } },
    );
  }

  /** A file operation of the log; its failure becomes a retriable `NS_R2008` naming the sink and the folder. */
  private io<T>(what: 'create' | 'write' | 'read' | 'remove', fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw spillIoError(this.sink, this.dir, what, err);
    }
  }
}

function writeFully(fd: number, buffer: Buffer): void {
  let done = 0;
  while (done < buffer.length) done += writeSync(fd, buffer, done, buffer.length - done);
}

/** Reads until `buffer` is full or the file ends; returns the bytes read. */
function readFully(fd: number, buffer: Buffer, position: number): number {
  let done = 0;
  while (done < buffer.length) {
    const n = readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function spillIoError(sink: string, dir: string, what: string, err: unknown): NanosyncError {
  return new NanosyncError(
    ErrorCode.SinkSpillFailed,
    `sink ${sink}: could not ${what} its spill log in ${dir}: ${describeError(err)}; the pipeline restarts from the sinks' checkpoints`,
    { retriable: true, cause: err, details: { sink, folder: dir } },
  );
}

/**
 * Remove what an earlier run left in a sink's spill folder. A spill log is never replayed
 * (the stream is read again from the checkpoints), so an old one is garbage.
 */
export function removeSpillFolder(dir: string, sink: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    throw spillIoError(sink, dir, 'remove', err);
  }
}

/** `<state folder>/spill/<pipeline>/<sink>`. */
export function spillDir(dataDir: string, pipeline: string, sink: string): string {
  return path.join(dataDir, 'spill', pipeline, sinkFileName(sink));
}
