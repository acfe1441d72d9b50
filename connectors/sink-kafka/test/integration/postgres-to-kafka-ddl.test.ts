import { startKafka, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { codecFor, MESSAGE_FORMATS } from '../../src/formats/index.js';
import {
  type E2ePipeline,
  type E2eWorkspace,
  e2eWorkspace,
  eventually,
  NanosyncProcess,
  STREAM_ENCODED_IN_WORKER,
  writePipelines,
} from './e2e-helpers.js';
import type { DecodedChange } from '../../src/formats/index.js';
import { type ConsumedRecord, consumeAll, reduceByKey, uniqueName } from './helpers.js';

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

/**
 * A writer that keeps inserting, updating and deleting rows while DDL runs beside it. It
 * addresses the key column by its current name (the test renames it) and simply tries
 * again when a statement meets a change of shape halfway.
 */
class Writer {
  keyColumn = 'id';
  private running = true;
  private readonly done: Promise<void>;
  private next = 1000;
  writes = 0;

  constructor(private readonly db: pg.Client) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const roll = Math.random();
      const k = `"${this.keyColumn}"`;
      try {
        if (roll < 0.4)
          await this.db.query(`INSERT INTO ddl_t (${k}, note) VALUES ($1, $2)`, [this.next++, `w${this.writes}`]);
        else if (roll < 0.8)
          await this.db.query(`UPDATE ddl_t SET note = $2 WHERE ${k} = $1`, [
            1 + Math.floor(Math.random() * 60),
            `u${this.writes}`,
          ]);
        else await this.db.query(`DELETE FROM ddl_t WHERE ${k} = $1`, [1 + Math.floor(Math.random() * 60)]);
        this.writes++;
      } catch {
        // A statement that met the table mid-DDL (renamed column, lock timeout): try another.
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

/**
 * Every format inline, and json and avro with the stream decoded and encoded in 2 worker
 * threads: the relations change under the writer (Relation messages mid-stream), and a batch
 * of a table whose shape the workers' encoders were not set up for is decoded on the main
 * thread, saying why.
 */
const RUNS = MESSAGE_FORMATS.flatMap((format) => [
  { format, workers: 0 },
  ...(format === 'json' || format === 'avro' ? [{ format, workers: 2 }] : []),
]);

describe.each(RUNS)(
  'postgres → kafka ($format, workers: $workers): DDL on the key column and beside it, under writes',
  ({ format, workers }) => {
    const decode = (value: Buffer) => codecFor(format).decode(value);
    test(
      'the topic reduced by key equals the table; every message decodes with its own schema; new shapes flow',
      { timeout: 400_000 },
      async () => {
        await using workspace = await e2eWorkspace(postgres, 'ns-kafka-ddl-');
        const { url, db, dir } = workspace;
        const pipeline = uniqueName(`ddl_${format}`).replace(/-/g, '_');
        const topic = uniqueName(`ns-ddl-${format}`);
        let writer: Writer | undefined;
        let nanosync: NanosyncProcess | undefined;
        try {
          await db.query(`CREATE TYPE mood AS ENUM ('sad', 'ok')`);
          await db.query('CREATE TABLE ddl_t (id int PRIMARY KEY, note text, drop_me text, mood mood)');
          await db.query(`INSERT INTO ddl_t SELECT g, 'row ' || g, 'x', 'ok' FROM generate_series(1, 70) g`);
          const { args } = await writePipelines(dir, {
            postgresUrl: url,
            brokers: kafka.brokers,
            pipelines: [
              {
                name: pipeline,
                tables: ['public.ddl_t'],
                sink: { topic, num_partitions: 1, message_format: format },
                workers,
              },
            ],
          });
          nanosync = new NanosyncProcess(args);
          const running = nanosync;
          await eventually(
            async () => ((await consumeAll(kafka.brokers, topic).catch(() => [])).length >= 70 ? true : undefined),
            'the snapshot in Kafka',
            180_000,
            () => running.output.slice(-3000),
          );

          writer = new Writer(db);
          const pause = () => new Promise((r) => setTimeout(r, 400));
          await pause();
          if (workers > 0)
            await eventually(
              async () => (running.output.includes(STREAM_ENCODED_IN_WORKER) ? true : undefined),
              'stream batches the worker threads encoded, before the DDL',
              120_000,
              () => running.output.slice(-3000),
            );
          // A delete committed just before the key column changes type, streamed after it.
          await db.query('DELETE FROM ddl_t WHERE id = 62');
          await db.query('ALTER TABLE ddl_t ALTER COLUMN id TYPE bigint');
          await pause();
          await db.query('ALTER TABLE ddl_t ADD COLUMN with_default int NOT NULL DEFAULT 5');
          await db.query('ALTER TABLE ddl_t ADD COLUMN without_default text');
          await pause();
          await db.query('ALTER TABLE ddl_t DROP COLUMN drop_me');
          await pause();
          await db.query('ALTER TABLE ddl_t ALTER COLUMN with_default TYPE bigint');
          await db.query(`ALTER TYPE mood ADD VALUE 'happy'`);
          await db.query(`UPDATE ddl_t SET mood = 'happy', without_default = 'set' WHERE id = 63`);
          await db.query('DELETE FROM ddl_t WHERE id = 64');
          await db.query('ALTER TABLE ddl_t RENAME COLUMN id TO key_id');
          writer.keyColumn = 'key_id';
          await pause();
          await writer.stop();
          writer = undefined;
          // The table as the truncate will find it: the topic up to the truncate must reduce to this.
          const beforeTruncate = await db.query<{ key_id: string; note: string }>(
            'SELECT key_id::text AS key_id, note FROM ddl_t',
          );
          await db.query('TRUNCATE ddl_t');
          await db.query(
            `INSERT INTO ddl_t (key_id, note, mood) VALUES (5000, 'after truncate', 'happy'), (5001, 'after truncate', 'sad')`,
          );
          await db.query(`UPDATE ddl_t SET note = 'last' WHERE key_id = 5001`);

          const { rows } = await db.query<{ key_id: string; note: string }>(
            'SELECT key_id::text AS key_id, note FROM ddl_t ORDER BY key_id',
          );
          const expected = new Map(rows.map((r) => [`[${r.key_id}]`, r.note]));
          let records: ConsumedRecord[] = [];
          let problems: string[] = [];
          await eventually(
            async () => {
              records = await consumeAll(kafka.brokers, topic);
              const live = reduceByKey(records, decode);
              problems = [];
              for (const [key, note] of expected)
                if (live.get(key)?.note !== note)
                  problems.push(`key ${key}: table ${note}, topic ${JSON.stringify(live.get(key))}`);
              for (const key of live.keys())
                if (!expected.has(key)) problems.push(`key ${key}: in the topic, not in the table`);
              return problems.length === 0 ? true : undefined;
            },
            'the topic to converge on the table',
            180_000,
            () => `${problems.slice(0, 10).join('\n')}\n--- nanosync ---\n${running.output.slice(-3000)}`,
          );

          if (workers > 0)
            expect(running.output, running.output.slice(-3000)).toContain(
              "changed shape since the stream's worker threads started",
            );
          // Every message decodes with the schema it carries, and the shapes follow the DDL in order.
          const changes = records
            .filter((r) => r.value !== null)
            .map((r) => ({ key: r.key, change: decode(r.value!) }));
          const ops = changes.map((c) => c.change.op);
          expect(ops).toContain('truncate');
          const truncateAt = ops.indexOf('truncate');
          expect(changes[truncateAt]!.key).toBeNull();
          // Before the truncate, across the type change and the rename: one live key per row, none stale.
          const untilTruncate = reduceByKey(
            records.slice(
              0,
              records.findIndex((r) => r.value !== null && r.headers['ns-op'] === 'truncate'),
            ),
            decode,
          );
          const stateBefore = new Map(beforeTruncate.rows.map((r) => [`[${r.key_id}]`, r.note]));
          expect(new Map([...untilTruncate].map(([k, v]) => [k, v.note]))).toEqual(stateBefore);
          expect(stateBefore.size).toBeGreaterThan(20);
          const afterTruncate = changes.slice(truncateAt + 1).filter((c) => c.change.after);
          expect(afterTruncate.length).toBeGreaterThan(0);
          for (const { change } of afterTruncate) {
            expect(Object.keys(change.after!)).toContain('key_id');
            expect(Object.keys(change.after!)).not.toContain('drop_me');
            expect(String(change.after!.with_default)).toBe('5');
          }
          const happy = changes.find(
            (c) => c.change.after?.mood === 'happy' && c.change.after?.without_default === 'set',
          );
          expect(happy?.key).toBe('[63]');
          const snapshotRow = changes.find((c) => c.change.op === 'read');
          expect(Object.keys(snapshotRow!.change.after!)).toContain('drop_me');
          // The delete of 62 (before the type change) and of 64 (before the rename) are keyed as the rows were written.
          expect(changes.some((c) => c.change.op === 'delete' && c.key === '[62]')).toBe(true);
          expect(changes.some((c) => c.change.op === 'delete' && c.key === '[64]')).toBe(true);
          // One key per row across the type change and the rename: no key was ever spelled another way.
          for (const { key } of changes) if (key !== null) expect(key).toMatch(/^\[\d+\]$/);
        } finally {
          await writer?.stop().catch(() => undefined);
          await nanosync?.kill('SIGTERM').catch(() => undefined);
        }
      },
    );
  },
);

describe.each(['json', 'avro', 'protobuf'] as const)(
  'postgres → kafka (%s): the primary key redefined under writes',
  (format) => {
    const decode = (value: Buffer) => codecFor(format).decode(value);
    test(
      'a truncate, then the rows under the new key: the topic reduced by key equals the table, no stale or resurrected key',
      { timeout: 400_000 },
      async () => {
        await using workspace = await e2eWorkspace(postgres, 'ns-kafka-pk-');
        const { url, db, dir } = workspace;
        const pipeline = uniqueName(`pk_${format}`).replace(/-/g, '_');
        const topic = uniqueName(`ns-pk-${format}`);
        await db.query('CREATE TABLE pk_t (id int PRIMARY KEY, code text NOT NULL UNIQUE, note text)');
        await db.query(`INSERT INTO pk_t SELECT g, 'c' || g, 'row ' || g FROM generate_series(1, 70) g`);
        let nanosync: NanosyncProcess | undefined;
        let running = true;
        // Rows the writer's statements changed, and what they failed with. A writer that fails
        // quietly tests nothing: while its INSERT failed (one parameter used as int and as
        // text), its deletes emptied the table within seconds, and a pipeline that started
        // late found too few rows for the test to go on.
        let writes = 0;
        let inserts = 0;
        const errors: string[] = [];
        const writer = (async () => {
          const w = new pg.Client({ connectionString: url });
          await w.connect();
          try {
            for (let next = 1000; running; next++) {
              const id = 1 + Math.floor(Math.random() * 80);
              try {
                const roll = Math.random();
                if (roll < 0.3) {
                  await w.query(`INSERT INTO pk_t VALUES ($1, $2, 'w')`, [next, `c${next}`]);
                  inserts++;
                  writes++;
                } else {
                  const { rowCount } =
                    roll < 0.75
                      ? await w.query(`UPDATE pk_t SET note = $2 WHERE id = $1`, [id, `u${writes}`])
                      : await w.query('DELETE FROM pk_t WHERE id = $1', [id]);
                  writes += rowCount ?? 0;
                }
              } catch (error) {
                errors.push((error as Error).message);
              }
              await new Promise((r) => setTimeout(r, 5));
            }
          } finally {
            await w.end();
          }
        })();
        try {
          const { args } = await writePipelines(dir, {
            postgresUrl: url,
            brokers: kafka.brokers,
            pipelines: [
              {
                name: pipeline,
                tables: ['public.pk_t'],
                sink: { topic, num_partitions: 1, message_format: format },
              },
            ],
          });
          nanosync = new NanosyncProcess(args);
          const proc = nanosync;
          // The initial snapshot merged into the stream before the key changes (a redefinition
          // while it still reads the table is a known gap, see the source's README).
          await proc.waitFor(/INF snapshot complete /, 180_000);
          const pause = () => new Promise((r) => setTimeout(r, 400));
          await pause();
          // Redefined in one transaction (between the two statements the table has no
          // identity, and PostgreSQL would refuse the writer's UPDATE and DELETE).
          await db.query('BEGIN');
          await db.query('ALTER TABLE pk_t DROP CONSTRAINT pk_t_pkey');
          await db.query('ALTER TABLE pk_t ADD PRIMARY KEY (code)');
          await db.query('COMMIT');
          const writesBeforeRedefinition = writes;
          await pause();
          await pause();
          running = false;
          await writer;
          await db.query(`INSERT INTO pk_t VALUES (99999, 'marker', 'last')`);

          const { rows } = await db.query<{ code: string; note: string }>('SELECT code, note FROM pk_t');
          const expected = new Map(rows.map((r) => [JSON.stringify([r.code]), r.note]));
          let records: ConsumedRecord[] = [];
          let problems: string[] = [];
          await eventually(
            async () => {
              records = await consumeAll(kafka.brokers, topic);
              const live = reduceByKey(records, decode);
              problems = [];
              for (const [key, note] of expected)
                if (live.get(key)?.note !== note)
                  problems.push(`key ${key}: table ${note}, topic ${JSON.stringify(live.get(key))}`);
              for (const key of live.keys())
                if (!expected.has(key)) problems.push(`key ${key}: in the topic, not in the table`);
              return problems.length === 0 ? true : undefined;
            },
            'the topic to converge on the table',
            180_000,
            () => `${problems.slice(0, 10).join('\n')}\n--- nanosync ---\n${proc.output.slice(-3000)}`,
          );
          expect(errors, "the writer's failed statements").toEqual([]);
          expect(writes).toBeGreaterThan(50);
          expect(inserts).toBeGreaterThan(10);
          expect(writes, 'rows changed under the new key').toBeGreaterThan(writesBeforeRedefinition);
          const changes = records
            .filter((r) => r.value !== null)
            .map((r) => ({ key: r.key, change: decode(r.value!) }));
          const truncateAt = changes.findIndex((c) => c.change.op === 'truncate');
          expect(truncateAt).toBeGreaterThan(0);
          expect(changes[truncateAt]!.key).toBeNull();
          // The old key (id) up to the redefinition, the new one (code) from there on; the
          // changes between the redefinition and the truncate carry the new key too (the
          // truncate removes them, the rows read after it bring them back).
          const firstNewKey = changes.findIndex((c) => c.key !== null && /^\["/.test(c.key));
          expect(firstNewKey).toBeGreaterThan(0);
          expect(firstNewKey).toBeLessThanOrEqual(truncateAt + 1);
          for (const { key } of changes.slice(0, firstNewKey)) if (key !== null) expect(key).toMatch(/^\[\d+\]$/);
          for (const { key } of changes.slice(firstNewKey)) if (key !== null) expect(key).toMatch(/^\["[^"]+"\]$/);
          expect(changes.slice(truncateAt + 1).every((c) => c.key !== null)).toBe(true);
          // Rows no change touched after the truncate came back as reads.
          expect(changes.slice(truncateAt + 1).some((c) => c.change.op === 'read')).toBe(true);
        } finally {
          running = false;
          await writer.catch(() => undefined);
          await nanosync?.kill('SIGTERM').catch(() => undefined);
        }
      },
    );
  },
);

/** A record of the topic: its key and its decoded value (undefined for a tombstone). */
type Change = { key: string | null; change: DecodedChange | undefined };

/**
 * What the tests of a key redefined while the pipeline is down share: table `name` with
 * `rows` rows, keyed by `id` and with a unique `code`, one pipeline of it into a topic of one
 * partition (json), the topic as changes, and the redefinition (in one transaction, `code`
 * the new key).
 */
async function keyedTable(workspace: E2eWorkspace, name: string, rows: number, snapshot?: E2ePipeline['snapshot']) {
  const { url, db, dir } = workspace;
  const pipeline = uniqueName(name).replace(/-/g, '_');
  const topic = uniqueName(`ns-${name.replace(/_/g, '-')}`);
  await db.query(`CREATE TABLE ${name} (id int PRIMARY KEY, code text NOT NULL UNIQUE, note text)`);
  await db.query(`INSERT INTO ${name} SELECT g, 'c' || g, 'row ' || g FROM generate_series(1, $1) g`, [rows]);
  const { args } = await writePipelines(dir, {
    postgresUrl: url,
    brokers: kafka.brokers,
    pipelines: [
      {
        name: pipeline,
        tables: [`public.${name}`],
        ...(snapshot ? { snapshot } : {}),
        sink: { topic, num_partitions: 1 },
      },
    ],
  });
  const decode = (value: Buffer) => codecFor('json').decode(value);
  return {
    args,
    decode,
    records: () => consumeAll(kafka.brokers, topic),
    async changes(): Promise<Change[]> {
      return (await consumeAll(kafka.brokers, topic)).map((r) => ({
        key: r.key,
        change: r.value === null ? undefined : decode(r.value),
      }));
    },
    truncates: (all: Change[]) => all.flatMap((c, i) => (c.change?.op === 'truncate' ? [i] : [])),
    async redefineKey(): Promise<void> {
      await db.query('BEGIN');
      await db.query(`ALTER TABLE ${name} DROP CONSTRAINT ${name}_pkey`);
      await db.query(`ALTER TABLE ${name} ADD PRIMARY KEY (code)`);
      await db.query('COMMIT');
    },
    /** The table's notes by its new key, as the topic's key (`["c1"]`). */
    async tableByCode(): Promise<Map<string, string>> {
      const { rows } = await db.query<{ code: string; note: string }>(`SELECT code, note FROM ${name}`);
      return new Map(rows.map((r) => [JSON.stringify([r.code]), r.note]));
    },
  };
}

/**
 * A key redefined while no nanosync runs is found by what the pipeline remembers in its state
 * store (the key columns it last streamed the table under), not guessed from the catalog: a
 * restart with the key unchanged sends nothing again, one after a redefinition sends a
 * truncate and the rows under the new key.
 */
test(
  'postgres → kafka: the primary key redefined while the pipeline is down (killed): a truncate and the rows under the new key, and nothing again on a restart without one',
  {
    timeout: 400_000,
  },
  async () => {
    await using workspace = await e2eWorkspace(postgres, 'ns-kafka-pk-down-');
    const { db } = workspace;
    const t = await keyedTable(workspace, 'pk_down', 50);
    /**
     * Start nanosync, make one change once it streams, wait until the topic passes `done`
     * (by default: holds the change), kill the process; its output.
     */
    const runOnce = async (ready: RegExp, note: string, done?: (all: Change[]) => boolean) => {
      await using proc = new NanosyncProcess(t.args);
      await proc.waitFor(ready, 180_000);
      await db.query('UPDATE pk_down SET note = $1 WHERE id = 10', [note]);
      await eventually(
        async () => {
          const all = await t.changes();
          return (done ?? ((c) => c.some((x) => x.change?.after?.note === note)))(all) ? true : undefined;
        },
        `the topic after the update "${note}"`,
        120_000,
        () => proc.output.slice(-3000),
      );
      await proc.kill('SIGKILL');
      return proc.output;
    };

    await runOnce(/INF snapshot complete /, 'first');
    const restarted = await runOnce(/INF cdc streaming /, 'second');
    expect(t.truncates(await t.changes())).toEqual([]);
    expect(restarted).not.toContain('after a truncate');
    expect(restarted).not.toContain('whose key changed delivered again');

    await t.redefineKey();
    const third = await runOnce(/INF cdc streaming /, 'third', (all) => {
      const at = t.truncates(all)[0];
      return at !== undefined && all.slice(at + 1).filter((c) => c.change?.op === 'read').length >= 50;
    });
    // (Said as "changed since the last stream", or as a change seen in the stream when the restart
    // replayed a change from before the redefinition.)
    expect(third).toMatch(/the key columns of a captured table changed/);

    const all = await t.changes();
    expect(t.truncates(all)).toHaveLength(1);
    const after = all.slice(t.truncates(all)[0]! + 1);
    expect(after.every((c) => c.key !== null && /^\["c\d+"\]$/.test(c.key))).toBe(true);
    const latest = new Map(after.map((c) => [c.key!, c.change?.after?.note]));
    expect(latest).toEqual(await t.tableByCode());
  },
);

/**
 * The same while the initial snapshot is under way: the pipeline remembers the key the
 * snapshot planned the table under before it reads a row, so the first stream after the
 * restart finds the redefinition though no stream had seen the table yet. The rows the killed
 * process wrote carry the old key, those of the restart the new one; the truncate ends the old.
 */
test(
  'postgres → kafka: the primary key redefined while the pipeline is down in the middle of its initial snapshot (killed): the topic, read by key with truncates applied, ends with the table under the new key',
  {
    timeout: 400_000,
  },
  async () => {
    await using workspace = await e2eWorkspace(postgres, 'ns-kafka-pk-snap-');
    const { db } = workspace;
    const t = await keyedTable(workspace, 'pk_snap', 2_000, {
      concurrency: 1,
      target_rows_per_partition: 500,
      chunk_rows: 100,
    });
    {
      // Killed by its test-only hook once 300 snapshot rows are in the topic, before their
      // chunk is recorded: the rest of the snapshot is read by the next process.
      await using proc = new NanosyncProcess(t.args, {
        env: { NODE_ENV: 'test', NANOSYNC_TEST_FAULT: 'kill-after-reads:300' },
      });
      const exit = await proc.exited;
      expect(exit.signal, proc.output.slice(-3000)).toBe('SIGKILL');
      expect(proc.output).toContain('nanosync test fault: SIGKILL');
      expect(proc.output).not.toMatch(/INF snapshot complete /);
    }
    const before = await t.records();
    expect(before.length).toBeGreaterThanOrEqual(300);
    expect(before.every((r) => r.key !== null && /^\[\d+\]$/.test(r.key))).toBe(true);

    await t.redefineKey();
    await using proc = new NanosyncProcess(t.args);
    await proc.waitFor(/INF snapshot complete /, 180_000);
    // The stream first sees the table with this change.
    await db.query(`UPDATE pk_snap SET note = 'after the restart' WHERE id = 10`);
    const expected = await t.tableByCode();
    let live = new Map<string, string>();
    await eventually(
      async () => {
        live = reduceByKey(await t.records(), t.decode, (after) => String(after.note));
        return live.size === expected.size && [...expected].every(([k, v]) => live.get(k) === v) ? true : undefined;
      },
      'the topic read by key to hold the table under the new key only',
      120_000,
      () =>
        `${live.size} keys, ${[...live.keys()].filter((k) => !expected.has(k)).length} not of the table\n${proc.output.slice(-3000)}`,
    );
    expect(live).toEqual(expected);
    expect(proc.output).toMatch(/the key columns of a captured table changed since the last stream/);
  },
);
