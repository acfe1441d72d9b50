import { afterEach, describe, expect, it } from 'vitest';
import { PrometheusExporter } from '../../src/metrics/prometheus.js';
import type { EngineStateEvent } from '../../src/runtime/engine.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { Gate, InMemoryDatabase, inMemorySink, testPipeline } from './fixtures/in-memory.js';

let h: Harness;
afterEach(async () => {
  await h.dispose();
});

const HELD = 'replication slot "nanosync_slot_f" is in use by another process (pid 4711, nanosync from 10.0.0.7/32)';

describe('a pipeline whose source waits for something another process holds', () => {
  it('is WAITING (not LIVE_CDC) with what it waits for in status, list, events and metrics, then LIVE_CDC once the stream runs', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const gate = new Gate(false);
    db.streamWait = { what: HELD, gate };
    const sink = inMemorySink();
    const p = h.registry.add(testPipeline(db, { name: 'f', type: 'cdc', sinks: [{ sink }] }));
    const engine = h.engine();
    const states: string[] = [];
    engine.on('state', (e: EngineStateEvent) => states.push(e.state));
    await engine.start();
    await engine.apply('f', p.definition, p.hash, p.type);

    const waiting = await waitForState(engine, 'f', 'WAITING');
    expect(waiting.waitingFor).toBe(`source: ${HELD}`);
    expect((await engine.list()).find((s) => s.name === 'f')).toMatchObject({
      state: 'WAITING',
      waitingFor: `source: ${HELD}`,
    });
    const scrape = await new PrometheusExporter(() => engine.list()).render();
    expect(scrape).toContain('ns_pipeline_state{pipeline="f",state="WAITING"} 1');
    expect(scrape).toContain('ns_pipeline_state{pipeline="f",state="LIVE_CDC"} 0');
    expect(states).toContain('WAITING');
    expect(h.log.lines.some((l) => l.startsWith('INF pipeline waiting') && l.includes('pid 4711'))).toBe(true);
    // Stored, so a server of the fleet that does not run the pipeline lists it WAITING too.
    await until(async () => (await h.store.getPipeline('f'))?.state === 'WAITING', 'WAITING stored');
    const other = h.engine();
    expect((await other.list()).find((s) => s.name === 'f')).toMatchObject({ state: 'WAITING', server: 'engine-1' });

    gate.release();
    const live = await waitForState(engine, 'f', 'LIVE_CDC');
    expect(live.waitingFor).toBeUndefined();
    expect(states.at(-1)).toBe('LIVE_CDC');
    await until(async () => (await h.store.getPipeline('f'))?.state === 'LIVE_CDC', 'LIVE_CDC stored again');
    expect((await h.engines[1]!.list()).find((s) => s.name === 'f')?.state).toBe('LIVE_CDC');
    const t1 = db.insert('public.orders', 1);
    await until(() => db.acks.includes(t1), 'the change streamed and acknowledged');
    expect(sink.events.map((e) => e.key.id)).toEqual(['1']);
  });

  it('a server stopping while its pipeline waits does not leave WAITING in the store', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    db.streamWait = { what: HELD, gate: new Gate(false) };
    const p = h.registry.add(testPipeline(db, { name: 'f', type: 'cdc', sinks: [{ sink: inMemorySink() }] }));
    const engine = h.engine();
    await engine.start();
    await engine.apply('f', p.definition, p.hash, p.type);
    await waitForState(engine, 'f', 'WAITING');
    await until(async () => (await h.store.getPipeline('f'))?.state === 'WAITING', 'WAITING stored');
    await engine.stop();
    expect((await h.store.getPipeline('f'))?.state).toBe('LIVE_CDC');
  });
});
