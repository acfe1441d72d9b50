import pg from 'pg';
import { parseLsn } from './lsn.js';

export type PgClient = pg.Client;

export async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

/**
 * The 16 columns of every bench table: bigint key, 2 bigint, int, 4 double precision,
 * 3 date, 5 varchar(32) of random text (10–32 characters): about 230 bytes a row on disk.
 */
export function tableDdl(table: string): string {
  return `CREATE TABLE ${table} (
    id bigint NOT NULL,
    b1 bigint, b2 bigint, i1 integer,
    f1 double precision, f2 double precision, f3 double precision, f4 double precision,
    d1 date, d2 date, d3 date,
    s1 varchar(32), s2 varchar(32), s3 varchar(32), s4 varchar(32), s5 varchar(32)
  )`;
}

/** SQL expressions for the 15 non-key columns, given an expression for the row number. */
export function rowValues(n: string): string {
  const text = () => `substr(md5(random()::text), 1, 10 + (random() * 22)::int)`;
  return [
    `${n} * 7`,
    `(random() * 1e12)::bigint`,
    `(random() * 2e9 - 1e9)::int`,
    `random()`,
    `random() * 1000`,
    `random() * 1e6`,
    `round((random() * 100)::numeric, 2)::float8`,
    `date '2000-01-01' + (random() * 9000)::int`,
    `date '2000-01-01' + (random() * 9000)::int`,
    `date '2000-01-01' + (${n} % 9000)::int`,
    text(),
    text(),
    text(),
    text(),
    text(),
  ].join(', ');
}

/** S1: builds the snapshot table with generate_series, then freezes it so no reader pays for hint bits. */
export async function createSnapshotTable(client: pg.Client, table: string, rows: number): Promise<{ bytes: number }> {
  await client.query(`DROP TABLE IF EXISTS ${table}`);
  await client.query(tableDdl(table));
  await client.query(`INSERT INTO ${table} SELECT g, ${rowValues('g')} FROM generate_series(1, ${rows}) g`);
  await client.query(`ALTER TABLE ${table} ADD PRIMARY KEY (id)`);
  await client.query(`VACUUM (FREEZE, ANALYZE) ${table}`);
  const { rows: size } = await client.query<{ bytes: string }>(`SELECT pg_table_size('${table}') AS bytes`);
  return { bytes: Number(size[0]?.bytes ?? 0) };
}

/** S2/S3: an empty change table with a key (and one row, id 0, that fence transactions update). */
export async function createChangeTable(client: pg.Client, table: string): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS ${table}`);
  await client.query(tableDdl(table));
  await client.query(`ALTER TABLE ${table} ADD PRIMARY KEY (id)`);
  await client.query(`INSERT INTO ${table} SELECT 0, ${rowValues('0')}`);
}

/**
 * A procedure that writes `n` changes into `table` and commits every `tx_size` of them.
 * Every group of ten changes inserts five new rows, updates three of them and deletes the
 * other two, so every statement touches exactly one row and emits exactly one event.
 */
export async function installChangeGenerator(client: pg.Client, table: string): Promise<string> {
  const procedure = `${table}_generate`;
  await client.query(`CREATE OR REPLACE PROCEDURE ${procedure}(n bigint, tx_size int, first_id bigint)
  LANGUAGE plpgsql AS $$
  DECLARE
    i bigint := 0;
    next_id bigint := first_id;
    base bigint := first_id;
  BEGIN
    WHILE i < n LOOP
      CASE i % 10
        WHEN 0 THEN
          base := next_id;
          INSERT INTO ${table} VALUES (next_id, ${rowValues('next_id')}); next_id := next_id + 1;
        WHEN 1, 2, 3, 4 THEN
          INSERT INTO ${table} VALUES (next_id, ${rowValues('next_id')}); next_id := next_id + 1;
        WHEN 5, 6, 7 THEN
          UPDATE ${table} SET b1 = b1 + 1, f1 = random(), s1 = substr(md5(random()::text), 1, 20) WHERE id = base + (i % 10) - 5;
        ELSE
          DELETE FROM ${table} WHERE id = base + (i % 10) - 5;
      END CASE;
      i := i + 1;
      IF i % tx_size = 0 THEN COMMIT; END IF;
    END LOOP;
    COMMIT;
  END $$`);
  return procedure;
}

/** Runs the generator with synchronous_commit off: the backlog is what is measured, not how fast it was written. */
export async function generateChanges(
  url: string,
  procedure: string,
  changes: number,
  txSize: number,
  firstId: number,
): Promise<void> {
  const client = await connect(url);
  try {
    await client.query('SET synchronous_commit = off');
    await client.query(`CALL ${procedure}($1, $2, $3)`, [changes, txSize, firstId]);
  } finally {
    await client.end();
  }
}

/** One-row update of the fence row (id 0), in its own transaction. */
export async function fenceTransaction(client: pg.Client, table: string): Promise<void> {
  await client.query(`UPDATE ${table} SET b1 = b1 + 1 WHERE id = 0`);
}

export async function currentWalLsn(client: pg.Client): Promise<bigint> {
  const { rows } = await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return parseLsn(rows[0]?.lsn ?? '0/0');
}

export interface SlotState {
  slotName: string;
  active: boolean;
  confirmedFlushLsn: bigint | undefined;
}

export async function slots(client: pg.Client): Promise<SlotState[]> {
  const { rows } = await client.query<{ slot_name: string; active: boolean; lsn: string | null }>(
    `SELECT slot_name, active, confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE database = current_database()`,
  );
  return rows.map((r) => ({
    slotName: r.slot_name,
    active: r.active,
    confirmedFlushLsn: r.lsn ? parseLsn(r.lsn) : undefined,
  }));
}

/** Drops a slot once its reader has gone (a stopped tool's walsender may linger a moment); gives up quietly after ~10 s. */
export async function dropSlotQuietly(client: pg.Client, slot: string): Promise<void> {
  for (let attempt = 0; attempt < 40; attempt++) {
    try {
      const { rows } = await client.query<{ active: boolean }>(
        'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      if (rows.length === 0) return;
      if (!rows[0]?.active) {
        await client.query('SELECT pg_drop_replication_slot($1)', [slot]);
        return;
      }
    } catch {
      // raced with the reader: try again
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Inserts rows id first..first+count-1 in one statement (one transaction). */
export async function insertRows(client: pg.Client, table: string, first: number, count: number): Promise<void> {
  await client.query(
    `INSERT INTO ${table} SELECT g, ${rowValues('g')} FROM generate_series($1::bigint, $2::bigint) g`,
    [first, first + count - 1],
  );
}

/** Server version like "15.14". */
export async function serverVersion(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v");
  return rows[0]?.v.split(' ')[0] ?? 'unknown';
}
