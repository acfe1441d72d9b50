import { describe, expect, it } from 'vitest';
import type { TargetMapping } from '../../src/config/types.js';
import { workersUnusable } from '../../src/runtime/workers-unusable.js';

// One check decides, from a pipeline's definition, whether its snapshot and its change stream
// may go through worker threads; the two paths differ in the pipelines that have them and in the
// target_mappings they accept.
describe('whether a pipeline can use worker threads (decided from its definition)', () => {
  const source = { type: 'postgres', workerModule: 'file:///source-worker.js' };
  const sink = (extra: object = {}) => ({
    name: '0:kafka',
    definition: { type: 'kafka', workerModule: 'file:///sink-worker.js' },
    mappings: [] as TargetMapping[],
    ...extra,
  });
  const input = (extra: object = {}) => ({
    threads: 2,
    replicationType: 'cdc_backfill',
    source,
    sinks: [sink()],
    ...extra,
  });
  const table = { table: 'public.t', tableRef: { schema: 'public', name: 't' } };
  const plain = sink({ mappings: [{ ...table }] });
  const projected = sink({ mappings: [{ ...table, columns: ['id'] }] });
  const filtered = sink({ mappings: [{ ...table, filter: [{ column: 'id', op: 'gt', value: 1 }] }] });

  it('uses them for both paths when the source and every sink have worker modules and nothing is mapped', () => {
    expect(workersUnusable('snapshot', input())).toBeUndefined();
    expect(workersUnusable('stream', input())).toBeUndefined();
    expect(workersUnusable('snapshot', input({ replicationType: 'snapshot' }))).toBeUndefined();
    expect(workersUnusable('stream', input({ replicationType: 'cdc' }))).toBeUndefined();
  });

  it('refuses for both paths what neither can do in a worker, with the same reasons', () => {
    for (const path of ['snapshot', 'stream'] as const) {
      expect(workersUnusable(path, input({ threads: 0 }))).toBe('workers is 0');
      expect(
        workersUnusable(path, input({ sinks: [sink(), sink({ name: '1:bq', definition: { type: 'bigquery' } })] })),
      ).toBe('sink 1:bq (connector bigquery) cannot encode records in a worker thread');
    }
    expect(workersUnusable('snapshot', input({ source: { type: 'sqlserver' } }))).toBe(
      'the source connector sqlserver cannot decode rows in a worker thread',
    );
    expect(workersUnusable('stream', input({ source: { type: 'sqlserver' } }))).toBe(
      'the source connector sqlserver cannot decode changes in a worker thread',
    );
  });

  it('knows which pipelines have a snapshot and which a change stream', () => {
    expect(workersUnusable('snapshot', input({ replicationType: 'cdc' }))).toBe('a cdc pipeline takes no snapshot');
    expect(workersUnusable('snapshot', input({ replicationType: 'query' }))).toBe('a query pipeline takes no snapshot');
    expect(workersUnusable('stream', input({ replicationType: 'snapshot' }))).toBe(
      'a snapshot pipeline has no change stream',
    );
    expect(workersUnusable('stream', input({ replicationType: 'query' }))).toBe(
      'a query pipeline has no change stream',
    );
  });

  it('lets the snapshot take mappings without columns or filter and refuses any mapping on the stream', () => {
    expect(workersUnusable('snapshot', input({ sinks: [plain] }))).toBeUndefined();
    expect(workersUnusable('stream', input({ sinks: [plain] }))).toBe(
      'sink 0:kafka has target_mappings, which are applied to decoded events on the main thread',
    );
    for (const mapped of [projected, filtered]) {
      expect(workersUnusable('snapshot', input({ sinks: [mapped] }))).toBe(
        'sink 0:kafka has target_mappings with columns or filter, which are applied on the main thread',
      );
      expect(workersUnusable('stream', input({ sinks: [mapped] }))).toBe(
        'sink 0:kafka has target_mappings, which are applied to decoded events on the main thread',
      );
    }
    // An empty filter list filters nothing.
    expect(
      workersUnusable('snapshot', input({ sinks: [sink({ mappings: [{ ...table, filter: [] }] })] })),
    ).toBeUndefined();
  });
});
