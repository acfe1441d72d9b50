import type { LogicalType, Value } from '@nanosync/core';
import {
  type KafkaService,
  type PostgresService,
  type SchemaRegistryService,
  kafkaLibDir,
  startKafka,
  startPostgres,
  startSchemaRegistry,
} from '@nanosync/testcontainers';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ARRAYS, COLUMNS, DDL, ROWS, SCALARS } from '../../../source-postgres/test/integration/types-data.js';
import { dateToDays, timeToMicros, timestampToMicros } from '../../src/formats/temporal.js';
import { SchemaRegistryClient } from '../../src/registry/client.js';
import { readWireHeader } from '../../src/registry/codec.js';
import { NanosyncServer } from '@nanosync/connector-testkit';
import { NanosyncProcess, e2eWorkspace, eventually, writePipelines } from './e2e-helpers.js';
import { consumeAll, uniqueName } from './helpers.js';
import { type JavaRecord, type RegistryReaders, javaConsume, registryReaders } from './registry-helpers.js';

/**
 * Registry mode end to end: real PostgreSQL tables, the real pipeline (the CLI), a real
 * broker and a real Confluent-compatible registry (Apicurio); every record is decoded by a
 * Java consumer (Apache Avro / protobuf-java, schemas fetched by id from the registry) and
 * its values compared with the source's.
 */

let postgres: PostgresService;
let kafka: KafkaService;
let registry: SchemaRegistryService;
let readers: RegistryReaders | undefined;
let kafkaLib: string;
let client: SchemaRegistryClient;

beforeAll(async () => {
  [postgres, kafka, registry, readers, kafkaLib] = await Promise.all([
    startPostgres(),
    startKafka(),
    startSchemaRegistry(),
    registryReaders(),
    kafkaLibDir(),
  ]);
  client = new SchemaRegistryClient({ url: registry.url });
}, 600_000);

afterAll(async () => {
  client?.close();
  await registry?.[Symbol.asyncDispose]();
  await kafka?.[Symbol.asyncDispose]();
  await postgres?.[Symbol.asyncDispose]();
});

type Format = 'avro' | 'protobuf';

const INT64_MAX = 9223372036854775807n;

const int32: LogicalType = { kind: 'int32' };
const text: LogicalType = { kind: 'string' };
/**
 * The logical kinds of the type test's columns that are not carried as text (everything
 * else, from numeric to macaddr and the types beyond the common ones, is a string).
 */
const KINDS: Record<string, LogicalType> = {
  i2: { kind: 'int16' },
  i4: int32,
  i8: { kind: 'int64' },
  f4: { kind: 'float32' },
  f8: { kind: 'float64' },
  b: { kind: 'bool' },
  by: { kind: 'bytes' },
  d: { kind: 'date' },
  tm: { kind: 'time' },
  ts: { kind: 'timestamp' },
  tstz: { kind: 'timestamptz' },
  dom_ts: { kind: 'timestamptz' },
  ia: { kind: 'array', items: int32 },
  ta: { kind: 'array', items: text },
  na: { kind: 'array', items: { kind: 'decimal' } },
  tsa: { kind: 'array', items: { kind: 'timestamptz' } },
  ba: { kind: 'array', items: { kind: 'bytes' } },
  ea: { kind: 'array', items: text },
  o: { kind: 'int64' },
  ra: { kind: 'array', items: text },
  pa: { kind: 'array', items: text },
  da: { kind: 'array', items: int32 },
  ca: { kind: 'array', items: text },
  cia: { kind: 'array', items: text },
};
const kindOf = (column: string): LogicalType => KINDS[column] ?? text;

/** IEEE bits of a double as 16 hex digits: what RegistryConsume prints for a double. */
function doubleBits(n: number): string {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(n);
  return b.toString('hex');
}

/**
 * The normal form RegistryConsume prints (see its `norm`) for a canonical source value of
 * `type`, as the registry formats must carry it; undefined when the format refuses it.
 */
