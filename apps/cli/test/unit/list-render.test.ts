import type { PipelineStatus } from '@nanosync/core/host';
import { describe, expect, it } from 'vitest';
import { renderPipelineList } from '../../src/commands/list.js';

function pipeline(p: Partial<PipelineStatus> & { name: string }): PipelineStatus {
  return {
    state: 'LIVE_CDC',
    replicationType: 'cdc_backfill',
    eventsPerSecond: 0,
    eventsTotal: 0,
    tables: [],
    sinks: [],
    warnings: [],
    ...p,
  };
}

describe('list pipelines', () => {
  it('a WAITING pipeline gets a note under the table saying what it waits for', () => {
    const text = renderPipelineList([
      pipeline({
        name: 'orders',
        state: 'WAITING',
        server: 'b',
        waitingFor: 'source: replication slot "nanosync_slot_orders" is in use by another process (pid 4711)',
      }),
      pipeline({ name: 'billing' }),
    ]);
    expect(text).toMatch(/^orders\s+WAITING\s+cdc_backfill/m);
    expect(text.split('\n\n')[1]).toBe(
      'orders: waiting for source: replication slot "nanosync_slot_orders" is in use by another process (pid 4711)',
    );
  });
});
