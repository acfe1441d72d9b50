import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError } from '../../src/errors.js';
import { openSqliteStateStore } from '../../src/state/sqlite.js';
import type { StateStore } from '../../src/state/store.js';
import { registerStateStoreContract } from '../state-store-contract.js';

const dirs: string[] = [];
const stores: StateStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ns-sqlite-'));
  dirs.push(dir);
  return dir;
}

async function open(file: string): Promise<StateStore> {
  const store = await openSqliteStateStore(file);
  stores.push(store);
  return store;
}

/** The store's handle on its WAL file (the fsyncs go through it). */
function walOf(store: StateStore): { datasync(): Promise<void> } {
  const wal = (store as unknown as { walFile?: { datasync(): Promise<void> } }).walFile;
  if (wal === undefined) throw new Error('the store has no WAL file handle');
  return wal;
}

/** Let the promise callbacks and I/O callbacks queued so far run. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

const base = {
  definition: { a: 1 },
  definitionHash: 'h1',
  state: 'CREATED' as const,
  snapshotDone: false,
  paused: false,
};

describe('openSqliteStateStore', () => {
  it('creates the folder and keeps everything across a reopen', async () => {
    const file = path.join(tempDir(), 'nested', 'deeper', 'state.db');
    const first = await openSqliteStateStore(file);
    await first.upsertPipeline({ ...base, name: 'orders', replicationType: 'cdc_backfill' });
    await first.updatePipeline('orders', { startPosition: '00000000000000A0:00000000', state: 'SNAPSHOTTING' });
    await first.savePartitions('orders', 'public.orders', [
      { id: '0', ordinal: 0, bounds: { from: 0, to: 10 }, estimatedRows: 100 },
      { id: '1', ordinal: 1, bounds: { from: 10, to: 20 } },
    ]);
    await first.markPartitionDone('orders', 'public.orders', '0', 97);
    await first.saveCheckpoint('orders', '0:kafka', '00000000000000B0:00000003');
    await first.setMeta('server_id', 'abc');
    await first.close();

    const second = await open(file);
    const record = await second.getPipeline('orders');
    expect(record).toMatchObject({
      name: 'orders',
      definition: { a: 1 },
      replicationType: 'cdc_backfill',
      state: 'SNAPSHOTTING',
      startPosition: '00000000000000A0:00000000',
      snapshotDone: false,
    });
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
    expect(await second.getCheckpoints('orders')).toEqual({ '0:kafka': '00000000000000B0:00000003' });
    expect(await second.getMeta('server_id')).toBe('abc');
  });

  it('uses WAL journaling; SQLite itself commits without fsync (NORMAL), the store fsyncs the WAL', async () => {
    const file = path.join(tempDir(), 'state.db');
    const store = await open(file);
    // A per-connection setting: read on the store's own connection.
    const own = (store as unknown as { db: { prepare(sql: string): { get(): unknown } } }).db;
    expect(own.prepare('PRAGMA synchronous').get()).toEqual({ synchronous: 1 });
    walOf(store);
    const { DatabaseSync } = await import('node:sqlite');
    const probe = new DatabaseSync(file);
    try {
      expect(probe.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
    } finally {
      probe.close();
    }
    expect(existsSync(`${file}-wal`)).toBe(true);
  });

  it('resolves a chunk record only after an fsync of the WAL that began after its commit, off the main thread; records made meanwhile share the next one', async () => {
    const file = path.join(tempDir(), 'state.db');
    const store = await open(file);
    const wal = walOf(store);
    const real = wal.datasync.bind(wal);
    const gates: (() => void)[] = [];
    let started = 0;
    wal.datasync = async () => {
      started++;
      await new Promise<void>((resolve) => gates.push(resolve));
      return real();
    };
    const chunk = (ordinal: number) =>
      ({ table: 't', partition: '0', ordinal, id: `c${ordinal}`, after: null, next: null, status: 'read' }) as const;
    const done: string[] = [];
    const first = store.saveChunk('p', chunk(0)).then(() => done.push('c0'));
    await turn();
    expect(started).toBe(1);
    // Committed already: another connection sees it (a killed process keeps it), the caller not yet.
    const { DatabaseSync } = await import('node:sqlite');
    const probe = new DatabaseSync(file);
    try {
      expect(probe.prepare('SELECT id FROM snapshot_chunks WHERE ordinal = 0').get()).toEqual({ id: 'c0' });
    } finally {
      probe.close();
    }
    const second = store.saveChunk('p', chunk(1)).then(() => done.push('c1'));
    const third = store.markPartitionDone('p', 't', '1', 10);
    await turn();
    // The fsync under way began before their commits: they wait for the next one.
    expect(started).toBe(1);
    expect(done).toEqual([]);
    gates.shift()!();
    await first;
    await turn();
    expect(done).toEqual(['c0']);
    expect(started).toBe(2);
    gates.shift()!();
    await Promise.all([second, third]);
    expect(started).toBe(2);
    expect((await store.listChunks('p')).map((c) => c.id)).toEqual(['c0', 'c1']);
  });

  it('fails a write whose fsync fails with StateUnavailable naming the file, and every write after it', async () => {
    const file = path.join(tempDir(), 'state.db');
    const store = await open(file);
    const wal = walOf(store);
    const real = wal.datasync.bind(wal);
    wal.datasync = async () => {
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    };
    const err = await store
      .saveChunk('p', { table: 't', partition: '0', ordinal: 0, id: 'c', after: null, next: null, status: 'read' })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(NanosyncError.is(err, ErrorCode.StateUnavailable)).toBe(true);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(/cannot save a snapshot chunk: the write did not reach the disk \(EIO/);
    expect((err as Error).message).toContain('fix the disk and restart nanosync');
    expect((err as Error).message).not.toContain('writable');
    // The kernel may have dropped the pages: a later fsync that succeeds proves nothing.
    wal.datasync = real;
    await expect(store.saveCheckpoint('p', 's', '1')).rejects.toThrow(
      /cannot save a checkpoint: the write did not reach the disk/,
    );
    await expect(store.markPartitionDone('p', 't', '0', 1)).rejects.toThrow(/the write did not reach the disk/);
  });

  it('upgrades a version-1 file: leases get epoch 1 and keep their holder, servers can register', async () => {
    const file = path.join(tempDir(), 's.db');
    await (await openSqliteStateStore(file)).close();
    const { DatabaseSync } = await import('node:sqlite');
    const v1 = new DatabaseSync(file);
    v1.exec('ALTER TABLE leases DROP COLUMN epoch');
    v1.exec('DROP TABLE servers');
    v1.exec('DROP TABLE snapshot_chunks');
    v1.exec("UPDATE meta SET value = '1' WHERE key = 'schema_version'");
    v1.exec(`INSERT INTO leases (pipeline, holder, expires_at) VALUES ('p', 'old-server', ${Date.now() + 60_000})`);
    v1.close();
    const store = await open(file);
    expect(await store.getLease('p')).toMatchObject({ holder: 'old-server', epoch: 1 });
    expect(await store.acquireLease('p', 'old-server', 60_000)).toEqual({ acquired: true, epoch: 1 });
    expect(await store.getMeta('schema_version')).toBe('4');
    await store.registerServer('s1', 60_000, {});
    expect((await store.listServers()).map((s) => s.id)).toEqual(['s1']);
  });

  it('upgrades a version-3 file (no chunk records): a partition in progress has no chunks, and chunks can be recorded', async () => {
    const file = path.join(tempDir(), 's.db');
    const before = await openSqliteStateStore(file);
    await before.savePartitions('p', 't.a', [{ id: '0', ordinal: 0, bounds: { startPage: 0, endPage: null } }]);
    await before.close();
    const { DatabaseSync } = await import('node:sqlite');
    const v3 = new DatabaseSync(file);
    v3.exec('DROP TABLE snapshot_chunks');
    v3.exec("UPDATE meta SET value = '3' WHERE key = 'schema_version'");
    v3.close();
    const store = await open(file);
    expect(await store.getMeta('schema_version')).toBe('4');
    expect((await store.listPartitions('p')).map((x) => `${x.id}:${x.status}`)).toEqual(['0:pending']);
    expect(await store.listChunks('p')).toEqual([]);
    await store.saveChunk('p', {
      table: 't.a',
      partition: '0',
      ordinal: 0,
      id: 'c0',
      after: null,
      next: null,
      status: 'read',
    });
    expect((await store.listChunks('p')).map((c) => c.id)).toEqual(['c0']);
  });

  it('refuses a file written by a newer nanosync', async () => {
    const file = path.join(tempDir(), 's.db');
    const store = await openSqliteStateStore(file);
    await store.setMeta('schema_version', '5');
    await store.close();
    await expect(openSqliteStateStore(file)).rejects.toThrow(/schema version 5 is not supported/);
  });

  it('refuses an unwritable location with StateUnavailable naming the path, creating nothing', async () => {
    const dir = tempDir();
    // A regular file where a folder should be: unwritable for every user, root included.
    writeFileSync(path.join(dir, 'blocker'), 'not a folder');
    const file = path.join(dir, 'blocker', 'sub', 'state.db');
    const err = await openSqliteStateStore(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(NanosyncError.is(err, ErrorCode.StateUnavailable)).toBe(true);
    expect((err as Error).message).toContain(file);
    expect(readdirSync(dir)).toEqual(['blocker']);
  });

  it('refuses a path that is a folder, and removes the folders it created for it', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'a', 'b');
    // `b` exists as a folder inside a fresh `a`: SQLite cannot open a folder as a database.
    const { mkdirSync } = await import('node:fs');
    mkdirSync(file, { recursive: true });
    const err = await openSqliteStateStore(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(NanosyncError.is(err, ErrorCode.StateUnavailable)).toBe(true);
    expect((err as Error).message).toContain(file);
    expect(readdirSync(path.join(dir, 'a'))).toEqual(['b']);
  });
});

registerStateStoreContract('SQLite', async () => {
  const file = path.join(tempDir(), 'state.db');
  return { open: () => openSqliteStateStore(file), label: file };
});
