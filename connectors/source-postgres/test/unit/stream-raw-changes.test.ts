import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import type { ChangeEvent } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { encodePosition } from '../../src/position.js';
import { decodeChange, finishBatch, pendingChange, rawChangeMessage } from '../../src/stream/raw-changes.js';
import { decodePgOutput } from '../../src/stream/pgoutput.js';
import { buildRelation, type StreamRelation } from '../../src/stream/relations.js';
import { TypeCatalog } from '../../src/types/index.js';
import { createChangeDecoder, createJsonChangeWriter } from '../../src/worker.js';
import { changeTexts, eventTexts } from '../fixtures/json-texts.js';
import * as fx from './fixtures/pgoutput-messages.js';

/**
 * Raw stream batches (issue 19 item 3): changes left undecoded by the session are packed per
 * batch and decoded by the worker module's `createChangeDecoder` — with the relations cloned
 * as a worker thread receives them — into exactly the events the stream decodes inline.
 */

function relationFrom(payload: Buffer): StreamRelation {
  const message = decodePgOutput(payload);
  if (message.tag !== 'relation') throw new Error('not a relation');
  return buildRelation(message, new TypeCatalog(), { notNull: new Set(['id']), primaryKey: ['id'] });
}

/** What a worker thread gets: a structured clone, as postMessage makes it. */
function cloned<T>(value: T, transfer: ArrayBuffer[] = []): T {
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(value, transfer);
  const received = receiveMessageOnPort(port2)!.message as T;
  port1.close();
  return received;
}

const context = (lsn: bigint, index: number) => ({
  position: encodePosition(lsn, index),
  commitTime: `2024-05-01T12:00:0${index}.123456Z`,
});

describe('raw stream batches', () => {
  const orders = relationFrom(fx.RELATION_ORDERS);
  const altered = relationFrom(fx.RELATION_ORDERS_ALTERED);
  const changes: [StreamRelation, Buffer][] = [
    [orders, fx.INSERT],
    [orders, fx.INSERT_NULL],
    [orders, fx.UPDATE_TOAST_UNCHANGED],
    [orders, fx.UPDATE_KEY_CHANGED],
    [orders, fx.DELETE_KEY],
    // The table altered mid-batch: the next changes use the new relation.
    [altered, fx.INSERT_ALTERED],
  ];
  const inline = changes.map(([relation, payload], i) => decodeChange(relation, payload, context(0x100n, i + 1)));

  it('a batch of changes only goes raw, and a worker decodes it into the events the stream decodes inline', () => {
    const pending = changes.map(([relation, payload], i) =>
      pendingChange(relation, rawChangeMessage(payload), context(0x100n, i + 1)),
    );
    const batch = finishBatch({ events: pending, safePosition: encodePosition(0x100n, 6) }, () => {
      throw new Error('not mixed');
    });
    expect(batch.events).toEqual([]);
    expect(batch.safePosition).toBe(encodePosition(0x100n, 6));
    const raw = batch.raw!;
    expect(raw.count).toBe(6);
    expect(raw.first).toBe(inline[0]!.position);
    expect(raw.last).toBe(inline[5]!.position);
    expect(raw.commitTime).toBe(inline[5]!.commitTime);
    expect(raw.tables.map((t) => t.events)).toEqual([5, 1]);
    expect(raw.tables[0]!.table).toBe(orders.table);

    // In a worker: the bytes moved, the setup cloned.
    const moved = cloned({ bytes: raw.bytes, setup: raw.setup }, [raw.bytes]);
    expect(raw.bytes.byteLength).toBe(0);
    const decode = createChangeDecoder();
    const events = decode(new Uint8Array(moved.bytes), moved.setup);
    expect(events).toEqual(inline);
    // One table object per relation version, shared by the batches that use it.
    const again = decode(new Uint8Array(moved.bytes), cloned(moved.setup));
    expect(again[0]!.table).toBe(events[0]!.table);
    expect(again[5]!.table).not.toBe(events[0]!.table);
  });

  it('a batch that mixes them with other events is decoded here, in order', () => {
    const truncate: ChangeEvent = {
      op: 'truncate',
      table: orders.table,
      key: {},
      position: encodePosition(0x100n, 3),
      commitTime: context(0x100n, 3).commitTime,
    };
    const events = [
      pendingChange(orders, rawChangeMessage(fx.INSERT), context(0x100n, 1)),
      pendingChange(orders, rawChangeMessage(fx.INSERT_NULL), context(0x100n, 2)),
      truncate,
      pendingChange(orders, rawChangeMessage(fx.DELETE_KEY), context(0x100n, 4)),
    ];
    let mixed = 0;
    const batch = finishBatch({ events }, () => mixed++);
    expect(mixed).toBe(1);
    expect(batch.raw).toBeUndefined();
    expect(batch.safePosition).toBeUndefined();
    expect(batch.events).toEqual([
      decodeChange(orders, fx.INSERT, context(0x100n, 1)),
      decodeChange(orders, fx.INSERT_NULL, context(0x100n, 2)),
      truncate,
      decodeChange(orders, fx.DELETE_KEY, context(0x100n, 4)),
    ]);
  });

  it('copies the message where it arrived (the connection reuses its buffer)', () => {
    const arrived = Buffer.from(fx.INSERT);
    const message = rawChangeMessage(arrived);
    arrived.fill(0);
    expect(decodeChange(orders, message.payload, context(0x100n, 1))).toEqual(inline[0]);
    expect(message.relationId).toBe(0x4001);
  });
});