function expectedNorm(format: Format, type: LogicalType, value: Value): string | undefined {
  if (value === null) return 'null';
  if (type.kind === 'array') {
    const items = (value as Value[]).map((item) =>
      Array.isArray(item) ? expectedNorm(format, type, item) : expectedNorm(format, type.items, item),
    );
    return items.includes(undefined) ? undefined : `[${items.join(',')}]`;
  }
  const str = typeof value === 'string' ? value : '';
  switch (type.kind) {
    case 'int16':
    case 'int32':
    case 'int64':
      return String(value);
    case 'float32':
    case 'float64':
      return `d:${doubleBits(value as number)}`;
    case 'bool':
      return String(value);
    case 'bytes':
      return `b64:${Buffer.from(value as Uint8Array).toString('base64')}`;
    case 'date': {
      // dateToDays gives int32 max / min for ±infinity, as Protobuf carries them.
      const infinite = str === 'infinity' || str === '-infinity';
      if (format === 'protobuf') return String(dateToDays(str));
      return infinite ? JSON.stringify(str) : `days:${dateToDays(str)}`;
    }
    case 'time': {
      const micros = timeToMicros(str);
      if (format === 'protobuf') return String(micros);
      return str.startsWith('24:') ? JSON.stringify(str) : `us:${micros}`;
    }
    case 'timestamp':
    case 'timestamptz': {
      // timestampToMicros gives int64 max / min for ±infinity, as Protobuf carries them.
      const infinite = str === 'infinity' || str === '-infinity';
      const micros = timestampToMicros(str, type.kind === 'timestamptz');
      const fits = micros <= INT64_MAX && micros >= -INT64_MAX - 1n;
      if (format === 'protobuf') return fits ? String(micros) : undefined;
      return fits && !infinite ? `us:${micros}` : JSON.stringify(str);
    }
    default:
      return JSON.stringify(value);
  }
}

/** The value of each field of a Java record, in RegistryConsume's normal form. */
const fieldsOf = (record: JavaRecord) => new Map(record.fields.map((f) => [f.field, f.value]));

