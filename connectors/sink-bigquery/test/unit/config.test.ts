import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { bigQuerySinkPropertiesSchema } from '../../src/config.js';
import sinkDefinition from '../../src/index.js';

const parse = (input: Record<string, unknown>) =>
  bigQuerySinkPropertiesSchema.safeParse({ project_id: 'my-project', dataset_id: 'replication', ...input });
const issues = (input: Record<string, unknown>) => {
  const result = parse(input);
  return result.success ? [] : result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
};

describe('bigquery sink properties', () => {
  test('defaults', () => {
    const result = parse({});
    expect(result.success && result.data).toEqual({
      projectId: 'my-project',
      datasetId: 'replication',
      tablePrefix: '',
      tableNames: {},
      writeMode: 'upsert',
      upsertMethod: 'cdc',
      mergeTables: [],
      maxStalenessSeconds: 0,
      onTruncate: 'delete',
      invalidRows: 'fail',
      mergeIntervalMs: 60000,
      mergeDailyBudget: 1400,
      autoCreateTables: true,
      maxRequestBytes: 9 * 1024 * 1024,
      maxRetries: 8,
      requestTimeoutMs: 120000,
      retryBackoffMs: 1000,
      retryBackoffMaxMs: 60000,
    });
  });

  test('the definition is a bigquery sink whose inline credentials are secret', () => {
    expect(sinkDefinition).toMatchObject({
      kind: 'sink',
      type: 'bigquery',
      apiVersion: 1,
      secretProperties: ['credentials_json'],
    });
  });

  test('the spec example parses; quoted numbers, durations and lists are accepted', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ns-bq-'));
    const file = join(dir, 'sa.json');
    writeFileSync(file, '{"type":"service_account"}');
    const result = parse({
      credentials_file: file,
      table_id: 'orders',
      max_staleness: '15m',
      merge_tables: 'public.docs, public.notes',
      max_retries: '3',
      location: 'EU',
    });
    expect(result.success && result.data).toMatchObject({
      credentialsFile: file,
      tableId: 'orders',
      maxStalenessSeconds: 900,
      mergeTables: ['public.docs', 'public.notes'],
      maxRetries: 3,
      location: 'EU',
    });
  });

  test('missing or malformed ids, missing credentials file, conflicting names: each at its own path', () => {
    expect(bigQuerySinkPropertiesSchema.safeParse({}).success).toBe(false);
    expect(issues({ project_id: 'My_Project' })).toEqual([
      { path: 'project_id', message: expect.stringContaining('not a Google Cloud project id') },
    ]);
    expect(issues({ dataset_id: 'a-b' })).toEqual([
      { path: 'dataset_id', message: expect.stringContaining('not a dataset id') },
    ]);
    expect(issues({ credentials_file: '/nope/sa.json' })).toEqual([
      { path: 'credentials_file', message: 'file not found: /nope/sa.json' },
    ]);
    expect(issues({ table_id: 'a', table_prefix: 'b_' })).toEqual([
      { path: 'table_id', message: expect.stringContaining('mutually exclusive') },
    ]);
    expect(issues({ table_id: 'a.b' })).toEqual([
      { path: 'table_id', message: expect.stringContaining('not a BigQuery table name') },
    ]);
    expect(issues({ max_staleness: '5 fortnights' })).toEqual([
      { path: 'max_staleness', message: expect.stringContaining('duration') },
    ]);
    expect(issues({ write_mode: 'append', upsert_method: 'merge' })).toEqual([
      { path: 'upsert_method', message: expect.stringContaining('upsert only') },
    ]);
    expect(issues({ max_request_bytes: 11 * 1024 * 1024 })).toEqual([
      { path: 'max_request_bytes', message: expect.stringContaining('AppendRows limit') },
    ]);
    expect(issues({ surprise: 1 })[0]?.message).toMatch(/Unrecognized key/);
  });

  test('inline credentials that are not JSON are refused without echoing them', () => {
    const secret = '-----BEGIN PRIVATE KEY-----abc';
    const found = issues({ credentials_json: secret });
    expect(found).toEqual([{ path: 'credentials_json', message: expect.stringContaining('not a JSON object') }]);
    expect(JSON.stringify(found)).not.toContain('PRIVATE KEY');
  });
});
