/**
 * An S0 worker (run by core's OrderedWorkerPool): turns one chunk into the framed Kafka
 * records of `s0-rows.ts`, from what its design hands it:
 * - `clone`: decoded events, copied to it by structured clone;
 * - `transfer`: the chunk's COPY text bytes, moved to it (it decodes and encodes);
 * - `stream`: pgoutput Insert messages of a batch, packed into one buffer and moved to it (it
 *   decodes them as the stream does and encodes);
 * - `own`: nothing but the chunk's number: it has the rows itself, as a worker reading its
 *   own snapshot partition through its own connection would (made by `prepare`, not timed).
 * The framed buffer goes back moved, not copied.
 */
import { serveTasks } from '@nanosync/core';
import {
  copyChunk,
  decodeChunk,
  decodeMessages,
  encodeFramed,
  type S0Task,
  s0Position,
  s1Relation,
  s1Table,
  unpackMessages,
} from '../s0-rows.js';

serveTasks<undefined, S0Task, ArrayBuffer>(({ index, size }) => {
  const table = s1Table();
  const relation = s1Relation(table);
  const own = new Map<number, Buffer>();
  const reply = (framed: Buffer) => ({
    result: framed.buffer as ArrayBuffer,
    transfer: [framed.buffer as ArrayBuffer],
  });
  return (task) => {
    if ('prepare' in task) {
      const { chunks, rowsPerChunk } = task.prepare;
      for (let chunk = index; chunk < chunks; chunk += size)
        if (!own.has(chunk)) own.set(chunk, copyChunk(1 + chunk * rowsPerChunk, rowsPerChunk));
      return reply(Buffer.allocUnsafeSlow(0));
    }
    if ('events' in task)
      return reply(
        encodeFramed(
          task.events.map((e) => ({ ...e, table: table.schema })),
          task.format,
        ),
      );
    if ('messages' in task)
      return reply(
        encodeFramed(
          decodeMessages(unpackMessages(new Uint8Array(task.messages)), relation, task.position),
          task.format,
        ),
      );
    if ('copy' in task)
      return reply(encodeFramed(decodeChunk(new Uint8Array(task.copy), table, task.position), task.format));
    const copy = own.get(task.chunk);
    if (!copy) throw new Error(`S0 worker ${index}: chunk ${task.chunk} is not one of mine`);
    return reply(encodeFramed(decodeChunk(copy, table, s0Position(task.chunk)), task.format));
  };
});