describe('raw stream batches as JSON text (createJsonChangeWriter)', () => {
  const orders = relationFrom(fx.RELATION_ORDERS);
  const full = relationFrom(fx.RELATION_ORDERS_FULL);
  const altered = relationFrom(fx.RELATION_ORDERS_ALTERED);
  const rawOf = (changes: [StreamRelation, Buffer][]) =>
    finishBatch(
      {
        events: changes.map(([relation, payload], i) =>
          pendingChange(relation, rawChangeMessage(payload), context(0x200n, i + 1)),
        ),
      },
      () => {
        throw new Error('not mixed');
      },
    ).raw!;

  it('writes each change’s images as the decoded event holds them: key-only, full and unchanged-TOAST images included', () => {
    const raw = rawOf([
      [orders, fx.INSERT],
      [orders, fx.INSERT_NULL],
      [orders, fx.UPDATE_TOAST_UNCHANGED],
      [orders, fx.UPDATE_KEY_CHANGED],
      [full, fx.UPDATE_FULL],
      [orders, fx.DELETE_KEY],
      [full, fx.DELETE_FULL],
      [altered, fx.INSERT_ALTERED],
    ]);
    const json = createJsonChangeWriter()(new Uint8Array(raw.bytes), raw.setup)!;
    const events = createChangeDecoder()(new Uint8Array(raw.bytes), raw.setup);
    expect(changeTexts(json)).toEqual(events.map(eventTexts));
    // Spelled out for two of them: the key-only before of a key change, and a bytea value.
    expect(changeTexts(json)[3]).toMatchObject({ op: 'update', before: ['"42"', '', ''], after: ['"43"', '"x"', ''] });
    expect(changeTexts(json)[0]!.after).toEqual(['"42"', '"héllo"', '"AP8="']);
    expect(json.tables.map((t) => t.columns.length)).toEqual(events.map((e) => e.table.columns.length));
  });

  it('writes text that is not valid UTF-8 as the decoded event holds it (replacement characters), byte for byte', () => {
    // A SQL_ASCII database sends a text column's bytes as they are stored.
    const invalid = ['61ff62', 'c328', 'e282', 'c0af', 'eda080', 'f4908080', '80', '68c3a9ff'];
    const payloads = invalid.map((hex) =>
      fx.bytes(
        '49 00004001 4e 0003',
        '74 00000002 3432',
        `74 ${(hex.length / 2).toString(16).padStart(8, '0')} ${hex}`,
        '74 00000006 5c7830306666',
      ),
    );
    const raw = rawOf(payloads.map((payload) => [orders, payload]));
    const json = createJsonChangeWriter()(new Uint8Array(raw.bytes), raw.setup)!;
    const events = createChangeDecoder()(new Uint8Array(raw.bytes), raw.setup);
    expect(json.count).toBe(invalid.length);
    const text = Buffer.from(json.text.buffer, json.text.byteOffset, json.text.byteLength);
    for (const [i, event] of events.entries()) {
      const note = json.images[2 * i + 1]! + 1;
      // Bytes, not a string: reading the output as UTF-8 would replace bad bytes by itself.
      const written = text.subarray(json.ends[note - 1], json.ends[note]);
      expect(written.toString('hex'), invalid[i]).toBe(
        Buffer.from(JSON.stringify(event.after!.note), 'utf8').toString('hex'),
      );
      expect(String(event.after!.note)).toContain('\ufffd');
    }
  });

  it('declines a batch it cannot write (a binary value; wrong width, cut short, bytes left over, a value that does not decode, where the decoder throws)', () => {
    const writer = createJsonChangeWriter();
    const binary = Buffer.from(fx.INSERT_NULL);
    binary[binary.length - 7] = 0x62; // the last column sent as 'b'
    // A binary value (never asked for) is left to the decoder.
    const binaryRaw = rawOf([[orders, binary]]);
    expect(writer(new Uint8Array(binaryRaw.bytes), binaryRaw.setup)).toBeUndefined();
    const bad = [
      fx.INSERT_ALTERED.subarray(0, fx.INSERT_ALTERED.length - 2), // cut short
      Buffer.concat([fx.INSERT, Buffer.from([0])]), // a byte left over
      fx.bytes('49 00004001 4e 0002', '74 00000002 3432', '6e'), // two columns, the relation has three
      fx.bytes('49 00004001 4e 0003', '74 00000002 3441', '6e', '6e'), // "4A" is no int8
    ];
    for (const payload of bad) {
      const raw = rawOf([
        [orders, fx.INSERT],
        [orders, payload],
      ]);
      expect(writer(new Uint8Array(raw.bytes), raw.setup)).toBeUndefined();
      expect(() => createChangeDecoder()(new Uint8Array(raw.bytes), raw.setup)).toThrow();
    }
  });
});
