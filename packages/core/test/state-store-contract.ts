/**
 * The contract every `StateStore` keeps, as one vitest suite run against each store
 * (SQLite here in core's unit tests, PostgreSQL in @nanosync/state-postgres). A store's
 * own tests add only what is specific to it (files, schemas, TLS).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError } from '../src/errors.js';
import type { StateStore } from '../src/state/store.js';

export interface StateStoreLocation {
  /** A new connection to this (initially empty) store; several may be open at once. */
  open(): Promise<StateStore>;
  /** Text every StateUnavailable message of this store contains (file path, host). */
  label: string;
  /** Remove what the location holds, after every connection was closed. */
  dispose?(): Promise<void>;
}

/** `newLocation` gives an empty store for each test. */
export function registerStateStoreContract(name: string, newLocation: () => Promise<StateStoreLocation>): void {
  describe(`StateStore contract: ${name}`, () => {
    const opened: StateStore[] = [];
    const locations: StateStoreLocation[] = [];
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
      for (const l of locations.splice(0)) await l.dispose?.();
    });

    async function location(): Promise<StateStoreLocation & { connect(): Promise<StateStore> }> {
      const loc = await newLocation();
      locations.push(loc);
      return {
        ...loc,
        connect: async () => {
          const store = await loc.open();
          opened.push(store);
          return store;
        },
      };
    }

    const base = {
      definition: { a: 1, nested: { list: [1, 'two', null] } },
      definitionHash: 'h1',
      state: 'CREATED' as const,
      snapshotDone: false,
      paused: false,
    };

    it('keeps pipelines, partitions, checkpoints and settings across a reopen', async () => {
      const loc = await location();
      const first = await loc.open();
      await first.upsertPipeline({ ...base, name: 'orders', replicationType: 'cdc_backfill' });
      await first.updatePipeline('orders', { startPosition: '00000000000000A0:00000000', state: 'SNAPSHOTTING' });
      await first.savePartitions('orders', 'public.orders', [
        { id: '0', ordinal: 0, bounds: { from: 0, to: 10 }, estimatedRows: 100 },
        { id: '1', ordinal: 1, bounds: { from: 10, to: 20 } },
      ]);
      await first.markPartitionDone('orders', 'public.orders', '0', 97);
      await first.saveCheckpoint('orders', '0:kafka', '00000000000000B0:00000003');
      await first.saveCheckpoint('orders', '0:kafka', '00000000000000C0:00000001');
      await first.saveCheckpoint('orders', '1:file', '00000000000000B0:00000003');
      await first.setMeta('server_id', 'abc');
      await first.setMeta('server_id', 'def');
      await first.close();

      const second = await loc.connect();
      const record = await second.getPipeline('orders');
      expect(record).toMatchObject({
        name: 'orders',
        definition: base.definition,
        definitionHash: 'h1',
        replicationType: 'cdc_backfill',
        state: 'SNAPSHOTTING',
        startPosition: '00000000000000A0:00000000',
        snapshotDone: false,
        paused: false,
      });
      expect(record?.error).toBeUndefined();
      expect(Number.isNaN(Date.parse(record?.createdAt ?? ''))).toBe(false);
      expect(await second.listPartitions('orders')).toEqual([
        {
          pipeline: 'orders',
          table: 'public.orders',
          id: '0',
          ordinal: 0,
          bounds: { from: 0, to: 10 },
          estimatedRows: 100,
          status: 'done',
          rowsRead: 97,
        },
        {
          pipeline: 'orders',
          table: 'public.orders',
          id: '1',
          ordinal: 1,
          bounds: { from: 10, to: 20 },
          status: 'pending',
        },
      ]);
      expect(await second.getCheckpoints('orders')).toEqual({
        '0:kafka': '00000000000000C0:00000001',
        '1:file': '00000000000000B0:00000003',
      });
      expect(await second.getMeta('server_id')).toBe('def');
      expect(await second.getMeta('missing')).toBeUndefined();
      expect(await second.getPipeline('missing')).toBeUndefined();
    });

    it('lists pipelines by name, byte order', async () => {
      const store = await (await location()).connect();
      for (const name of ['b', 'a', 'B', 'a_2']) await store.upsertPipeline({ ...base, name });
      expect((await store.listPipelines()).map((p) => p.name)).toEqual(['B', 'a', 'a_2', 'b']);
    });

    it('plans partitions once: a second save returns the stored plan unchanged', async () => {
      const store = await (await location()).connect();
      await store.savePartitions('p', 't.a', [{ id: '0', ordinal: 0, bounds: [0, 5] }]);
      const again = await store.savePartitions('p', 't.a', [
        { id: 'x', ordinal: 0, bounds: [0, 1] },
        { id: 'y', ordinal: 1, bounds: [1, 2] },
      ]);
      expect(again.map((p) => p.id)).toEqual(['0']);
      await store.savePartitions('p', 't.b', [
        { id: '1', ordinal: 1, bounds: null },
        { id: '0', ordinal: 0, bounds: null },
      ]);
      expect((await store.listPartitions('p')).map((p) => `${p.table}/${p.id}`)).toEqual(['t.a/0', 't.b/0', 't.b/1']);
      expect((await store.listPartitions('p', 't.b')).map((p) => p.bounds)).toEqual([null, null]);
      await store.clearPartitions('p', undefined, 't.b');
      expect((await store.listPartitions('p')).map((p) => `${p.table}/${p.id}`)).toEqual(['t.a/0']);
      await store.clearPartitions('p');
      expect(await store.listPartitions('p')).toEqual([]);
    });

    it('keeps snapshot chunk records with their bounds: replaced by ordinal, listed in order, dropped with their partition', async () => {
      const loc = await location();
      const first = await loc.open();
      await first.savePartitions('p', 't.a', [
        { id: '0', ordinal: 0, bounds: null },
        { id: '1', ordinal: 1, bounds: null },
      ]);
      await first.savePartitions('p', 't.b', [{ id: '0', ordinal: 0, bounds: null }]);
      const cursor = (page: number, offset: number) => ({ page, offset, span: 4, rowBytes: 57 });
      await first.saveChunk('p', {
        table: 't.a',
        partition: '0',
        ordinal: 1,
        id: 'c1',
        after: cursor(3, 9),
        next: null,
        status: 'read',
      });
      await first.saveChunk('p', {
        table: 't.a',
        partition: '0',
        ordinal: 0,
        id: 'c0',
        after: null,
        next: cursor(3, 9),
        status: 'read',
      });
      await first.saveChunk('p', {
        table: 't.a',
        partition: '0',
        ordinal: 0,
        id: 'c0',
        after: null,
        next: cursor(3, 9),
        status: 'done',
        position: '00000000000000B0:00000000',
        rows: 250,
      });
      await first.saveChunk('p', {
        table: 't.a',
        partition: '1',
        ordinal: 0,
        id: 'd0',
        after: null,
        next: cursor(9, 1),
        status: 'read',
      });
      await first.saveChunk('p', {
        table: 't.b',
        partition: '0',
        ordinal: 0,
        id: 'e0',
        after: null,
        next: null,
        status: 'read',
      });
      await first.saveChunk('q', {
        table: 't.a',
        partition: '0',
        ordinal: 0,
        id: 'other',
        after: null,
        next: null,
        status: 'read',
      });
      await first.close();

      // Kept across a reopen, with the cursors as given (JSON), null for the partition's ends.
      const store = await loc.connect();
      expect(await store.listChunks('p', 't.a')).toEqual([
        {
          pipeline: 'p',
          table: 't.a',
          partition: '0',
          ordinal: 0,
          id: 'c0',
          after: null,
          next: cursor(3, 9),
          status: 'done',
          position: '00000000000000B0:00000000',
          rows: 250,
        },
        {
          pipeline: 'p',
          table: 't.a',
          partition: '0',
          ordinal: 1,
          id: 'c1',
          after: cursor(3, 9),
          next: null,
          status: 'read',
        },
        {
          pipeline: 'p',
          table: 't.a',
          partition: '1',
          ordinal: 0,
          id: 'd0',
          after: null,
          next: cursor(9, 1),
          status: 'read',
        },
      ]);
      expect((await store.listChunks('p')).map((c) => c.id)).toEqual(['c0', 'c1', 'd0', 'e0']);

      // Marking a partition done forgets its chunks, and only its chunks.
      await store.markPartitionDone('p', 't.a', '0', 250);
      expect((await store.listChunks('p')).map((c) => c.id)).toEqual(['d0', 'e0']);
      expect((await store.listPartitions('p', 't.a')).map((x) => x.status)).toEqual(['done', 'pending']);
      // A re-snapshot of one table forgets that table's chunks; deleting the pipeline, all of them.
      await store.clearPartitions('p', undefined, 't.b');
      expect((await store.listChunks('p')).map((c) => c.id)).toEqual(['d0']);
      await store.deletePipeline('p');
      expect(await store.listChunks('p')).toEqual([]);
      expect((await store.listChunks('q')).map((c) => c.id)).toEqual(['other']);
      await store.clearPartitions('q');
      expect(await store.listChunks('q')).toEqual([]);
    });

    it('keeps the start position on upsert and clears a field set to undefined', async () => {
      const store = await (await location()).connect();
      await store.upsertPipeline({ ...base, name: 'p' });
      await store.updatePipeline('p', { startPosition: 'L0', state: 'ERRORED', error: 'boom' });
      expect(await store.getPipeline('p')).toMatchObject({ state: 'ERRORED', error: 'boom' });
      await store.upsertPipeline({ ...base, name: 'p', definitionHash: 'h2', state: 'CREATED' });
      const record = await store.getPipeline('p');
      expect(record?.startPosition).toBe('L0');
      expect(record?.definitionHash).toBe('h2');
      expect(record?.error).toBeUndefined();
      await store.updatePipeline('p', { startPosition: undefined, paused: true, snapshotDone: true });
      expect(await store.getPipeline('p')).toMatchObject({ paused: true, snapshotDone: true });
      expect((await store.getPipeline('p'))?.startPosition).toBeUndefined();
    });

    it('clears checkpoints of one pipeline only', async () => {
      const store = await (await location()).connect();
      await store.saveCheckpoint('p', 's', 'X');
      await store.saveCheckpoint('q', 's', 'Y');
      await store.clearCheckpoints('p');
      expect(await store.getCheckpoints('p')).toEqual({});
      expect(await store.getCheckpoints('q')).toEqual({ s: 'Y' });
    });

    it('deletes a pipeline with its partitions, checkpoints and lease', async () => {
      const store = await (await location()).connect();
      await store.upsertPipeline({ ...base, name: 'p' });
      await store.savePartitions('p', 't.a', [{ id: '0', ordinal: 0, bounds: null }]);
      await store.saveCheckpoint('p', 's', 'X');
      await store.acquireLease('p', 'me', 60_000);
      await store.deletePipeline('p');
      expect(await store.getPipeline('p')).toBeUndefined();
      expect(await store.listPartitions('p')).toEqual([]);
      expect(await store.getCheckpoints('p')).toEqual({});
      expect(await store.getLease('p')).toBeUndefined();
      expect((await store.acquireLease('p', 'other', 60_000)).acquired).toBe(true);
    });

    it('gives a lease to one holder at a time across two connections', async () => {
      const loc = await location();
      const a = await loc.connect();
      const b = await loc.connect();
      expect((await a.acquireLease('orders', 'server-a', 60_000)).acquired).toBe(true);
      const lost = await b.acquireLease('orders', 'server-b', 60_000);
      expect(lost.acquired).toBe(false);
      if (!lost.acquired) expect(lost.lease).toMatchObject({ pipeline: 'orders', holder: 'server-a' });
      expect(await b.getLease('orders')).toMatchObject({ pipeline: 'orders', holder: 'server-a' });
      // Renewal by the holder succeeds; a release by someone else changes nothing.
      expect((await a.acquireLease('orders', 'server-a', 60_000)).acquired).toBe(true);
      await b.releaseLease('orders', 'server-b');
      expect((await b.acquireLease('orders', 'server-b', 60_000)).acquired).toBe(false);
      await a.releaseLease('orders', 'server-a');
      expect(await b.getLease('orders')).toBeUndefined();
      expect((await b.acquireLease('orders', 'server-b', 60_000)).acquired).toBe(true);
    });

    it('gives a contended lease to exactly one of many concurrent takers', async () => {
      const loc = await location();
      const a = await loc.connect();
      const b = await loc.connect();
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).acquireLease('hot', `server-${i}`, 60_000)),
      );
      expect(results.filter((r) => r.acquired)).toHaveLength(1);
    });

    it('lets another holder take an expired lease', async () => {
      const store = await (await location()).connect();
      expect((await store.acquireLease('p', 'a', -1)).acquired).toBe(true);
      expect(await store.getLease('p')).toBeUndefined();
      expect((await store.acquireLease('p', 'b', 60_000)).acquired).toBe(true);
      expect((await store.acquireLease('p', 'a', 60_000)).acquired).toBe(false);
    });

    it('raises the lease epoch at every taking, not at renewal', async () => {
      const store = await (await location()).connect();
      const epochOf = async (holder: string, ttl = 60_000) => {
        const r = await store.acquireLease('p', holder, ttl);
        if (!r.acquired) throw new Error(`${holder} did not get the lease`);
        return r.epoch;
      };
      const first = await epochOf('a');
      expect(await epochOf('a')).toBe(first);
      expect((await store.getLease('p'))?.epoch).toBe(first);
      await store.releaseLease('p', 'a');
      const afterRelease = await epochOf('a', -1);
      expect(afterRelease).toBeGreaterThan(first);
      const takeover = await epochOf('b');
      expect(takeover).toBeGreaterThan(afterRelease);
      await store.deletePipeline('p');
      expect(await epochOf('c')).toBeGreaterThan(takeover);
    });

    it("refuses the old holder's fenced writes after a takeover, and keeps the new holder's", async () => {
      const loc = await location();
      const oldServer = await loc.connect();
      const newServer = await loc.connect();
      await oldServer.upsertPipeline({ ...base, name: 'p', state: 'LIVE_CDC' });
      await oldServer.savePartitions('p', 't.a', [
        { id: '0', ordinal: 0, bounds: null },
        { id: '1', ordinal: 1, bounds: null },
      ]);
      const a = await oldServer.acquireLease('p', 'server-a', 60_000);
      if (!a.acquired) throw new Error('server-a did not get the lease');
      const oldFence = { holder: 'server-a', epoch: a.epoch };
      // While it holds the lease, the fenced writes go through.
      await oldServer.saveCheckpoint('p', 'sink', 'A1', oldFence);
      await oldServer.markPartitionDone('p', 't.a', '0', 5, oldFence);
      await oldServer.updatePipeline('p', { state: 'LIVE_CDC' }, oldFence);

      // server-a freezes past its lease; server-b takes over and writes.
      await oldServer.acquireLease('p', 'server-a', -1);
      const b = await newServer.acquireLease('p', 'server-b', 60_000);
      if (!b.acquired) throw new Error('server-b did not get the expired lease');
      expect(b.epoch).toBeGreaterThan(a.epoch);
      const newFence = { holder: 'server-b', epoch: b.epoch };
      await newServer.saveCheckpoint('p', 'sink', 'B1', newFence);

      // server-a wakes up: each of its writes is refused, naming the pipeline and both holders.
      const refused = await oldServer.saveCheckpoint('p', 'sink', 'A2', oldFence).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(NanosyncError.is(refused, ErrorCode.PipelineLeaseHeld)).toBe(true);
      expect((refused as NanosyncError).retriable).toBe(false);
      expect((refused as Error).message).toContain('pipeline "p"');
      expect((refused as Error).message).toContain(`server-b at epoch ${b.epoch}`);
      await expect(oldServer.markPartitionDone('p', 't.a', '1', 9, oldFence)).rejects.toMatchObject({
        code: ErrorCode.PipelineLeaseHeld,
      });
      await expect(oldServer.updatePipeline('p', { state: 'ERRORED', error: 'x' }, oldFence)).rejects.toMatchObject({
        code: ErrorCode.PipelineLeaseHeld,
      });
      // Even renewing does not revive the old fence: server-b holds the lease.
      expect((await oldServer.acquireLease('p', 'server-a', 60_000)).acquired).toBe(false);

      expect(await newServer.getCheckpoints('p')).toEqual({ sink: 'B1' });
      expect((await newServer.listPartitions('p')).map((x) => x.status)).toEqual(['done', 'pending']);
      expect(await newServer.getPipeline('p')).toMatchObject({ state: 'LIVE_CDC' });
      expect((await newServer.getPipeline('p'))?.error).toBeUndefined();
      await newServer.markPartitionDone('p', 't.a', '1', 9, newFence);
      await newServer.updatePipeline('p', { snapshotDone: true }, newFence);
      expect(await newServer.getPipeline('p')).toMatchObject({ snapshotDone: true });
    });

    it("refuses the old holder's fenced partition plans, chunk records and clears after a takeover", async () => {
      const loc = await location();
      const oldServer = await loc.connect();
      const newServer = await loc.connect();
      await oldServer.upsertPipeline({ ...base, name: 'p', state: 'SNAPSHOTTING' });
      const a = await oldServer.acquireLease('p', 'server-a', 60_000);
      if (!a.acquired) throw new Error('server-a did not get the lease');
      const oldFence = { holder: 'server-a', epoch: a.epoch };
      await oldServer.savePartitions('p', 't.a', [{ id: '0', ordinal: 0, bounds: null }], oldFence);
      await oldServer.saveCheckpoint('p', 'sink', 'A1', oldFence);
      await oldServer.acquireLease('p', 'server-a', -1);
      const b = await newServer.acquireLease('p', 'server-b', 60_000);
      if (!b.acquired) throw new Error('server-b did not get the expired lease');
      const newFence = { holder: 'server-b', epoch: b.epoch };

      const chunk = { table: 't.a', partition: '0', ordinal: 0, id: 'c0', after: null, next: null };
      await newServer.saveChunk('p', { ...chunk, status: 'read' }, newFence);
      for (const write of [
        () => oldServer.savePartitions('p', 't.b', [{ id: '0', ordinal: 0, bounds: null }], oldFence),
        () => oldServer.saveChunk('p', { ...chunk, status: 'done', position: 'X', rows: 1 }, oldFence),
        () => oldServer.markPartitionDone('p', 't.a', '0', 1, oldFence),
        () => oldServer.clearPartitions('p', oldFence),
        () => oldServer.clearCheckpoints('p', oldFence),
      ]) {
        await expect(write()).rejects.toMatchObject({ code: ErrorCode.PipelineLeaseHeld, retriable: false });
      }
      // Nothing of the refused writes landed.
      expect((await newServer.listPartitions('p')).map((x) => `${x.table}:${x.status}`)).toEqual(['t.a:pending']);
      expect((await newServer.listChunks('p')).map((c) => `${c.id}:${c.status}`)).toEqual(['c0:read']);
      expect(await newServer.getCheckpoints('p')).toEqual({ sink: 'A1' });

      // The holder's fenced writes go through.
      expect(
        await newServer.savePartitions('p', 't.b', [{ id: '0', ordinal: 0, bounds: null }], newFence),
      ).toHaveLength(1);
      await newServer.saveChunk('p', { ...chunk, status: 'done', position: 'Y', rows: 2 }, newFence);
      expect((await newServer.listChunks('p')).map((c) => `${c.id}:${c.status}:${c.position}`)).toEqual(['c0:done:Y']);
      await newServer.clearCheckpoints('p', newFence);
      await newServer.clearPartitions('p', newFence);
      expect(await newServer.getCheckpoints('p')).toEqual({});
      expect(await newServer.listPartitions('p')).toEqual([]);
    });

    it('lists the unexpired leases', async () => {
      const store = await (await location()).connect();
      await store.acquireLease('b', 'server-1', 60_000);
      await store.acquireLease('a', 'server-2', 60_000);
      await store.acquireLease('c', 'server-1', 60_000);
      await store.releaseLease('c', 'server-1');
      await store.acquireLease('d', 'server-2', -1);
      const leases = await store.listLeases();
      expect(leases.map((l) => [l.pipeline, l.holder])).toEqual([
        ['a', 'server-2'],
        ['b', 'server-1'],
      ]);
      expect(leases[0]!.epoch).toBe(1);
      expect(Date.parse(leases[0]!.expiresAt)).toBeGreaterThan(Date.now());
    });

    it('registers servers: renewed with new details, expired ones and removed ones not listed', async () => {
      const loc = await location();
      const one = await loc.connect();
      const two = await loc.connect();
      await one.registerServer('server-1', 60_000, { capacity: 4 });
      await two.registerServer('server-2', 60_000, { capacity: null });
      await two.registerServer('server-3', -1, {});
      expect((await one.listServers()).map((s) => s.id)).toEqual(['server-1', 'server-2']);
      const before = (await two.listServers())[0]!;
      await one.registerServer('server-1', 120_000, { capacity: 8, url: 'http://h:1' });
      const after = (await two.listServers())[0]!;
      expect(after.details).toEqual({ capacity: 8, url: 'http://h:1' });
      expect(after.startedAt).toBe(before.startedAt);
      expect(Date.parse(after.expiresAt)).toBeGreaterThan(Date.parse(before.expiresAt));
      await two.removeServer('server-1');
      expect((await one.listServers()).map((s) => s.id)).toEqual(['server-2']);
      // An expired server registering again is live again.
      await two.registerServer('server-3', 60_000, {});
      expect((await one.listServers()).map((s) => s.id)).toEqual(['server-2', 'server-3']);
    });

    it('refuses a fenced write for a pipeline without a lease', async () => {
      const store = await (await location()).connect();
      await expect(store.saveCheckpoint('p', 's', 'X', { holder: 'a', epoch: 1 })).rejects.toThrow(/no lease any more/);
      expect(await store.getCheckpoints('p')).toEqual({});
    });

    it('reports calls on a closed store as StateUnavailable naming the store', async () => {
      const loc = await location();
      const store = await loc.open();
      await store.close();
      const err = await store.saveCheckpoint('p', 's', 'X').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(NanosyncError.is(err, ErrorCode.StateUnavailable)).toBe(true);
      expect((err as Error).message).toContain(loc.label);
      await expect(store.getPipeline('p')).rejects.toMatchObject({ code: ErrorCode.StateUnavailable });
    });
  });
}