test(
  'every type of the Postgres type test, snapshot and stream, through Avro and Protobuf in registry mode: a Java consumer decodes every record against the registry and its values equal the source',
  { timeout: 900_000 },
  async (context) => {
    if (!readers) return context.skip('mvn not found: cannot fetch Avro / protobuf-java from Maven Central');
    await using workspace = await e2eWorkspace(postgres, 'ns-registry-types-');
    const { url, db, dir } = workspace;
    const run = uniqueName('sr-types');
    const moreColumns = [...SCALARS, ...ARRAYS];
    const insertMore = (id: number) =>
      db.query(`INSERT INTO public.more_types VALUES (${id}, ${moreColumns.map(([, , v]) => v).join(', ')})`);
    const insertAll = async (offset: number) => {
      for (const row of ROWS)
        await db.query(
          `INSERT INTO public.all_types (${COLUMNS}) VALUES (${row.sql.replace(/^(\s*)(\d+)/, (_m, ws, id) => `${ws}${Number(id) + offset}`)})`,
        );
    };
    let nanosync: NanosyncProcess | undefined;
    try {
      for (const statement of DDL) await db.query(statement);
      for (const statement of [
        'CREATE EXTENSION IF NOT EXISTS hstore',
        'CREATE EXTENSION IF NOT EXISTS citext',
        'CREATE EXTENSION IF NOT EXISTS ltree',
        'CREATE TYPE pair AS (n int, s text)',
        'CREATE DOMAIN int_list AS int[]',
        `CREATE TABLE public.more_types (id int PRIMARY KEY, ${moreColumns.map(([c, t]) => `${c} ${t}`).join(', ')})`,
      ])
        await db.query(statement);
      await insertAll(0);
      await insertMore(1);

      const formats: Format[] = ['avro', 'protobuf'];
      const prefix = (format: Format) => `${run}.${format}.`;
      const { args } = await writePipelines(dir, {
        postgresUrl: url,
        brokers: kafka.brokers,
        pipelines: formats.map((format) => ({
          name: `types_${format}`,
          tables: ['public.all_types', 'public.more_types'],
          // Protobuf's int64 microseconds cannot hold a year-294276 timestamp: that row is
          // refused alone (NS_K6006) and goes to the dead-letter topic.
          onError: 'dead_letter',
          sink: {
            topic_prefix: prefix(format),
            message_format: format,
            schema_registry_url: registry.url,
            num_partitions: 1,
          },
        })),
      });
      nanosync = new NanosyncProcess(args);
      const running = nanosync;
      const topicsOf = (format: Format) => [`${prefix(format)}public_all_types`, `${prefix(format)}public_more_types`];
      const dlqOf = (format: Format) => `${prefix(format)}dlq`;
      const count = async (format: Format) => {
        let n = 0;
        for (const topic of [...topicsOf(format), dlqOf(format)])
          n += (await consumeAll(kafka.brokers, topic).catch(() => [])).filter((r) => r.value !== null).length;
        return n;
      };
      // Snapshot: 3 + 1 rows per format.
      await eventually(
        async () => ((await count('avro')) >= 4 && (await count('protobuf')) >= 4 ? true : undefined),
        'the snapshot of both pipelines in Kafka',
        240_000,
        () => running.output.slice(-3000),
      );
      // Stream: the same values again, inserted while the pipelines run.
      await insertAll(100);
      await insertMore(2);
      await eventually(
        async () => ((await count('avro')) >= 8 && (await count('protobuf')) >= 8 ? true : undefined),
        'the streamed rows of both pipelines in Kafka',
        240_000,
        () => running.output.slice(-3000),
      );

      // The reference for the types beyond the common ones: the server's own text (psql's output).
      const text = (
        await db.query(
          `SELECT ${SCALARS.map(([c]) => `${c}::text AS ${c}`).join(', ')} FROM public.more_types WHERE id = 1`,
        )
      ).rows[0] as Record<string, string>;
      const moreExpected: Record<string, Value> = {
        ...text,
        ch: 'ab   ', // ::text trims char(n); its output keeps the padding
        o: '4294967295',
        ra: ['[1,2)', null],
        pa: ['(2,"a,b")'],
        da: [1, 2, null],
        ca: ['a  ', 'bb '],
        cia: ['X', 'y'],
      };

      for (const format of formats) {
        const topics = topicsOf(format);
        for (const topic of topics) {
          expect(await client.versions(`${topic}-value`), `${topic}-value`).toEqual([1]);
          expect(await client.versions(`${topic}-key`), `${topic}-key`).toEqual([1]);
        }
        const stored = [
          ...(await consumeAll(kafka.brokers, topics[0]!)),
          ...(await consumeAll(kafka.brokers, topics[1]!)),
        ];
        // Every value in the wire format: magic 0 and a registry id.
        for (const r of stored) expect(readWireHeader(r.value!).id).toBeGreaterThan(0);
        const dead = (await consumeAll(kafka.brokers, dlqOf(format)).catch(() => [])).map(
          (r) =>
            JSON.parse(r.value!.toString('utf8')) as { key: { id: number }; error: { code: string; message: string } },
        );
        if (format === 'avro') expect(dead).toEqual([]);
        else {
          // Exactly the rows holding 294276-12-31 (ids 3 and 103), refused for their column.
          expect(dead.map((d) => d.key.id).sort((a, b) => a - b)).toEqual([3, 103]);
          for (const d of dead) {
            expect(d.error.code).toBe('NS_K6006');
            expect(d.error.message).toContain('"ts"');
          }
        }

        const records = await javaConsume({
          readers,
          kafkaLib,
          brokers: kafka.brokers,
          registryUrl: registry.url,
          topics,
          expected: stored.length,
        });
        expect(records).toHaveLength(stored.length);
        // Keys decoded with the key schema: the id.
        for (const r of records) expect(r.key).toMatch(/\bid\b.*\d/);
        const ops = records.map((r) => r.op).sort();
        expect(ops.filter((o) => o === 'READ')).toHaveLength(format === 'avro' ? 4 : 3);
        expect(ops.filter((o) => o === 'INSERT')).toHaveLength(format === 'avro' ? 4 : 3);

        let compared = 0;
        for (const record of records) {
          const fields = fieldsOf(record);
          const id = Number(JSON.parse(fields.get('id') ?? 'null'));
          if (record.topic === topics[0]) {
            const row = ROWS.find((r) => r.expected.id === id % 100)?.expected;
            if (!row) throw new Error(`${format}: all_types id ${id} is not a row of the type test`);
            for (const [column, value] of Object.entries(row)) {
              if (column === 'id') continue;
              const type = kindOf(column);
              expect(fields.has(column), `${format} ${record.topic} ${column}`).toBe(true);
              expect(fields.get(column), `${format} all_types id ${id} ${column} = ${String(value)}`).toBe(
                expectedNorm(format, type, value),
              );
              compared++;
            }
          } else {
            for (const [column, value] of Object.entries(moreExpected)) {
              const type = kindOf(column);
              expect(fields.has(column), `${format} ${record.topic} ${column}`).toBe(true);
              expect(fields.get(column), `${format} more_types id ${id} ${column}`).toBe(
                expectedNorm(format, type, value),
              );
              compared++;
            }
          }
        }
        // 35 columns × (4 | 2 rows) + 24 columns × 2 rows.
        expect(compared).toBe(35 * (format === 'avro' ? 6 : 4) + moreColumns.length * 2);
      }
    } finally {
      await nanosync?.kill('SIGTERM').catch(() => undefined);
    }
  },
);

