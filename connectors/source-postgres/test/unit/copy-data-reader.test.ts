import { EventEmitter } from 'node:events';
import type { Logger } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { CopyDataReader } from '../../src/stream/copy-data-reader.js';
import { type ReplicationConnection, readCopyData } from '../../src/stream/replication-session.js';

/** Debug lines kept in `lines`. */
function memoryLogger(lines: string[]): Logger {
  const logger: Logger = {
    debug: (message) => lines.push(message),
    info: () => {},
    warn: () => {},
    error: () => {},
    child: () => logger,
  };
  return logger;
}

/** One backend message: type byte, int32 length (itself included), contents. */
function message(type: string, contents: Buffer): Buffer {
  const out = Buffer.alloc(5 + contents.length);
  out.write(type, 0, 'latin1');
  out.writeUInt32BE(4 + contents.length, 1);
  contents.copy(out, 5);
  return out;
}

function filled(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (seed + i * 7) & 0xff;
  return out;
}

/** What a reader handed on, as text: `d:<hex>` for CopyData contents, `<type>:<hex>` for whole others. */
function readAll(chunks: Buffer[]): string[] {
  const seen: string[] = [];
  const reader = new CopyDataReader(
    (buffer, start, end) => seen.push(`d:${buffer.toString('hex', start, end)}`),
    (whole) => seen.push(`${String.fromCharCode(whole[0]!)}:${whole.toString('hex')}`),
  );
  for (const chunk of chunks) reader.push(chunk);
  expect(reader.holding).toBe(false);
  return seen;
}

// CopyBothResponse, CopyData of 0, 1, 40 and 3,000 bytes, a keepalive-sized one, an ErrorResponse, CopyDone.
const MESSAGES = [
  message('W', Buffer.from([0, 0, 0])),
  message('d', Buffer.alloc(0)),
  message('d', Buffer.from([0x77])),
  message('d', filled(40, 1)),
  message('E', Buffer.from('SERROR\0Mboom\0\0', 'latin1')),
  message('d', filled(3000, 9)),
  message('d', filled(18, 3)),
  message('c', Buffer.alloc(0)),
];
const STREAM = Buffer.concat(MESSAGES);
const EXPECTED = MESSAGES.map((m) =>
  m[0] === 0x64 ? `d:${m.toString('hex', 5)}` : `${String.fromCharCode(m[0]!)}:${m.toString('hex')}`,
);

describe('CopyDataReader', () => {
  it('hands on every message in order when the stream arrives in one chunk', () => {
    expect(readAll([STREAM])).toEqual(EXPECTED);
  });

  it('gives the same messages wherever one cut falls', () => {
    for (let cut = 1; cut < STREAM.length; cut++) {
      expect(readAll([STREAM.subarray(0, cut), STREAM.subarray(cut)]), `cut at ${cut}`).toEqual(EXPECTED);
    }
  });

  it('assembles messages from one-byte chunks and from chunks of every size up to 64', () => {
    for (let size = 1; size <= 64; size++) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < STREAM.length; at += size) chunks.push(STREAM.subarray(at, at + size));
      expect(readAll(chunks), `chunks of ${size}`).toEqual(EXPECTED);
    }
  });

  it('gives each CopyData in place, as a range of the chunk that holds it whole', () => {
    const chunk = Buffer.concat([message('d', Buffer.from('abc')), message('d', Buffer.from('de'))]);
    const ranges: [Buffer, number, number][] = [];
    new CopyDataReader(
      (buffer, start, end) => ranges.push([buffer, start, end]),
      () => {},
    ).push(chunk);
    expect(ranges).toEqual([
      [chunk, 5, 8],
      [chunk, 13, 15],
    ]);
  });

  it('holds an unfinished message until the rest arrives', () => {
    const seen: string[] = [];
    const reader = new CopyDataReader(
      (buffer, start, end) => seen.push(buffer.toString('latin1', start, end)),
      () => {},
    );
    const whole = message('d', Buffer.from('hello'));
    reader.push(whole.subarray(0, 3));
    expect(reader.holding).toBe(true);
    expect(seen).toEqual([]);
    reader.push(whole.subarray(3));
    expect(reader.holding).toBe(false);
    expect(seen).toEqual(['hello']);
  });

  it('names a message whose length cannot be right', () => {
    const bad = Buffer.from([0x64, 0, 0, 0, 3]);
    const reader = new CopyDataReader(
      () => {},
      () => {},
    );
    expect(() => reader.push(bad)).toThrow(/message of type 0x64 with length 3/);
  });
});

/**
 * A stand-in for the pg driver's connection (its socket and its events), not the driver: the
 * real one is exercised by the stream integration suites, which also check which way ran.
 */
function standInConnection(driverListeners: number) {
  const socket = new EventEmitter();
  const driverSaw: string[] = [];
  const connection = new EventEmitter();
  for (let i = 0; i < driverListeners; i++)
    socket.on('data', (chunk: Buffer) => driverSaw.push(`${i}:${chunk.toString('hex')}`));
  Object.assign(connection, { stream: Object.assign(socket, { pause() {}, resume() {}, destroy() {} }) });
  return { socket, connection: connection as unknown as ReplicationConnection, driverSaw };
}

describe('readCopyData', () => {
  const copy = message('d', Buffer.from('abc'));
  const ready = message('Z', Buffer.from('I'));

  it("takes the driver's place on the socket: CopyData in place, every other message whole to the driver", () => {
    const { socket, connection, driverSaw } = standInConnection(1);
    const seen: string[] = [];
    const logs: string[] = [];
    const failures: unknown[] = [];
    readCopyData(
      connection,
      (buffer, start, end) => seen.push(buffer.toString('latin1', start, end)),
      (error) => failures.push(error),
      memoryLogger(logs),
    );
    const both = Buffer.concat([copy, ready, copy]);
    socket.emit('data', both.subarray(0, 7));
    socket.emit('data', both.subarray(7));
    expect(seen).toEqual(['abc', 'abc']);
    expect(driverSaw).toEqual([`0:${ready.toString('hex')}`]);
    expect(logs.some((line) => line.includes('CopyData read off the socket'))).toBe(true);
    // A message that cannot be read fails the session rather than throwing on the socket.
    socket.emit('data', Buffer.from([0x64, 0, 0, 0, 1]));
    expect(String(failures[0])).toMatch(/length 1/);
  });

  it("leaves the socket to the driver when it listens some other way, and reads the driver's copyData events", () => {
    const { socket, connection, driverSaw } = standInConnection(2);
    const seen: string[] = [];
    const logs: string[] = [];
    readCopyData(
      connection,
      (buffer, start, end) => seen.push(buffer.toString('latin1', start, end)),
      () => {},
      memoryLogger(logs),
    );
    socket.emit('data', copy);
    expect(driverSaw).toHaveLength(2);
    (connection as unknown as EventEmitter).emit('copyData', { chunk: Buffer.from('xyz') });
    expect(seen).toEqual(['xyz']);
    expect(logs.some((line) => line.includes('the pg driver parses the stream'))).toBe(true);
  });
});
