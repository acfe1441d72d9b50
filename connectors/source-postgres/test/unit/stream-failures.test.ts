import { NanosyncError } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import type { PgConnectionConfig } from '../../src/connection.js';
import { classifySessionFailure } from '../../src/stream/failures.js';
import { PgErrorCode } from '../../src/errors.js';

const context = {
  connection: {
    host: '127.0.0.1',
    port: 1,
    user: 'ns_reader',
    database: 'shop',
    sslmode: 'disable',
    ssl: false,
    options: '',
  } as PgConnectionConfig,
  slot: 'nanosync_slot_orders',
  publication: 'nanosync_pub_orders',
  checkpoint: '0/3A1B2C4D',
};

function serverError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code, severity: 'FATAL' });
}

describe('classifying the end of a replication session', () => {
  it('connection loss, server shutdown and a slot still held by the old walsender are retriable', async () => {
    for (const error of [
      serverError('57P01', 'terminating connection due to administrator command'),
      serverError('57P03', 'the database system is starting up'),
      serverError('55006', 'replication slot "nanosync_slot_orders" is active for PID 42'),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      new Error('Connection terminated unexpectedly'),
    ]) {
      const failure = await classifySessionFailure(error, context);
      expect(failure.code).toBe(PgErrorCode.PgConnection);
      expect(failure.retriable).toBe(true);
      expect(failure.message).toContain('nanosync_slot_orders');
    }
  });

  it('a role without REPLICATION is told the fix, and is not retried', async () => {
    const failure = await classifySessionFailure(
      serverError('42501', 'permission denied to start WAL sender'),
      context,
    );
    expect(failure.code).toBe(PgErrorCode.PgPermission);
    expect(failure.retriable).toBe(false);
    expect(failure.message).toContain('ALTER ROLE "ns_reader" REPLICATION;');
  });

  it('bugs and unknown server errors are not retried; NanosyncErrors pass through', async () => {
    expect((await classifySessionFailure(new TypeError('x is undefined'), context)).retriable).toBe(false);
    expect((await classifySessionFailure(serverError('XX000', 'internal'), context)).retriable).toBe(false);
    const own = new NanosyncError(PgErrorCode.PgProtocol, 'pgoutput: bad');
    expect(await classifySessionFailure(own, context)).toBe(own);
  });

  it('42704 when the slot cannot be read back is reported with the server message, not retried', async () => {
    const failure = await classifySessionFailure(
      serverError('42704', 'publication "nanosync_pub_orders" does not exist'),
      context,
    );
    expect(failure.code).toBe(PgErrorCode.PgCheck);
    expect(failure.retriable).toBe(false);
    expect(failure.message).toContain('publication "nanosync_pub_orders" does not exist');
  });
});
