import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startPostgres } from '../../src/index.js';

describe('startPostgres', () => {
  it('reuses the shared server handed over by the global setup', async () => {
    expect(process.env.NANOSYNC_TEST_PG_URL).toMatch(/^postgres:\/\//);
    await using server = await startPostgres();
    expect(server.owned).toBe(false);
    expect(server.url).toBe(process.env.NANOSYNC_TEST_PG_URL);
  });

  it('runs with wal_level=logical and creates a pgoutput slot in a fresh database', async () => {
    await using server = await startPostgres();
    const url = await server.createDatabase();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ wal_level: string }>('SHOW wal_level');
      expect(rows[0]?.wal_level).toBe('logical');
      const slot = `ns_tc_slot_${Date.now()}`;
      const created = await client.query<{ slot_name: string; lsn: string }>(
        "SELECT slot_name, lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
        [slot],
      );
      expect(created.rows[0]?.slot_name).toBe(slot);
      expect(created.rows[0]?.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      const listed = await client.query('SELECT plugin FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      expect(listed.rows[0]?.plugin).toBe('pgoutput');
      await client.query('SELECT pg_drop_replication_slot($1)', [slot]);
    } finally {
      await client.end();
    }
  });
});

describe('startPostgres({ fresh: true })', () => {
  it('owns its server: data and port survive stop/start and restart, and dispose removes it', async () => {
    let dataCheckUrl: string;
    let port: number;
    {
      await using server = await startPostgres({ fresh: true, settings: { wal_sender_timeout: '5s' } });
      expect(server.owned).toBe(true);
      expect(server.url).not.toBe(process.env.NANOSYNC_TEST_PG_URL);
      port = server.port;
      dataCheckUrl = await server.createDatabase('ns_tc_restart');
      const client = new pg.Client({ connectionString: dataCheckUrl });
      await client.connect();
      await client.query('CREATE TABLE kept (id int PRIMARY KEY)');
      await client.query('INSERT INTO kept VALUES (1), (2)');
      expect((await client.query('SHOW wal_sender_timeout')).rows[0]?.wal_sender_timeout).toBe('5s');
      await client.end();

      await server.stop();
      const refused = new pg.Client({ connectionString: dataCheckUrl, connectionTimeoutMillis: 2000 });
      await expect(refused.connect()).rejects.toThrow();
      await server.start();
      await server.restart();
      expect(server.port).toBe(port);

      const again = new pg.Client({ connectionString: dataCheckUrl });
      await again.connect();
      expect((await again.query('SELECT count(*)::int AS n FROM kept')).rows[0]?.n).toBe(2);
      await again.end();
    }
    const gone = new pg.Client({ connectionString: dataCheckUrl, connectionTimeoutMillis: 2000 });
    await expect(gone.connect()).rejects.toThrow();
  });
});
