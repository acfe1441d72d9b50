import { describe, expect, it } from 'vitest';
import { updateImplications } from '../../src/commands/plan.js';

const base = {
  replication_type: 'cdc_backfill',
  source: { connection: 'pg', tables: ['public.orders'] },
  sink: { connection: 'out' },
  connections: {
    pg: { name: 'pg', type: 'postgres', dsn: 'postgres://app@db1:5432/shop' },
    out: { name: 'out', type: 'file', properties: { path: '/tmp/out' } },
  },
  config_folder: '/srv',
};
const running = {
  replicationType: 'cdc_backfill',
  state: 'LIVE_CDC' as const,
  paused: false,
  snapshotDone: true,
  started: true,
};

function withChanges(
  after: Record<string, unknown>,
  paths: string[],
  info: Parameters<typeof updateImplications>[2] = running,
  type = 'cdc_backfill',
) {
  return updateImplications(
    base,
    after,
    info,
    type,
    paths.map((path) => ({ path, before: '', after: '' })),
  );
}

describe('plan: what an update implies', () => {
  it('a source that moves to another database leaves its slot behind', () => {
    const after = {
      ...base,
      connections: { ...base.connections, pg: { ...base.connections.pg, dsn: 'postgres://app@db2:5432/shop' } },
    };
    expect(withChanges(after, ['connections.pg.dsn']).join('\n')).toContain(
      'the source moves (db1:5432/shop → db2:5432/shop): the pipeline',
    );
    // Not started yet: nothing is left behind, it just connects elsewhere.
    expect(withChanges(after, ['connections.pg.dsn'], { ...running, started: false }).join('\n')).toContain(
      'the source reconnects with the new connection settings',
    );
  });

  it('snapshot again on a completed pipeline means a new slot; cdc_backfill → cdc abandons an unfinished snapshot', () => {
    const snapshot = { ...base, replication_type: 'snapshot' };
    const implies = withChanges(snapshot, ['replication_type'], { ...running, state: 'COMPLETED' }, 'snapshot');
    expect(implies).toContain(
      're-snapshot: every table (public.orders) is read again from the start and written to every sink again',
    );
    expect(implies).toContain('a new replication slot: the completed snapshot removed its own');
    const cdc = { ...base, replication_type: 'cdc' };
    expect(withChanges(cdc, ['replication_type'], { ...running, snapshotDone: false }, 'cdc')).toContain(
      'the unfinished snapshot is not continued; only changes are streamed',
    );
  });

  it('a table added to a cdc pipeline is not snapshotted; a new sink has no checkpoint; nothing else means nothing', () => {
    const added = { ...base, source: { ...base.source, tables: ['public.orders', 'public.items'] } };
    expect(withChanges(added, ['source.tables'], { ...running, replicationType: 'cdc' }, 'cdc')).toContain(
      'public.items join the publication: their changes from now on, existing rows are not sent',
    );
    const twoSinks = { ...base, sink: undefined, sinks: [{ connection: 'out' }, { connection: 'more' }] };
    expect(withChanges(twoSinks, ['sinks[1].connection']).join('\n')).toContain('sink more is new');
    expect(withChanges(base, ['pipeline.comment'])).toEqual([
      'the pipeline stops at a checkpoint and starts again with the new definition',
      'nothing is read again and no slot is created',
    ]);
  });

  it('a snapshot pipeline: any change runs its snapshot again for every sink, as apply does (core applyEffects)', () => {
    const snapshot = { ...base, replication_type: 'snapshot' };
    const completed = { ...running, replicationType: 'snapshot', state: 'COMPLETED' as const };
    // A sink setting only: apply clears the plans and the checkpoints; the completed run dropped its slot.
    const props = {
      ...snapshot,
      connections: { ...base.connections, out: { ...base.connections.out, properties: { path: '/tmp/other' } } },
    };
    expect(withChanges({ ...props }, ['connections.out.properties.path'], completed, 'snapshot')).toEqual([
      'the pipeline stops at a checkpoint and starts again with the new definition',
      're-snapshot: every table (public.orders) is read again from the start and written to every sink again',
      'a new replication slot: the completed snapshot removed its own',
      'sink out restarts with its new settings',
    ]);
    // A table added: not just that table, every table again (nothing said of a snapshot of the new table only).
    const added = { ...snapshot, source: { ...base.source, tables: ['public.orders', 'public.items'] } };
    const implies = withChanges(added, ['source.tables'], { ...completed, state: 'SNAPSHOTTING' }, 'snapshot');
    expect(implies).toContain(
      're-snapshot: every table (public.orders, public.items) is read again from the start and written to every sink again',
    );
    expect(implies.join('\n')).not.toContain('new tables');
    expect(implies.join('\n')).not.toContain('new replication slot');
    // A new sink of a snapshot pipeline receives the re-snapshot, not "only the stream".
    const twoSinks = { ...snapshot, sink: undefined, sinks: [{ connection: 'out' }, { connection: 'more' }] };
    expect(withChanges(twoSinks, ['sinks[1].connection'], completed, 'snapshot')).toContain(
      'sink more is new: it receives the rows of the re-snapshot like the other sinks',
    );
  });

  it('a table added to a cdc_backfill pipeline is snapshotted alone, concurrently with the stream', () => {
    const added = { ...base, source: { ...base.source, tables: ['public.orders', 'public.items'] } };
    expect(withChanges(added, ['source.tables'])).toContain(
      'snapshot of public.items (new tables) while the stream goes on; the other tables are not read again and the slot is kept',
    );
  });
});
