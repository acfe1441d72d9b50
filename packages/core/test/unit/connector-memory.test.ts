import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteStateStore, type StateStore } from '../../src/host.js';
import { connectorMemoryKey, createConnectorMemory } from '../../src/runtime/connector-memory.js';

describe('connector memory over the SQLite state store', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function store(): Promise<{ store: StateStore; reopen(): Promise<StateStore> }> {
    const dir = await mkdtemp(join(tmpdir(), 'ns-memory-'));
    const file = join(dir, 'state.db');
    let current = await openSqliteStateStore(file);
    cleanups.push(async () => {
      await current.close().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    });
    return {
      store: current,
      async reopen() {
        await current.close();
        current = await openSqliteStateStore(file);
        return current;
      },
    };
  }

  it('keeps entries across a reopened store, per pipeline and connector; another start position forgets them', async () => {
    const s = await store();
    const source = createConnectorMemory({
      store: s.store,
      pipeline: 'orders',
      role: 'source',
      scope: async () => '0000000001000000:00000000',
    });
    expect(await source.get('key ["public","items"]')).toBeUndefined();
    await source.set('key ["public","items"]', '{"keys":["id"]}');
    await source.set('leaves ["public","orders"]', '["public.orders_01"]');
    await source.set('key ["public","items"]', '{"keys":["code"]}');

    const reopened = await s.reopen();
    const again = createConnectorMemory({
      store: reopened,
      pipeline: 'orders',
      role: 'source',
      scope: async () => '0000000001000000:00000000',
    });
    expect(await again.get('key ["public","items"]')).toBe('{"keys":["code"]}');
    expect(await again.get('leaves ["public","orders"]')).toBe('["public.orders_01"]');
    expect(await again.get('constructor')).toBeUndefined();

    const sink = createConnectorMemory({
      store: reopened,
      pipeline: 'orders',
      role: 'sink 0:kafka',
      scope: async () => '0000000001000000:00000000',
    });
    expect(await sink.get('key ["public","items"]')).toBeUndefined();
    const other = createConnectorMemory({
      store: reopened,
      pipeline: 'other',
      role: 'source',
      scope: async () => '0000000001000000:00000000',
    });
    expect(await other.get('key ["public","items"]')).toBeUndefined();
    // The pipeline deleted and applied again: a new start position, nothing remembered.
    const recreated = createConnectorMemory({
      store: reopened,
      pipeline: 'orders',
      role: 'source',
      scope: async () => '0000000002000000:00000000',
    });
    expect(await recreated.get('key ["public","items"]')).toBeUndefined();
    await recreated.set('key ["public","items"]', '{"keys":["id"]}');
    expect(JSON.parse((await reopened.getMeta(connectorMemoryKey('orders', 'source')))!)).toEqual({
      start: '0000000002000000:00000000',
      entries: { 'key ["public","items"]': '{"keys":["id"]}' },
    });
  });

  it('applies sets in call order, a get sees every set made before it, and a failed write fails its caller only', async () => {
    const s = await store();
    let failNext = false;
    const flaky = {
      getMeta: (key: string) => s.store.getMeta(key),
      async setMeta(key: string, value: string) {
        // Writes finish out of order unless the memory orders them.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
        if (failNext) {
          failNext = false;
          throw new Error('disk full');
        }
        await s.store.setMeta(key, value);
      },
    };
    const memory = createConnectorMemory({ store: flaky, pipeline: 'p', role: 'source', scope: async () => undefined });
    const writes = Array.from({ length: 20 }, (_, i) => memory.set('n', String(i)));
    expect(await memory.get('n')).toBe('19');
    await Promise.all(writes);
    failNext = true;
    await expect(memory.set('n', 'lost')).rejects.toThrow('disk full');
    expect(await memory.get('n')).toBe('19');
    await memory.set('m', 'kept');
    const fresh = createConnectorMemory({
      store: s.store,
      pipeline: 'p',
      role: 'source',
      scope: async () => undefined,
    });
    expect(await fresh.get('n')).toBe('19');
    expect(await fresh.get('m')).toBe('kept');
  });

  it('coalesces the sets made while a write is under way into the next write; a failed write rejects its own callers only', async () => {
    const s = await store();
    const documents: string[] = [];
    /** Each store write waits until the test lets it go, and fails when told to. */
    const held: { release: (fail?: Error) => void }[] = [];
    const gated = {
      getMeta: (key: string) => s.store.getMeta(key),
      async setMeta(key: string, value: string) {
        const fail = await new Promise<Error | undefined>((resolve) => held.push({ release: resolve }));
        if (fail) throw fail;
        await s.store.setMeta(key, value);
        documents.push(value);
      },
    };
    /** Waits for `condition` through at most 1,000 turns of the event loop. */
    const until = async (condition: () => boolean, what: string) => {
      for (let turn = 0; !condition(); turn++) {
        if (turn === 1_000) throw new Error(`never happened: ${what} (store writes: ${held.length})`);
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const memory = createConnectorMemory({ store: gated, pipeline: 'p', role: 'source', scope: async () => 'A' });
    const outcomes: string[] = [];
    const track = (label: string, promise: Promise<void>) =>
      promise.then(
        () => outcomes.push(`${label} ok`),
        (error: Error) => outcomes.push(`${label} ${error.message}`),
      );

    // A burst of 1,000 sets: one write.
    const burst = Array.from({ length: 1_000 }, (_, i) => track(`t${i}`, memory.set(`key t${i}`, String(i))));
    await until(() => held.length === 1, 'the first write');
    // Sets made while that write is under way (the last value of an entry wins) wait for the next.
    const during = [track('n1', memory.set('n', '1')), track('n2', memory.set('n', '2'))];
    held[0]!.release();
    await until(() => outcomes.length === 1_000 && held.length === 2, 'the burst written by one write');
    await Promise.all(burst);
    expect(outcomes.every((o) => o.endsWith(' ok'))).toBe(true);
    // This write fails: its callers see it, the values before it stay.
    const third = track('n3', memory.set('n', '3'));
    held[1]!.release(new Error('disk full'));
    await Promise.all(during);
    expect(outcomes.slice(1_000)).toEqual(['n1 disk full', 'n2 disk full']);
    await until(() => held.length === 3, 'the write after the failed one');
    held[2]!.release();
    await third;
    expect(outcomes.at(-1)).toBe('n3 ok');
    expect(documents).toHaveLength(2);

    const fresh = createConnectorMemory({ store: s.store, pipeline: 'p', role: 'source', scope: async () => 'A' });
    expect(await fresh.get('n')).toBe('3');
    for (const i of [0, 1, 499, 999]) expect(await fresh.get(`key t${i}`)).toBe(String(i));
    expect(Object.keys(JSON.parse(documents[1]!).entries)).toHaveLength(1_001);
  });

  it('an unreadable document counts as an empty memory', async () => {
    const s = await store();
    await s.store.setMeta(connectorMemoryKey('p', 'source'), '{not json');
    const memory = createConnectorMemory({ store: s.store, pipeline: 'p', role: 'source', scope: async () => 'A' });
    expect(await memory.get('x')).toBeUndefined();
    await memory.set('x', '1');
    expect(await memory.get('x')).toBe('1');
  });
});
