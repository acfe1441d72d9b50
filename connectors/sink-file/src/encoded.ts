/**
 * Lines encoded in a worker thread (`Sink.writeEncoded`), between the file sink's worker
 * module (`./worker`) and `FileSink.writeEncoded`. One buffer per batch, little-endian:
 *
 *   u32 run count, per run (consecutive events of one table, in event order):
 *     u32 length + UTF-8 schema, u32 length + UTF-8 table name, u32 line count,
 *     u32 length + the run's JSON lines (each ending in LF)
 *
 * Appending the runs in order gives every file exactly the lines, in the order, that
 * `write()` gives it — with one file per table and with one file for all (`file:`).
 */
import type { ChangeEvent, EncodedBatch } from '@nanosync/core';
import { toJsonLine } from './encode.js';

/** One run of a framed batch: consecutive lines of one table. */
export interface LineGroup {
  table: { schema: string; name: string };
  lines: number;
  /** The lines, UTF-8, each ending in LF (a view into the batch). */
  data: Buffer;
}

/** The events as JSON lines in runs per table, in one buffer of its own (movable). */
export function encodeLines(events: readonly ChangeEvent[]): EncodedBatch {
  const runs: { schema: string; name: string; lines: string[]; bytes: number }[] = [];
  let run: (typeof runs)[number] | undefined;
  for (const event of events) {
    if (run === undefined || run.schema !== event.table.schema || run.name !== event.table.name) {
      run = { schema: event.table.schema, name: event.table.name, lines: [], bytes: 0 };
      runs.push(run);
    }
    const line = toJsonLine(event);
    run.lines.push(line);
    run.bytes += Buffer.byteLength(line);
  }
  let total = 4;
  let size = 0;
  for (const r of runs) {
    total += 16 + Buffer.byteLength(r.schema) + Buffer.byteLength(r.name) + r.bytes;
    size += r.bytes;
  }
  const out = Buffer.allocUnsafeSlow(total);
  let at = 0;
  const u32 = (n: number) => {
    out.writeUInt32LE(n, at);
    at += 4;
  };
  const text = (s: string) => {
    const length = out.write(s, at + 4, 'utf8');
    u32(length);
    at += length;
  };
  u32(runs.length);
  for (const r of runs) {
    text(r.schema);
    text(r.name);
    u32(r.lines.length);
    u32(r.bytes);
    for (const line of r.lines) at += out.write(line, at, 'utf8');
  }
  if (at !== total) throw new Error(`file sink framing: wrote ${at} bytes, expected ${total}`);
  return { bytes: out.buffer as ArrayBuffer, records: events.length, size };
}

/** The runs of a framed batch (views into `bytes`). */
export function decodeLineGroups(bytes: ArrayBuffer | Uint8Array): LineGroup[] {
  const buf =
    bytes instanceof Uint8Array ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : Buffer.from(bytes);
  let at = 0;
  const u32 = () => {
    if (at + 4 > buf.length) throw new Error(`file sink framing: encoded batch ends early at byte ${at}`);
    const n = buf.readUInt32LE(at);
    at += 4;
    return n;
  };
  const view = () => {
    const length = u32();
    if (at + length > buf.length) throw new Error(`file sink framing: encoded batch ends early at byte ${at}`);
    const v = buf.subarray(at, at + length);
    at += length;
    return v;
  };
  const groups: LineGroup[] = new Array(u32());
  for (let i = 0; i < groups.length; i++) {
    const schema = view().toString('utf8');
    const name = view().toString('utf8');
    const lines = u32();
    groups[i] = { table: { schema, name }, lines, data: view() };
  }
  if (at !== buf.length) throw new Error('file sink framing: trailing bytes after the encoded batch');
  return groups;
}
