import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SinkErrorPolicy } from '../../src/config/types.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, inMemorySink, retriableError, testPipeline } from './fixtures/in-memory.js';

let h: Harness;
afterEach(async () => {
  await h.dispose();
});

/** One pipeline, one sink that refuses the row with id 3 ("too large") whatever its policy. */
async function poisonPipeline(onError: SinkErrorPolicy | undefined, options: { dataDir?: boolean } = {}) {
  h = await Harness.create();
  const db = new InMemoryDatabase({ maxBatchEvents: 10 });
  db.createTable('public', 'orders');
  const sink = inMemorySink();
  sink.refuse = (e) => e.key.id === '3';
  const p = h.registry.add(testPipeline(db, { name: 'dl', type: 'cdc', sinks: [{ sink, onError }] }));
  const engine = h.engine({ runtime: options.dataDir === false ? {} : { dataDir: h.dir } });
  await engine.start();
  await engine.apply('dl', p.definition, p.hash, p.type);
  await waitForState(engine, 'dl', 'LIVE_CDC');
  await until(() => db.calls.some((c) => c.startsWith('stream:')), 'stream started');
  return { db, sink, engine };
}

function commitFive(db: InMemoryDatabase): string {
  return db.commit(
    [1, 2, 3, 4, 5].map((id) => ({ table: 'public.orders', op: 'insert' as const, row: { id: String(id), v: 'x' } })),
  );
}

const letterFile = () => path.join(h.dir, 'dead-letters', 'dl', '0_mem0.jsonl');

describe('on_error: events a sink can never write', () => {
  it('fail (the default): the pipeline stops naming the event and the way past it; nothing acknowledged', async () => {
    const { db, engine } = await poisonPipeline(undefined);
    commitFive(db);
    const status = await waitForState(engine, 'dl', 'ERRORED');
    expect(status.error).toContain('refused as too large');
    expect(status.error).toContain('{"id":"3"}');
    expect(status.error).toContain('on_error to dead_letter or skip');
    expect(db.acks).toEqual([]);
    expect(existsSync(letterFile())).toBe(false);
  });

  it('dead_letter: the event goes to a JSON-lines file with its table, key, position, sink and error; the rest is written and acknowledged', async () => {
    const { db, sink, engine } = await poisonPipeline('dead_letter');
    const t = commitFive(db);
    await until(() => db.acks.includes(t), 'acknowledged past the dead letter');
    // 1 and 2 went out before the refusal and are written again (a replay), then 4 and 5.
    expect(sink.events.map((e) => e.key.id)).toEqual(['1', '2', '1', '2', '4', '5']);
    const lines = readFileSync(letterFile(), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1);
    const letter = JSON.parse(lines[0]!);
    const poisoned = sink.attempts.flat().find((e) => e.key.id === '3')!;
    expect(letter).toMatchObject({
      pipeline: 'dl',
      sink: '0:mem0',
      table: 'public.orders',
      op: 'insert',
      key: { id: '3' },
      after: { id: '3', v: 'x' },
      position: poisoned.position,
      error: { code: 'NS_K6003', message: 'event of key {"id":"3"} refused as too large' },
    });
    const status = await engine.status('dl');
    expect(status.state).toBe('LIVE_CDC');
    expect(status.sinks[0]).toMatchObject({ deadLetters: 1, skippedEvents: 0 });
    expect(h.log.lines.filter((l) => l.startsWith('WRN event dead-lettered'))).toHaveLength(1);
    expect(h.log.lines.find((l) => l.startsWith('WRN event dead-lettered'))).toContain('position=');
  });

  it('skip: the event is counted and logged, nothing is written for it', async () => {
    const { db, sink, engine } = await poisonPipeline('skip');
    const t = commitFive(db);
    await until(() => db.acks.includes(t), 'acknowledged past the skipped event');
    expect(sink.events.map((e) => e.key.id).filter((id) => id === '3')).toEqual([]);
    expect(new Set(sink.events.map((e) => e.key.id))).toEqual(new Set(['1', '2', '4', '5']));
    expect(existsSync(letterFile())).toBe(false);
    const status = await engine.status('dl');
    expect(status.sinks[0]).toMatchObject({ deadLetters: 0, skippedEvents: 1 });
    expect(h.log.lines.filter((l) => l.startsWith('WRN event skipped'))).toHaveLength(1);
  });

  it('a transient error is retried, never dead-lettered', async () => {
    const { db, sink, engine } = await poisonPipeline('dead_letter');
    sink.failures.push(retriableError());
    const t = db.insert('public.orders', 1);
    await until(() => db.acks.includes(t), 'acknowledged after the retry');
    expect(existsSync(letterFile())).toBe(false);
    expect((await engine.status('dl')).sinks[0]).toMatchObject({ deadLetters: 0, writeErrors: 1 });
  });

  it('dead_letter without a state folder or dead_letter_path: the pipeline stops saying what to set', async () => {
    const { db, engine } = await poisonPipeline('dead_letter', { dataDir: false });
    commitFive(db);
    const status = await waitForState(engine, 'dl', 'ERRORED');
    expect(status.error).toContain('dead_letter_path');
    expect(db.acks).toEqual([]);
  });
});
