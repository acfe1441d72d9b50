import { NanosyncError } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { bigQueryFailure, classifyBigQueryError, googleMessage, scrubCredentials } from '../../src/errors.js';

const grpc = (code: number, message = 'x') => Object.assign(new Error(message), { code });
const http = (code: number, reason?: string, message = 'x') =>
  Object.assign(new Error(message), { code, errors: reason ? [{ reason, message }] : [] });

describe('BigQuery failures', () => {
  test('transient gRPC and HTTP failures, quota and concurrent DML are retriable', () => {
    for (const code of [1, 4, 8, 10, 13, 14])
      expect(classifyBigQueryError(grpc(code)), `gRPC ${code}`).toBe('retriable');
    for (const code of [429, 500, 502, 503, 504])
      expect(classifyBigQueryError(http(code)), `HTTP ${code}`).toBe('retriable');
    expect(classifyBigQueryError(http(403, 'rateLimitExceeded'))).toBe('retriable');
    expect(classifyBigQueryError(http(403, 'quotaExceeded'))).toBe('retriable');
    expect(
      classifyBigQueryError(
        http(400, 'invalidQuery', 'Could not serialize access to table p:d.t due to concurrent update'),
      ),
    ).toBe('retriable');
    expect(classifyBigQueryError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe('retriable');
  });

  test('permissions, missing things and bad requests are not', () => {
    expect(classifyBigQueryError(grpc(7))).toBe('auth');
    expect(classifyBigQueryError(grpc(16))).toBe('auth');
    expect(classifyBigQueryError(http(403, 'accessDenied'))).toBe('auth');
    expect(classifyBigQueryError(http(404, 'notFound'))).toBe('not-found');
    expect(classifyBigQueryError(grpc(3))).toBe('invalid');
    expect(classifyBigQueryError(new Error('no code'))).toBe('fatal');
  });

  test('a cause chain is followed; a NanosyncError keeps its own verdict', () => {
    expect(classifyBigQueryError(new Error('wrapped', { cause: grpc(14) }))).toBe('retriable');
    expect(classifyBigQueryError(new NanosyncError('NS_B7001', 'x', { retriable: false }))).toBe('fatal');
  });

  test('nothing shaped like a private key or token survives into a message', () => {
    const leaky =
      'bad key {"private_key":"-----BEGIN PRIVATE KEY-----\\nMIIEv...\\n-----END PRIVATE KEY-----\\n"} token ya29.a0AfH6SMB and Bearer abc.def';
    const clean = scrubCredentials(leaky);
    expect(clean).not.toMatch(/MIIEv|a0AfH6SMB|abc\.def/);
    expect(googleMessage(new Error('-----BEGIN PRIVATE KEY-----MIIE-----END PRIVATE KEY-----'))).toBe('[private key]');
  });

  test('a permission failure becomes NS_B7002 with the roles to grant', () => {
    const err = bigQueryFailure(
      http(403, 'accessDenied', 'Permission bigquery.tables.create denied'),
      'creating table',
      { projectId: 'p1', datasetId: 'd1', table: 'public.t' },
    );
    expect(err.code).toBe('NS_B7002');
    expect(err.retriable).toBe(false);
    expect(err.message).toMatch(
      /creating table \(table public\.t\) failed: Permission bigquery\.tables\.create denied.*roles\/bigquery\.dataEditor.*p1:d1/,
    );
  });
});
