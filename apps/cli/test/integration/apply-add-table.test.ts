/**
 * Issue 13: a table added to a running `cdc_backfill` pipeline with `nanosync apply` is
 * snapshotted — that table only, while the stream goes on — and then streamed, with nothing
 * lost and no row's history going backwards (the test kit's strict oracle). Real PostgreSQL,
 * a real `nanosync serve` child, the file sink.
 */
import { join } from 'node:path';
import {
  assertOracle,
  compareAsStrings,
  type ExpectedChange,
  eventually,
  type OracleRecord,
} from '@nanosync/connector-testkit';
import { type FileSinkRecord, readJsonLines } from '@nanosync/sink-file';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCli } from './cli-process.js';
import { ObservabilityContext, uniqueName } from './observability-fixtures.js';

const FIRST = 'public.first';
const ADDED = 'public.added';
const FIRST_ROWS = 2_000;
const ADDED_ROWS = 20_000;
/** Ids the writer inserts into the first table start here. */
const WRITER_IDS = 1_000_000;

/**
 * Small transactions until stopped: an insert and an update in the first table every time,
 * and — once `touchAdded` is set — updates and deletes of rows of the added table all over
 * it (rows its snapshot is reading). Every change is recorded for the oracle's "nothing
 * lost" check.
 */
class Writer {
  readonly changes: ExpectedChange[] = [];
  touchAdded = false;
  committed = 0;
  private stopping = false;
  private running: Promise<void> | undefined;
  private n = 0;

  constructor(private readonly url: string) {}

