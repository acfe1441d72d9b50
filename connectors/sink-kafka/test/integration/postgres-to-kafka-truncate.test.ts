import { startKafka, startPostgres } from '@nanosync/testcontainers';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { codecFor, type DecodedChange, MESSAGE_FORMATS } from '../../src/formats/index.js';
import { NanosyncProcess, e2eWorkspace, eventually, writePipelines } from './e2e-helpers.js';
import { consumeAll, reduceByKey, uniqueName } from './helpers.js';

let postgres: Awaited<ReturnType<typeof startPostgres>>;
let kafka: Awaited<ReturnType<typeof startKafka>>;
beforeAll(async () => {
  postgres = await startPostgres();
  kafka = await startKafka();
}, 300_000);
afterAll(async () => {
  await kafka?.[Symbol.asyncDispose]();
  await postgres?.[Symbol.asyncDispose]();
});

const DDL = [
  'CREATE TABLE items (id int PRIMARY KEY, label text)',
  `INSERT INTO items SELECT g, 'seed' FROM generate_series(1, 2000) g`,
  'CREATE TABLE tags (id int PRIMARY KEY, label text)',
  `INSERT INTO tags SELECT g, 'seed' FROM generate_series(1, 100) g`,
  'CREATE TABLE parents (id int PRIMARY KEY)',
  'CREATE TABLE children (id serial PRIMARY KEY, parent_id int NOT NULL REFERENCES parents (id))',
  'INSERT INTO parents SELECT generate_series(1, 10)',
  'INSERT INTO children (parent_id) SELECT 1 + g % 10 FROM generate_series(1, 50) g',
];
/** Seeded rows per table: the snapshot is in Kafka once every topic holds at least these. */
const SEEDED: Record<string, number> = { items: 2000, tags: 100, parents: 10, children: 50 };
const TABLES = Object.keys(SEEDED);
/**
 * Inserted last. Its id is outside every seeded range, so the topic holds its insert only once
 * the stream has delivered everything committed before it (a seeded id is already there as a
 * snapshot row).
 */
const MARKER = 1_000_000;

/** A row as text by column, so the four formats' number and string spellings compare alike. */
function asText(row: Record<string, unknown>): Record<string, string | null> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v === null || v === undefined ? null : String(v)]));
}

async function tableRows(db: pg.Client, table: string): Promise<Map<string, Record<string, string | null>>> {
  const { rows } = await db.query<Record<string, unknown>>(`SELECT * FROM ${table} ORDER BY id`);
  return new Map(rows.map((r) => [`[${r.id}]`, asText(r)]));
}

describe.each(MESSAGE_FORMATS)('postgres → kafka (%s): TRUNCATE while streaming', (format) => {
  const decode = (value: Buffer) => codecFor(format).decode(value);
  test(
    'single, multi-table and CASCADE truncates, then inserts: every topic reduced by key with truncates applied equals its table',
    { timeout: 400_000 },
    async () => {
      await using workspace = await e2eWorkspace(postgres, 'ns-kafka-truncate-');
      const { url, db, dir } = workspace;
      const pipeline = uniqueName(`truncate_${format}`).replace(/-/g, '_');
      const prefix = `${uniqueName(`ns-tr-${format}`)}.`;
      const topicOf = (table: string) => `${prefix}public_${table}`;
      let nanosync: NanosyncProcess | undefined;
      try {
        for (const statement of DDL) await db.query(statement);
        const { args } = await writePipelines(dir, {
          postgresUrl: url,
          brokers: kafka.brokers,
          pipelines: [
            {
              name: pipeline,
              tables: TABLES.map((t) => `public.${t}`),
              sink: { topic_prefix: prefix, num_partitions: 1, message_format: format },
            },
          ],
        });
        nanosync = new NanosyncProcess(args);
        const running = nanosync;
        for (const table of TABLES)
          await eventually(
            async () =>
              (await consumeAll(kafka.brokers, topicOf(table)).catch(() => [])).length >= SEEDED[table]!
                ? true
                : undefined,
            `the snapshot of ${table} in Kafka`,
            180_000,
            () => running.output.slice(-3000),
          );

        await db.query('TRUNCATE items');
        await db.query(`INSERT INTO items VALUES (1, 'one'), (2, 'two')`);
        await db.query('TRUNCATE items, tags');
        await db.query(`INSERT INTO tags VALUES (7, 'seven')`);
        await db.query('BEGIN');
        await db.query(`INSERT INTO items VALUES (3, 'three')`);
        await db.query('TRUNCATE parents RESTART IDENTITY CASCADE');
        await db.query('INSERT INTO parents VALUES (100)');
        await db.query('INSERT INTO children (parent_id) VALUES (100), (100)');
        await db.query('COMMIT');
        await db.query(`UPDATE tags SET label = 'seven again' WHERE id = 7`);
        await db.query(`INSERT INTO items VALUES (${MARKER}, 'marker')`);
        await eventually(
          async () => {
            const records = await consumeAll(kafka.brokers, topicOf('items'));
            return records.some((r) => r.key === `[${MARKER}]` && r.value !== null && decode(r.value).op === 'insert')
              ? true
              : undefined;
          },
          'the marker insert in Kafka',
          180_000,
          () => running.output.slice(-3000),
        );

        const truncates: Record<string, DecodedChange[]> = {};
        for (const table of TABLES) {
          const records = await consumeAll(kafka.brokers, topicOf(table));
          const live = reduceByKey(records, decode, asText);
          const expected = await tableRows(db, table);
          expect(Object.fromEntries(live), table).toEqual(Object.fromEntries(expected));
          const changes = records.filter((r) => r.value !== null).map((r) => decode(r.value!));
          truncates[table] = changes.filter((c) => c.op === 'truncate');
          for (const c of truncates[table]!) expect(c.table).toBe(`public.${table}`);
          // Nothing of the snapshot comes after a truncate of its table.
          const first = changes.findIndex((c) => c.op === 'truncate');
          expect(
            changes.slice(first + 1).some((c) => c.op === 'read'),
            table,
          ).toBe(false);
        }
        // One truncate message per table per statement: the single and the multi-table one on
        // items, the multi-table one on tags, the CASCADE on parents and on the child it reached.
        expect(Object.fromEntries(TABLES.map((t) => [t, truncates[t]!.length]))).toEqual({
          items: 2,
          tags: 1,
          parents: 1,
          children: 1,
        });
        expect(truncates.parents![0]!.truncate).toEqual({ cascade: true, restartIdentity: true });
        expect(truncates.items![0]!.truncate).toEqual({ cascade: false, restartIdentity: false });
        // The tables are not trivially empty: the comparison above saw the post-truncate rows.
        expect((await tableRows(db, 'children')).size).toBe(2);
        expect([...(await tableRows(db, 'items')).keys()]).toEqual(['[3]', `[${MARKER}]`]);
      } finally {
        await nanosync?.kill('SIGTERM').catch(() => undefined);
      }
    },
  );
});