/** Inserts and updates on `evo` (id and note only, so it survives the DDL beside it), one statement at a time. */
class EvoWriter {
  private running = true;
  private readonly done: Promise<void>;
  private next = 1000;
  writes = 0;

  constructor(private readonly db: pg.Client) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      try {
        if (Math.random() < 0.5)
          await this.db.query('INSERT INTO evo (id, note) VALUES ($1, $2)', [this.next++, `w${this.writes}`]);
        else
          await this.db.query('UPDATE evo SET note = $2 WHERE id = $1', [
            1 + Math.floor(Math.random() * 20),
            `u${this.writes}`,
          ]);
        this.writes++;
      } catch {
        // A statement that met the table mid-DDL: try another.
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

describe.each(['avro', 'protobuf'] as const)('schema evolution while streaming in registry mode (%s)', (format) => {
  test(
    'ADD and DROP COLUMN under a writer register new subject versions, every record decodes with its own version, an incompatible change under BACKWARD stops the pipeline naming subject, rule and column',
    { timeout: 900_000 },
    async (context) => {
      if (!readers) return context.skip('mvn not found: cannot fetch Avro / protobuf-java from Maven Central');
      await using workspace = await e2eWorkspace(postgres, 'ns-registry-evo-');
      const { url, db, dir } = workspace;
      const name = `evo_${format}`;
      const topic = uniqueName(`ns-sr-evo-${format}`);
      const subject = `${topic}-value`;
      let writer: EvoWriter | undefined;
      let server: NanosyncServer | undefined;
      try {
        await db.query('CREATE TABLE evo (id int PRIMARY KEY, qty int, note text)');
        await db.query(`INSERT INTO evo SELECT g, g, 'row ' || g FROM generate_series(1, 20) g`);
        const { args } = await writePipelines(dir, {
          postgresUrl: url,
          brokers: kafka.brokers,
          pipelines: [
            {
              name,
              tables: ['public.evo'],
              sink: {
                topic,
                message_format: format,
                schema_registry_url: registry.url,
                num_partitions: 1,
              },
            },
          ],
        });
        server = await NanosyncServer.start(args);
        const running = server;
        const records = async () => (await consumeAll(kafka.brokers, topic).catch(() => [])).length;
        await eventually(
          async () => ((await records()) >= 20 ? true : undefined),
          'the snapshot in Kafka',
          240_000,
          () => running.process.output.slice(-3000),
        );
        expect(await client.versions(subject)).toEqual([1]);
        // Avro's BACKWARD accepts both changes; Apicurio's Protobuf check refuses a removed
        // field under BACKWARD (FULL accepts additions and removals).
        await client.setCompatibility(subject, format === 'avro' ? 'BACKWARD' : 'FULL');

        writer = new EvoWriter(db);
        const pause = () => new Promise((r) => setTimeout(r, 700));
        await pause();
        await db.query('ALTER TABLE evo ADD COLUMN extra text');
        await db.query(`UPDATE evo SET extra = 'added' WHERE id = 1`);
        await pause();
        await db.query('ALTER TABLE evo DROP COLUMN qty');
        await pause();
        await writer.stop();
        writer = undefined;
        // The marker is the last change: the first record at or past this LSN is it.
        const before = (await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
        const [hi, lo] = before.split('/') as [string, string];
        const markerFrom = `${hi.padStart(8, '0')}${lo.padStart(8, '0')}`.toUpperCase();
        await db.query(`INSERT INTO evo (id, note, extra) VALUES (9999, 'marker', 'last')`);
        const total = (await db.query<{ n: string }>('SELECT count(*) AS n FROM evo')).rows[0]!.n;
        expect(Number(total)).toBeGreaterThan(21);
        let stored: Awaited<ReturnType<typeof consumeAll>> = [];
        await eventually(
          async () => {
            stored = await consumeAll(kafka.brokers, topic);
            return stored.some((r) => (r.headers['ns-position'] ?? '') >= markerFrom) ? true : undefined;
          },
          'the marker row after the DDL in Kafka',
          240_000,
          () => running.process.output.slice(-3000),
        );
        // v1 (id, qty, note), v2 (+ extra), v3 (- qty); the key subject did not change.
        expect(await client.versions(subject)).toEqual([1, 2, 3]);
        expect(await client.versions(`${topic}-key`)).toEqual([1]);

        // Every record, the oldest included, decodes in Java with the version its id names.
        const decoded = await javaConsume({
          readers,
          kafkaLib,
          brokers: kafka.brokers,
          registryUrl: registry.url,
          topics: [topic],
          expected: stored.length,
        });
        expect(decoded).toHaveLength(stored.length);
        const schemaIds: number[] = [];
        for (const r of decoded) if (!schemaIds.includes(r.valueId!)) schemaIds.push(r.valueId!);
        expect(schemaIds).toHaveLength(3); // in offset order: v1, then v2, then v3
        const shape = (r: JavaRecord) =>
          r.fields
            .map((f) => f.field)
            .filter((f) => ['qty', 'extra'].includes(f))
            .join(',');
        const shapes = decoded.map((r) => `${schemaIds.indexOf(r.valueId!) + 1}:${shape(r)}`);
        expect(new Set(shapes)).toEqual(new Set(['1:qty', '2:qty,extra', '3:extra']));
        // Versions only move forward through the topic.
        const order = decoded.map((r) => schemaIds.indexOf(r.valueId!));
        expect(order).toEqual([...order].sort((a, b) => a - b));
        const first = fieldsOf(decoded[0]!);
        expect(decoded[0]!.op).toBe('READ');
        expect(first.get('qty')).toBe(first.get('id'));
        const marker = fieldsOf(decoded.find((r) => fieldsOf(r).get('id') === '9999')!);
        expect(marker.get('note')).toBe('"marker"');
        expect(marker.get('extra')).toBe('"last"');
        expect(decoded.some((r) => r.op === 'UPDATE' && fieldsOf(r).get('extra') === '"added"')).toBe(true);

        // An incompatible change under BACKWARD: nothing of the new shape is written, the pipeline stops.
        await client.setCompatibility(subject, 'BACKWARD');
        const column = format === 'avro' ? '"note" (type changed)' : '"extra" (dropped)';
        if (format === 'avro') await db.query('ALTER TABLE evo ALTER COLUMN note TYPE int USING length(note)');
        else await db.query('ALTER TABLE evo DROP COLUMN extra');
        await db.query(`INSERT INTO evo (id) VALUES (10000)`);
        // `nanosync run` ends once its only pipeline is ERRORED, naming the cause.
        const exit = await running.process.exited;
        expect(exit.code).not.toBe(0);
        const line = running.process.output.split('\n').find((l) => l.includes(`pipeline ${name} is ERRORED`));
        expect(line).toBeDefined();
        expect(line).toContain('NS_K6008');
        expect(line).toContain(`subject "${subject}"`);
        expect(line).toContain('compatibility BACKWARD');
        expect(line).toContain(`column ${column}`);
        expect(await client.versions(subject)).toEqual([1, 2, 3]);
        const after = await consumeAll(kafka.brokers, topic);
        expect(after.length).toBe(stored.length);
      } finally {
        await writer?.stop().catch(() => undefined);
        await server?.kill('SIGTERM').catch(() => undefined);
      }
    },
  );
});
