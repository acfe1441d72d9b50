import { randomUUID } from 'node:crypto';
import { ErrorCode, NanosyncError } from '@nanosync/core';
import { type PostgresService, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerStateStoreContract } from '../../../core/test/state-store-contract.js';
import { openPostgresStateStore, SCHEMA_VERSION } from '../../src/index.js';

let postgres: PostgresService;
let url: string;
beforeAll(async () => {
  postgres = await startPostgres();
  url = await postgres.createDatabase();
});
afterAll(async () => {
  await postgres?.[Symbol.asyncDispose]();
});

async function sql<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

function schemaName(): string {
  return `ns_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
}

// Every contract test gets its own schema in one database.
registerStateStoreContract('PostgreSQL', async () => {
  const schema = schemaName();
  return {
    open: () => openPostgresStateStore(url, { schema }),
    label: `${postgres.host}:${postgres.port}`,
    dispose: async () => {
      await sql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
});

describe('openPostgresStateStore', () => {
  it('creates the nanosync schema by default and migrates once when many servers open at once', async () => {
    const db = await postgres.createDatabase();
    const stores = await Promise.all(Array.from({ length: 5 }, () => openPostgresStateStore(db)));
    try {
      const client = new pg.Client({ connectionString: db });
      await client.connect();
      try {
        const { rows } = await client.query<{ version: number }>('SELECT version FROM nanosync.schema_migrations');
        // Every migration applied once, in order.
        expect(rows.map((r) => r.version)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
        const tables = await client.query<{ table_name: string }>(
          "SELECT table_name FROM information_schema.tables WHERE table_schema = 'nanosync' ORDER BY table_name",
        );
        expect(tables.rows.map((r) => r.table_name)).toEqual([
          'checkpoints',
          'leases',
          'meta',
          'partitions',
          'pipelines',
          'schema_migrations',
          'servers',
          'snapshot_chunks',
        ]);
      } finally {
        await client.end();
      }
    } finally {
      for (const s of stores) await s.close();
    }
  });

  it('takes the schema from ?schema= in the URL', async () => {
    const schema = schemaName();
    const store = await openPostgresStateStore(`${url}?schema=${schema}`);
    try {
      await store.setMeta('k', 'v');
      expect(await sql(`SELECT value FROM ${schema}.meta WHERE key = 'k'`)).toEqual([{ value: 'v' }]);
    } finally {
      await store.close();
      await sql(`DROP SCHEMA ${schema} CASCADE`);
    }
  });

  it('migrates a store of version 2 (no chunk records): its partitions stay, chunks can be recorded', async () => {
    const schema = schemaName();
    const before = await openPostgresStateStore(url, { schema });
    await before.savePartitions('p', 't.a', [{ id: '0', ordinal: 0, bounds: null }]);
    await before.close();
    await sql(`DROP TABLE ${schema}.snapshot_chunks`);
    await sql(`DELETE FROM ${schema}.schema_migrations WHERE version > 2`);
    const store = await openPostgresStateStore(url, { schema });
    try {
      expect(await sql(`SELECT max(version) AS v FROM ${schema}.schema_migrations`)).toEqual([{ v: SCHEMA_VERSION }]);
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
    } finally {
      await store.close();
      await sql(`DROP SCHEMA ${schema} CASCADE`);
    }
  });

  it('refuses a store migrated by a newer nanosync, naming the versions', async () => {
    const schema = schemaName();
    await (await openPostgresStateStore(url, { schema })).close();
    await sql(`INSERT INTO ${schema}.schema_migrations (version) VALUES ($1)`, [SCHEMA_VERSION + 1]);
    const err = await openPostgresStateStore(url, { schema }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(NanosyncError.is(err, ErrorCode.StateCorrupt)).toBe(true);
    expect((err as Error).message).toContain(`schema version ${SCHEMA_VERSION + 1}`);
    await sql(`DROP SCHEMA ${schema} CASCADE`);
  });

  it('fails at open with StateUnavailable for a role that may not write, without the password', async () => {
    const schema = schemaName();
    await (await openPostgresStateStore(url, { schema })).close();
    const role = `ro_${randomUUID().replace(/-/g, '').slice(0, 8)}`;
    await sql(`CREATE ROLE ${role} LOGIN PASSWORD 'sekret-pw'`);
    await sql(`GRANT USAGE ON SCHEMA ${schema} TO ${role}`);
    await sql(`GRANT SELECT ON ALL TABLES IN SCHEMA ${schema} TO ${role}`);
    const roUrl = new URL(url);
    roUrl.username = role;
    roUrl.password = 'sekret-pw';
    const err = await openPostgresStateStore(roUrl.toString(), { schema }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(NanosyncError.is(err, ErrorCode.StateUnavailable)).toBe(true);
    expect((err as Error).message).toContain(`${role}@${postgres.host}:${postgres.port}`);
    expect((err as Error).message).toContain('permission denied');
    expect((err as Error).message).not.toContain('sekret-pw');
  });

  it('names the server when it cannot be reached', async () => {
    const dead = new URL(url);
    dead.port = '1';
    const err = await openPostgresStateStore(dead.toString()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(NanosyncError.is(err, ErrorCode.StateUnavailable)).toBe(true);
    expect((err as Error).message).toContain(`${postgres.host}:1`);
  });

  it('refuses a fenced checkpoint that raced with a takeover committed while it waited', async () => {
    const schema = schemaName();
    const store = await openPostgresStateStore(url, { schema, applicationName: `fence-${schema}` });
    const takeover = new pg.Client({ connectionString: url });
    await takeover.connect();
    try {
      const a = await store.acquireLease('p', 'server-a', 60_000);
      if (!a.acquired) throw new Error('no lease');
      // server-b's takeover is under way (row locked, not committed) when server-a writes.
      await takeover.query('BEGIN');
      await takeover.query(
        `UPDATE ${schema}.leases SET holder = 'server-b', epoch = epoch + 1, expires_at = now() + interval '1 minute' WHERE pipeline = 'p'`,
      );
      const write = store.saveCheckpoint('p', 'sink', 'late', { holder: 'server-a', epoch: a.epoch }).then(
        () => undefined,
        (e: unknown) => e,
      );
      // Wait until the write is blocked on the lease row, then let the takeover commit.
      for (;;) {
        const waiting = await sql<{ n: string }>(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
          [`fence-${schema}`],
        );
        if (Number(waiting[0]?.n) > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await takeover.query('COMMIT');
      const err = await write;
      expect(NanosyncError.is(err, ErrorCode.PipelineLeaseHeld)).toBe(true);
      expect(await store.getCheckpoints('p')).toEqual({});
    } finally {
      await takeover.end();
      await store.close();
      await sql(`DROP SCHEMA ${schema} CASCADE`);
    }
  });

  it('a renewal that waited longer than the TTL for the lease row (held FOR SHARE by a fenced write) writes a lease that is still valid', async () => {
    const schema = schemaName();
    const store = await openPostgresStateStore(url, { schema, applicationName: `renew-${schema}` });
    const writer = new pg.Client({ connectionString: url });
    await writer.connect();
    try {
      const ttlMs = 400;
      // Taken for long enough that the wait below does not outlast it: a renewal, not a new taking.
      const taken = await store.acquireLease('p', 'server-a', 60_000);
      if (!taken.acquired) throw new Error('no lease');
      // A fenced write of the same server holds the lease row while its statement waits.
      await writer.query('BEGIN');
      await writer.query(`SELECT 1 FROM ${schema}.leases WHERE pipeline = 'p' FOR SHARE`);
      const { rows } = await writer.query<{ at: Date }>('SELECT clock_timestamp() AS at');
      const renewal = store.acquireLease('p', 'server-a', ttlMs);
      for (;;) {
        const waiting = await sql<{ n: string }>(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
          [`renew-${schema}`],
        );
        if (Number(waiting[0]?.n) > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      // Let more than a TTL pass (on the database clock) while the renewal waits.
      for (;;) {
        const [passed] = await sql<{ done: boolean }>(
          `SELECT clock_timestamp() > $1::timestamptz + $2 * interval '2 millisecond' AS done`,
          [rows[0]!.at, ttlMs],
        );
        if (passed?.done) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await writer.query('COMMIT');
      const renewed = await renewal;
      const [lease] = await sql<{ expires_at: Date }>(`SELECT expires_at FROM ${schema}.leases WHERE pipeline = 'p'`);
      // Still the same lease (a renewal, not a new taking), running a TTL from when the row
      // was written (after the wait), not from when the statement began.
      expect(renewed).toEqual({ acquired: true, epoch: taken.epoch });
      expect(lease?.expires_at.getTime()).toBeGreaterThan(rows[0]!.at.getTime() + 2 * ttlMs);
    } finally {
      await writer.end();
      await store.close();
      await sql(`DROP SCHEMA ${schema} CASCADE`);
    }
  });

  it('turned read-only (as after a failover to a standby): writes fail as StateUnavailable naming the store, and work again once writable', async () => {
    const db = await postgres.createDatabase();
    const dbName = new URL(db).pathname.slice(1);
    const app = `ro-${randomUUID().slice(0, 8)}`;
    const store = await openPostgresStateStore(db, { applicationName: app });
    // From another database of the server: sessions of `db` itself turn read-only too.
    const admin = async (text: string) => {
      const client = new pg.Client({ connectionString: postgres.url });
      await client.connect();
      try {
        await client.query(text);
      } finally {
        await client.end();
      }
    };
    // New sessions of this database are read-only; the store's open ones are cut, so it reconnects.
    const cut = () => admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '${app}'`);
    try {
      const lease = await store.acquireLease('p', 'server-a', 60_000);
      if (!lease.acquired) throw new Error('no lease');
      const fence = { holder: 'server-a', epoch: lease.epoch };
      await store.saveCheckpoint('p', 'sink', 'A1', fence);
      await admin(`ALTER DATABASE "${dbName}" SET default_transaction_read_only = on`);
      await cut();
      let err: unknown;
      // The first call after the cut may meet a dead pooled connection; either way it fails.
      for (let i = 0; i < 3 && !String((err as Error | undefined)?.message).includes('read-only'); i++) {
        err = await store.saveCheckpoint('p', 'sink', 'A2', fence).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(NanosyncError.is(err, ErrorCode.StateUnavailable)).toBe(true);
      }
      expect((err as Error).message).toContain(`state store postgres://`);
      expect((err as Error).message).toContain(`${postgres.host}:${postgres.port}/${dbName}`);
      expect((err as Error).message).toContain('read-only transaction');
      await admin(`ALTER DATABASE "${dbName}" RESET default_transaction_read_only`);
      await cut();
      for (let i = 0; ; i++) {
        const again = await store.saveCheckpoint('p', 'sink', 'A3', fence).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (again === undefined) break;
        if (i >= 2) throw again;
      }
      expect(await store.getCheckpoints('p')).toEqual({ sink: 'A3' });
    } finally {
      await store.close();
    }
  });

  it('refuses a schema name that is not a plain identifier', async () => {
    await expect(openPostgresStateStore(url, { schema: 'a"; DROP TABLE x; --' })).rejects.toMatchObject({
      code: ErrorCode.ConfigInvalid,
    });
    await expect(openPostgresStateStore('mysql://x/y')).rejects.toThrow(/postgres:\/\//);
  });
});
