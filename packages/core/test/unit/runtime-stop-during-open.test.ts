import { afterEach, describe, expect, it } from 'vitest';
import { defineSource } from '../../src/contract/connector.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { Gate, InMemoryDatabase, inMemorySink, inMemorySource, testPipeline } from './fixtures/in-memory.js';

let h: Harness;
afterEach(async () => {
  await h.dispose();
});

const ACCEPT = { safeParse: (input: unknown) => ({ success: true as const, data: input }) };

describe('stopping while the source is still opening', () => {
  it('releases the exported snapshot that open() returns after teardown already ran', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase({ partitionSize: 5 });
    db.createTable('public', 'orders', 3);
    const sink = inMemorySink();
    const p = testPipeline(db, { name: 'slow-open', sinks: [{ sink }] });
    // open() blocks like CREATE_REPLICATION_SLOT waiting for a long-running transaction.
    const openGate = new Gate(false);
    let opening = 0;
    p.materialized.source.definition = defineSource<unknown>({
      type: 'in-memory',
      configSchema: ACCEPT,
      create: () => {
        const inner = inMemorySource(db);
        return {
          ...inner,
          async open(tables, options) {
            opening++;
            await openGate.wait();
            return inner.open(tables, options);
          },
        };
      },
    });
    h.registry.add(p);
    const engine = h.engine();
    await engine.start();
    await engine.apply('slow-open', p.definition, p.hash, p.type);
    await until(() => opening === 1, 'open() started');

    await engine.pause('slow-open');
    await waitForState(engine, 'slow-open', 'PAUSED');
    // The slot creation finishes after the runner was torn down: its exported snapshot
    // (on PostgreSQL a replication connection holding back the xmin horizon) must not leak.
    openGate.release();
    await until(() => db.calls.some((c) => c.startsWith('open:')), 'open() returned');
    await until(() => db.calls.includes('release'), 'exported snapshot released');
    expect(db.calls.some((c) => c.startsWith('read:'))).toBe(false);
    expect(sink.events).toHaveLength(0);
  });
});
