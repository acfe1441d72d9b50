import { describe, expect, it } from 'vitest';
import { UNCHANGED_TOAST, decodePgOutput, formatPgTimestamp } from '../../src/stream/pgoutput.js';
import { rawChangeMessage } from '../../src/stream/raw-changes.js';
import * as fx from './fixtures/pgoutput-messages.js';

describe('pgoutput decoding (golden bytes)', () => {
  it('Begin: final LSN, commit time, xid', () => {
    expect(decodePgOutput(fx.BEGIN)).toEqual({
      tag: 'begin',
      finalLsn: 0x16b3c4d8n,
      commitTime: 0x0002ba61fea33240n,
      xid: 742,
    });
  });

  it('Commit: commit LSN and end LSN', () => {
    expect(decodePgOutput(fx.COMMIT)).toEqual({
      tag: 'commit',
      flags: 0,
      commitLsn: 0x16b3c4d8n,
      endLsn: 0x16b3c508n,
      commitTime: 0x0002ba61fea33240n,
    });
  });

  it('64-bit fields keep every bit, on both sides of the exact range of a number', () => {
    const lsns = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 64n - 1n];
    const times = [0n, -1n, 2n ** 53n - 1n, -(2n ** 53n), -(2n ** 53n) - 1n, 2n ** 53n, 2n ** 63n - 1n, -(2n ** 63n)];
    for (let i = 0; i < lsns.length; i++) {
      const commit = Buffer.alloc(26);
      commit[0] = 0x43; // 'C', flags 0
      commit.writeBigUInt64BE(lsns[i]!, 2);
      commit.writeBigUInt64BE(lsns[lsns.length - 1 - i]!, 10);
      commit.writeBigInt64BE(times[i]!, 18);
      expect(decodePgOutput(commit)).toEqual({
        tag: 'commit',
        flags: 0,
        commitLsn: lsns[i],
        endLsn: lsns[lsns.length - 1 - i],
        commitTime: times[i],
      });
    }
  });

  it('commit times become ISO 8601 UTC with microseconds', () => {
    expect(formatPgTimestamp(0x0002ba61fea33240n)).toBe('2024-05-01T12:00:00.123456Z');
    expect(formatPgTimestamp(0n)).toBe('2000-01-01T00:00:00.000000Z');
    expect(formatPgTimestamp(-1n)).toBe('1999-12-31T23:59:59.999999Z');
    // The second's text is kept from call to call: the next microsecond, the next second, back again.
    expect(formatPgTimestamp(0x0002ba61fea33241n)).toBe('2024-05-01T12:00:00.123457Z');
    expect(formatPgTimestamp(0x0002ba61fea33240n + 1_000_000n)).toBe('2024-05-01T12:00:01.123456Z');
    expect(formatPgTimestamp(0x0002ba61fea33240n + 876_543n)).toBe('2024-05-01T12:00:00.999999Z');
    expect(formatPgTimestamp(0x0002ba61fea33240n - 123_456n)).toBe('2024-05-01T12:00:00.000000Z');
    // Beyond what a Number holds exactly (year 2285 and later): the exact path.
    expect(formatPgTimestamp(9_000_000_000_000_000n)).toBe('2285-03-13T16:00:00.000000Z');
  });

  it('Relation: columns, types, modifiers, identity flags and replica identity', () => {
    expect(decodePgOutput(fx.RELATION_ORDERS)).toEqual({
      tag: 'relation',
      relationId: 16385,
      schema: 'public',
      name: 'orders',
      replicaIdentity: 'default',
      columns: [
        { name: 'id', typeOid: 20, typeModifier: -1, isKey: true },
        { name: 'note', typeOid: 25, typeModifier: -1, isKey: false },
        { name: 'payload', typeOid: 17, typeModifier: -1, isKey: false },
      ],
    });
    const full = decodePgOutput(fx.RELATION_ORDERS_FULL);
    expect(full).toMatchObject({ replicaIdentity: 'full' });
    expect(full.tag === 'relation' && full.columns.every((c) => c.isKey)).toBe(true);
  });

  it('Insert keeps values as the server text, UTF-8 decoded', () => {
    expect(decodePgOutput(fx.INSERT)).toEqual({
      tag: 'insert',
      relationId: 16385,
      newTuple: ['42', 'héllo', '\\x00ff'],
    });
    expect(decodePgOutput(fx.INSERT_NULL)).toEqual({ tag: 'insert', relationId: 16385, newTuple: ['43', null, '\\x'] });
  });

  it('values keep their text whatever characters come before them, and do not change when the receive buffer is reused', () => {
    const text = (value: string) => {
      const b = Buffer.from(value, 'utf8');
      return `74 ${b.length.toString(16).padStart(8, '0')} ${b.toString('hex')}`;
    };
    const update = (values: string[]) =>
      fx.bytes(
        '55 00004001',
        '4b 0001',
        text(values[0]!),
        '4e',
        values.length.toString(16).padStart(4, '0'),
        ...values.map(text),
      );
    const ascii = ['7', 'a value longer than thirteen characters', '', '{"k":[1,2]}', 'x'];
    const payload = update(ascii);
    const message = decodePgOutput(payload);
    // The driver reuses its receive buffer: the values must not change with it.
    payload.fill(0x41);
    expect(message).toEqual({ tag: 'update', relationId: 16385, oldKind: 'key', oldTuple: ['7'], newTuple: ascii });
    // A multi-byte character before ASCII values: byte and character offsets differ from there on.
    const mixed = ['7', 'naïve', 'after', '日本', 'end'];
    expect(decodePgOutput(update(mixed))).toEqual({
      tag: 'update',
      relationId: 16385,
      oldKind: 'key',
      oldTuple: ['7'],
      newTuple: mixed,
    });
  });

  it("Update: 'u' columns are marked unchanged, not NULL", () => {
    const message = decodePgOutput(fx.UPDATE_TOAST_UNCHANGED);
    expect(message).toEqual({ tag: 'update', relationId: 16385, newTuple: ['42', 'new', UNCHANGED_TOAST] });
    expect(message).not.toHaveProperty('oldTuple');
  });

  it("Update: 'K' key tuple and 'O' old tuple", () => {
    expect(decodePgOutput(fx.UPDATE_KEY_CHANGED)).toEqual({
      tag: 'update',
      relationId: 16385,
      oldKind: 'key',
      oldTuple: ['42', null, null],
      newTuple: ['43', 'x', UNCHANGED_TOAST],
    });
    expect(decodePgOutput(fx.UPDATE_FULL)).toEqual({
      tag: 'update',
      relationId: 16385,
      oldKind: 'old',
      oldTuple: ['42', 'old', '\\xab'],
      newTuple: ['42', 'new', UNCHANGED_TOAST],
    });
  });

  it('Delete with key or old tuple', () => {
    expect(decodePgOutput(fx.DELETE_KEY)).toEqual({
      tag: 'delete',
      relationId: 16385,
      oldKind: 'key',
      oldTuple: ['42', null, null],
    });
    expect(decodePgOutput(fx.DELETE_FULL)).toEqual({
      tag: 'delete',
      relationId: 16385,
      oldKind: 'old',
      oldTuple: ['42', 'old', null],
    });
  });

  it('Truncate, Type, Origin and logical decoding messages', () => {
    expect(decodePgOutput(fx.TRUNCATE)).toEqual({
      tag: 'truncate',
      relationIds: [16385, 16386],
      cascade: true,
      restartIdentity: true,
    });
    expect(decodePgOutput(fx.TYPE_MOOD)).toEqual({ tag: 'type', typeOid: 16640, schema: 'public', name: 'mood' });
    expect(decodePgOutput(fx.ORIGIN)).toEqual({ tag: 'origin', originLsn: 0xa000010n, name: 'shop' });
    const message = decodePgOutput(fx.LOGICAL_MESSAGE);
    expect(message).toMatchObject({ tag: 'message', transactional: true, lsn: 0x16b3c4e0n, prefix: 'nanosync' });
    expect(message.tag === 'message' && Buffer.from(message.content).toString()).toBe('abc');
  });

  it('copies a logical message payload only for the prefix it is asked to keep', () => {
    const kept = decodePgOutput(fx.LOGICAL_MESSAGE, { keepMessagePrefix: 'nanosync' });
    expect(kept.tag === 'message' && Buffer.from(kept.content).toString()).toBe('abc');
    expect(kept).not.toHaveProperty('contentSkipped');
    expect(decodePgOutput(fx.LOGICAL_MESSAGE, { keepMessagePrefix: 'nanosync' })).not.toHaveProperty('contentSkipped');
    // A sub-prefix ("<prefix>.<part>") is kept too; a longer name is not.
    expect(decodePgOutput(fx.LOGICAL_MESSAGE, { keepMessagePrefix: 'nano' })).toHaveProperty('contentSkipped', true);
    const sub = fx.bytes(
      '4d 00 00000000 16B3C4E0',
      Buffer.from('nanosync.attach\0').toString('hex'),
      '00000003 616263',
    );
    const kept2 = decodePgOutput(sub, { keepMessagePrefix: 'nanosync' });
    expect(kept2.tag === 'message' && Buffer.from(kept2.content).toString()).toBe('abc');
    const other = decodePgOutput(fx.LOGICAL_MESSAGE, { keepMessagePrefix: 'nanosync.watermark.other' });
    expect(other).toMatchObject({ tag: 'message', prefix: 'nanosync', lsn: 0x16b3c4e0n, contentSkipped: true });
    expect(other.tag === 'message' && other.content.length).toBe(0);
    // A skipped payload is still length-checked.
    expect(() =>
      decodePgOutput(fx.LOGICAL_MESSAGE.subarray(0, fx.LOGICAL_MESSAGE.length - 1), { keepMessagePrefix: 'x' }),
    ).toThrow(/ends early/);
  });

  it('binary column values are copied out of the receive buffer', () => {
    const payload = fx.bytes('49 00004001 4e 0001', '62 00000002 beef');
    const message = decodePgOutput(payload);
    payload.fill(0);
    expect(message.tag === 'insert' && Buffer.from(message.newTuple[0] as Uint8Array).toString('hex')).toBe('beef');
  });

  it('namespace "" stands for pg_catalog', () => {
    const message = decodePgOutput(fx.bytes('59 00000019 00 7465787400'));
    expect(message).toEqual({ tag: 'type', typeOid: 25, schema: 'pg_catalog', name: 'text' });
  });

  it('rejects truncated, over-long and unknown messages with a protocol error', () => {
    expect(() => decodePgOutput(fx.INSERT.subarray(0, fx.INSERT.length - 1))).toThrow(
      expect.objectContaining({ code: 'NS_P4009', message: expect.stringMatching(/ends early/) }),
    );
    expect(() => decodePgOutput(Buffer.concat([fx.COMMIT, Buffer.from([0])]))).toThrow(/trailing bytes/);
    expect(() => decodePgOutput(fx.bytes('53 000002e6 01'))).toThrow(/unexpected message type 'S'/);
    expect(() => decodePgOutput(fx.bytes('49 00004001 4e 0001 78'))).toThrow(/unknown tuple column kind 0x78/);
    expect(() => decodePgOutput(fx.bytes('49 00004001 4b 0000'))).toThrow(/expected 'N'/);
    expect(() => decodePgOutput(fx.bytes('52 00004001 7000 7400 7a 0000'))).toThrow(/unknown replica identity/);
    expect(() => decodePgOutput(Buffer.alloc(0))).toThrow(/empty message/);
  });

  it('reads a message in place behind the XLogData header, as it reads it alone', () => {
    const header = Buffer.alloc(25, 0x77);
    const messages = Object.values(fx).filter((value): value is Buffer => Buffer.isBuffer(value));
    expect(messages.length).toBeGreaterThan(15);
    for (const message of messages) {
      const inPlace = Buffer.concat([header, message]);
      expect(decodePgOutput(inPlace, {}, 25)).toEqual(decodePgOutput(message));
      expect(rawChangeMessage(inPlace, 25).payload).toEqual(message);
    }
    // Errors name offsets within the message, not within the chunk.
    const cut = Buffer.concat([header, fx.INSERT.subarray(0, fx.INSERT.length - 1)]);
    expect(() => decodePgOutput(cut, {}, 25)).toThrow(/ends early \(need 6 bytes at offset 31 of 36\)/);
    expect(() => decodePgOutput(fx.INSERT.subarray(0, fx.INSERT.length - 1))).toThrow(/at offset 31 of 36\)/);
    expect(() => decodePgOutput(header, {}, 25)).toThrow(/empty message/);
    expect(() => rawChangeMessage(Buffer.concat([header, fx.bytes('49 0000')]), 25)).toThrow(
      /change message of 3 bytes/,
    );
  });

  it('reads a message that the socket buffer holds with more after it, to its end and no further', () => {
    const header = Buffer.alloc(25, 0x77);
    // What follows the message in the buffer: the next message, here bytes with no zero among them.
    const after = Buffer.alloc(40, 0x41);
    const messages = Object.values(fx).filter((value): value is Buffer => Buffer.isBuffer(value));
    for (const message of messages) {
      const buffer = Buffer.concat([header, message, after]);
      const end = 25 + message.length;
      expect(decodePgOutput(buffer, {}, 25, end)).toEqual(decodePgOutput(message));
      expect(rawChangeMessage(buffer, 25, end).payload).toEqual(message);
    }
    // A message cut short reports its own end, even with bytes after it.
    const insert = Buffer.concat([header, fx.INSERT, after]);
    expect(() => decodePgOutput(insert, {}, 25, 25 + fx.INSERT.length - 1)).toThrow(/at offset 31 of 36\)/);
    expect(() => decodePgOutput(insert, {}, 25, 25)).toThrow(/empty message/);
    // A trailing byte within the range is still one too many.
    const commit = Buffer.concat([header, fx.COMMIT, Buffer.from([0])]);
    expect(() => decodePgOutput(commit, {}, 25, commit.length)).toThrow(/1 unexpected trailing bytes/);
    // A name whose zero lies past the end is unterminated.
    const relation = fx.RELATION_ORDERS;
    const zero = relation.indexOf(0, 5);
    const cutName = Buffer.concat([header, relation.subarray(0, zero), Buffer.from([0])]);
    expect(() => decodePgOutput(cutName, {}, 25, 25 + zero)).toThrow(/unterminated string at offset 5/);
  });
});
