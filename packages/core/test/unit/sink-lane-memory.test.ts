import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, expect, it } from 'vitest';
import type { ChangeEvent, Sink, TableSchema } from '../../src/index.js';
import { createLogger, openSqliteStateStore } from '../../src/host.js';
import { DEFAULT_RETRY_POLICY } from '../../src/runtime/backoff.js';
import { SinkLane } from '../../src/runtime/sink-lane.js';
import { SinkStats } from '../../src/runtime/stats.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const table: TableSchema = { schema: 'public', name: 't', keyColumns: ['id'], columns: [] };

it('a batch is no longer reachable from its lane once it was written (memory stays bounded on long snapshots)', async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-lane-'));
  const store = await openSqliteStateStore(join(dir, 'state.db'));
  let written = 0;
  const sink: Sink = {
    open: async () => {},
    write: async (events) => {
      written += events.length;
    },
    close: async () => {},
  };
  const lane = new SinkLane({
    pipeline: 'p',
    name: '0:mem',
    sink,
    store,
    mapper: undefined,
    maxEvents: 1_000_000,
    maxBytes: 1 << 30,
    maxWriteEvents: 1,
    retry: DEFAULT_RETRY_POLICY,
    stats: new SinkStats('0:mem'),
    logger: createLogger({ write: () => {} }),
    checkpoint: undefined,
    onCheckpoint: () => {},
    onFailure: (err) => {
      throw err;
    },
  });
  lane.start();
  // Fewer batches than any compaction threshold: each must still be released once written.
  const refs: WeakRef<ChangeEvent[]>[] = [];
  for (let i = 0; i < 200; i++) {
    const events: ChangeEvent[] = [
      { op: 'read', table, key: { id: String(i) }, after: { id: String(i) }, position: '0' },
    ];
    refs.push(new WeakRef(events));
    lane.push(events, undefined, 64, undefined);
  }
  await lane.drain();
  expect(written).toBe(200);
  for (let round = 0; round < 3; round++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  // At most the batch of the last write may still be referenced (by its finished frame).
  expect(refs.filter((ref) => ref.deref() !== undefined).length).toBeLessThanOrEqual(1);
  await store.close();
});