  start(): void {
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  async more(n: number): Promise<void> {
    const target = this.committed + n;
    await eventually(async () => (this.committed >= target ? true : undefined), `${n} writer transactions`, 60_000);
  }

  private async loop(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    client.on('error', () => {});
    await client.connect();
    try {
      while (!this.stopping) {
        const n = this.n++;
        const id = WRITER_IDS + n;
        const changes: ExpectedChange[] = [];
        await client.query('BEGIN');
        await client.query(`INSERT INTO ${FIRST} VALUES ($1, 'new')`, [id]);
        changes.push({ table: FIRST, op: 'insert', key: { id: String(id) }, after: { note: 'new' } });
        const old = 1 + ((n * 7919) % FIRST_ROWS);
        const firstNote = `w${n}`;
        await client.query(`UPDATE ${FIRST} SET note = $2 WHERE id = $1`, [old, firstNote]);
        changes.push({ table: FIRST, op: 'update', key: { id: String(old) }, after: { note: firstNote } });
        if (this.touchAdded) {
          for (const step of [0, 1, 2]) {
            const target = 1 + ((n * 104_729 + step * 6_733) % ADDED_ROWS);
            const note = `a${n}.${step}`;
            const updated = await client.query(`UPDATE ${ADDED} SET note = $2 WHERE id = $1`, [target, note]);
            if (updated.rowCount === 1)
              changes.push({ table: ADDED, op: 'update', key: { id: String(target) }, after: { note } });
          }
          if (n % 4 === 0) {
            const target = 1 + ((n * 15_485_863) % ADDED_ROWS);
            const deleted = await client.query(`DELETE FROM ${ADDED} WHERE id = $1`, [target]);
            if (deleted.rowCount === 1) changes.push({ table: ADDED, op: 'delete', key: { id: String(target) } });
          }
        }
        await client.query('COMMIT');
        this.changes.push(...changes);
        this.committed++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    } finally {
      await client.end().catch(() => {});
    }
  }
}

describe('a table added to a running pipeline with apply (real PostgreSQL, real serve)', () => {
  it('is snapshotted alone while the stream goes on, then streamed; nothing lost, strict history holds', async () => {
    await using ctx = await ObservabilityContext.create();
    await ctx.createTable('first', FIRST_ROWS);
    await ctx.createTable('added', ADDED_ROWS);
    await ctx.db.query('ANALYZE public.first, public.added');
    const name = uniqueName('add_table');
    let config = await ctx.writeConfig([{ name, tables: [FIRST] }], 500);
    const { url } = await ctx.serve();
    const cli = (...args: string[]) => runCli([...args, '--server', url, '--state', ctx.stateFile]);
    const created = await cli('apply', '--file', config);
    expect(created.code, created.stderr).toBe(0);
    await ctx.waitForStatus(name, 'first snapshot done', (p) => p.state === 'LIVE_CDC' && p.snapshot?.done === true);

    await using writer = {
      w: new Writer(ctx.databaseUrl),
      async [Symbol.asyncDispose]() {
        await this.w.stop();
      },
    };
    writer.w.start();
    await writer.w.more(20);

    config = await ctx.writeConfig([{ name, tables: [FIRST, ADDED] }], 500);
    const updated = await cli('apply', '--file', config);
    expect(updated.code, updated.stderr).toBe(0);
    expect(updated.stdout.trim()).toBe(`${name} updated`);
    // Once the added table is planned the source has it in its publication: from here on,
    // its changes reach the stream, and the writer changes rows the snapshot is reading.
    const planned = await ctx.waitForStatus(
      name,
      'the added table planned',
      (p) => (p.tables.find((t) => t.table === ADDED)?.partitionsTotal ?? 0) > 0,
    );
    writer.w.touchAdded = true;
    const first = planned.tables.find((t) => t.table === FIRST)!;
    // Only the added table is read: the first table's plan is the finished one.
    expect(first.partitionsDone).toBe(first.partitionsTotal);
    expect(planned.tables.find((t) => t.table === ADDED)!.partitionsTotal).toBeGreaterThan(10);

    const done = await ctx.waitForStatus(
      name,
      'the added table snapshotted',
      (p) => p.state === 'LIVE_CDC' && p.snapshot?.done === true,
      180_000,
    );
    const added = done.tables.find((t) => t.table === ADDED)!;
    expect(added.partitionsDone).toBe(added.partitionsTotal);
    // Streamed afterwards too: changes to the added table made after its snapshot ended.
    await writer.w.more(30);
    await writer.w.stop();
    await ctx.db.query(`INSERT INTO ${FIRST} VALUES (999999999, 'marker')`);
    await ctx.db.query(`INSERT INTO ${ADDED} VALUES (999999999, 'marker')`);
    const file = (table: string) => join(ctx.outDir, `${table}.jsonl`);
    const read = async (table: string) =>
      (await readJsonLines(file(table)).catch(() => [] as FileSinkRecord[])) as FileSinkRecord[];
    for (const table of [FIRST, ADDED]) {
      await eventually(
        async () => ((await read(table)).some((r) => r.key.id === '999999999') ? true : undefined),
        `the marker row of ${table} in the sink`,
        120_000,
      );
    }

    const firstLines = await read(FIRST);
    const addedLines = await read(ADDED);
    // The first table's rows were read once, by its own snapshot: adding a table re-emitted none.
    expect(firstLines.filter((l) => l.op === 'read')).toHaveLength(FIRST_ROWS);
    // The added table's rows were read (a row that an update moved to a page not read yet
    // may be read twice, each time as it then was).
    const addedReads = addedLines.filter((l) => l.op === 'read');
    const keysRead = new Set(addedReads.map((l) => l.key.id));
    expect(keysRead.size).toBeGreaterThan(ADDED_ROWS / 2);
    expect(keysRead.size).toBeLessThanOrEqual(ADDED_ROWS);
    // Concurrent with streaming: changes of the first table were delivered between the
    // added table's first and last snapshot chunk, at positions in between.
    const readPositions = addedReads.map((l) => l.position).sort(compareAsStrings);
    const from = readPositions[0]!;
    const to = readPositions.at(-1)!;
    const streamedMeanwhile = firstLines.filter(
      (l) => l.op !== 'read' && compareAsStrings(l.position, from) > 0 && compareAsStrings(l.position, to) < 0,
    );
    expect(streamedMeanwhile.length).toBeGreaterThan(0);
    // And the added table's own changes are streamed (as updates and deletes, not only read back).
    expect(addedLines.some((l) => l.op === 'update' && compareAsStrings(l.position, to) > 0)).toBe(true);
    expect(writer.w.changes.some((c) => c.table === ADDED)).toBe(true);

    const expected: Record<string, Record<string, unknown>[]> = {};
    for (const table of [FIRST, ADDED])
      expected[table] = (await ctx.db.query(`SELECT id, note FROM ${table} ORDER BY id`)).rows;
    assertOracle({
      records: [...firstLines, ...addedLines] as unknown as OracleRecord[],
      expected: expected as Record<string, OracleRecord['key'][]>,
      keyColumns: ['id'],
      changes: writer.w.changes,
      strict: true,
    });
  }, 400_000);
});
