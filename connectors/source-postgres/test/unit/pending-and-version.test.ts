import { describe, expect, it } from 'vitest';
import { MIN_SERVER_VERSION_NUM, serverVersionCheck } from '../../src/slot/check.js';
import { firstCapturedCommit } from '../../src/slot/pending.js';
import { watermarkWriteError } from '../../src/source.js';
import { keyText, parseAttachMessage } from '../../src/stream/attach-snapshot.js';
import { keyRedefined } from '../../src/stream/change-stream.js';
import * as fx from './fixtures/pgoutput-messages.js';

/** A Begin of another transaction: final LSN 0/16B3C000, committed 2024-05-01T11:00:00Z, xid 700. */
const EARLIER_BEGIN = fx.bytes('42', '00000000 16B3C000', '0002ba61280dac00', '000002BC');
/** Relation "public"."other" (oid 16400 = 0x4010), one key column. */
const RELATION_OTHER = fx.bytes('52 00004010 7075626c696300 6f7468657200 64', '0001', '01 696400 00000014 ffffffff');
const INSERT_OTHER = fx.bytes('49 00004010 4e 0001', '74 00000001 31');
const ORDERS = new Set(['public\u0000orders']);

describe('the paused slot peek (oldest pending commit)', () => {
  it('skips transactions without a change (PostgreSQL 14 sends their Begin and Commit)', () => {
    const messages = [EARLIER_BEGIN, fx.COMMIT, fx.BEGIN, fx.RELATION_ORDERS, fx.INSERT, fx.COMMIT];
    expect(firstCapturedCommit(messages, ORDERS)).toBe('2024-05-01T12:00:00.123456Z');
    expect(firstCapturedCommit([EARLIER_BEGIN, fx.COMMIT])).toBeUndefined();
  });

  it('skips transactions that change only tables the pipeline does not capture', () => {
    const messages = [
      EARLIER_BEGIN,
      RELATION_OTHER,
      INSERT_OTHER,
      fx.COMMIT,
      fx.BEGIN,
      fx.RELATION_ORDERS,
      fx.DELETE_KEY,
    ];
    expect(firstCapturedCommit(messages, ORDERS)).toBe('2024-05-01T12:00:00.123456Z');
    // Without a table list, every published relation counts.
    expect(firstCapturedCommit(messages)).toBe('2024-05-01T11:00:00.000000Z');
  });

  it('reads a change cut after its relation oid, and counts a TRUNCATE of a captured table', () => {
    const cut = fx.INSERT.subarray(0, 5);
    expect(firstCapturedCommit([fx.BEGIN, fx.RELATION_ORDERS, cut], ORDERS)).toBe('2024-05-01T12:00:00.123456Z');
    const truncate = fx.bytes('54 00000001 00 00004001');
    expect(firstCapturedCommit([fx.BEGIN, fx.RELATION_ORDERS, truncate], ORDERS)).toBe('2024-05-01T12:00:00.123456Z');
    expect(
      firstCapturedCommit([fx.BEGIN, RELATION_OTHER, fx.bytes('54 00000001 00 00004010')], ORDERS),
    ).toBeUndefined();
  });

  it('keeps microseconds of the commit time', () => {
    expect(firstCapturedCommit([fx.BEGIN, fx.RELATION_ORDERS, fx.INSERT])).toMatch(/\.123456Z$/);
  });
});

describe('server version', () => {
  it('refuses PostgreSQL before 14 with the reason and the way out', () => {
    const refused = serverVersionCheck(130015, '13.15');
    expect(refused).toMatchObject({ name: 'server_version', ok: false, severity: 'error' });
    expect(refused.message).toContain('PostgreSQL 13.15 is not supported');
    expect(refused.message).toContain('14 or later');
    expect(refused.fix).toContain('upgrade');
    expect(serverVersionCheck(Number.NaN, 'unknown').ok).toBe(false);
    expect(serverVersionCheck(MIN_SERVER_VERSION_NUM, '14.0')).toMatchObject({ ok: true });
    expect(serverVersionCheck(170002, '17.2').ok).toBe(true);
  });
});

describe('watermark write errors', () => {
  const target = { host: 'db.example', port: 6543, database: 'shop', user: 'cdc' };
  it('advise the GRANT only when the privilege is missing (42501)', () => {
    const denied = watermarkWriteError(
      Object.assign(new Error('permission denied for function pg_logical_emit_message'), { code: '42501' }),
      'p1',
      target,
    );
    expect(denied.code).toBe('NS_P4002');
    expect(denied.message).toContain('on db.example:6543/shop');
    expect(denied.message).toContain('(SQLSTATE 42501)');
    expect(denied.message).toContain('GRANT EXECUTE ON FUNCTION');
    expect(denied.message).toContain('TO "cdc";');

    const other = watermarkWriteError(
      Object.assign(new Error('logical decoding requires wal_level >= logical'), { code: '55000' }),
      'p1',
      target,
    );
    expect(other.code).toBe('NS_P4011');
    expect(other.message).toContain('on db.example:6543/shop');
    expect(other.message).toContain('(SQLSTATE 55000)');
    expect(other.message).not.toContain('GRANT');
  });
});

describe('key redefinition', () => {
  it('a renamed key column is not a new key; other columns or another count are', () => {
    const shape = (keys: string[], columns: string[]) => ({ keys, columns });
    const before = shape(['id'], ['id', 'code', 'note']);
    expect(keyRedefined(before, shape(['key_id'], ['key_id', 'code', 'note']))).toBe(false);
    expect(keyRedefined(before, shape(['id'], ['id', 'code']))).toBe(false);
    expect(keyRedefined(before, shape(['code'], ['id', 'code', 'note']))).toBe(true);
    expect(keyRedefined(before, shape(['id', 'code'], ['id', 'code', 'note']))).toBe(true);
    // The old key column still there under its name, a new column as the key: redefined.
    expect(keyRedefined(before, shape(['other'], ['id', 'other', 'code', 'note']))).toBe(true);
  });
});

describe('attached-partition chunk messages', () => {
  const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const ref = { schema: 'public', name: 'orders' };
  it('reads only well-formed messages', () => {
    const low = { attach: 'low', id: 'a1', table: ref, leaf: { schema: 'public', name: 'orders_05' } };
    expect(parseAttachMessage(bytes(low))).toEqual(low);
    expect(parseAttachMessage(bytes({ ...low, attach: 'high', rekey: true }))).toMatchObject({ rekey: true });
    expect(parseAttachMessage(bytes({ ...low, attach: 'middle' }))).toBeUndefined();
    expect(parseAttachMessage(bytes({ ...low, leaf: 'orders_05' }))).toBeUndefined();
    expect(parseAttachMessage(new TextEncoder().encode('w-17'))).toBeUndefined();
  });

  it('keys compare by column and value, whatever the order of the columns', () => {
    expect(keyText({ id: 1, created: '2024-01-01' })).toBe(keyText({ created: '2024-01-01', id: 1 }));
    expect(keyText({ id: 1 })).not.toBe(keyText({ id: '1' }));
    expect(keyText({ b: new Uint8Array([1, 2]) })).toBe(keyText({ b: new Uint8Array([1, 2]) }));
  });
});
