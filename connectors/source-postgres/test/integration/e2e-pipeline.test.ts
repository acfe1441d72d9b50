import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { comparePositions, decodePosition, parseLsn } from '../../src/position.js';
import {
  fileSize,
  latestState,
  PipelineProcess,
  partitions,
  pipelineRow,
  readSinkFile,
  type SinkLine,
  sleep,
  startWriter,
  type WriterTxn,
  workDir,
} from './e2e/harness.js';
import { type PgFixture, pgFixture, uniqueName } from './fixture.js';

const TABLE = 'public.accounts';

async function prepare(rows: number): Promise<{ fx: PgFixture; pipeline: string }> {
  const fx = await pgFixture();
  await fx.admin.query('CREATE TABLE public.accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text)');
  await fx.admin.query(`INSERT INTO public.accounts SELECT g, g * 10, 'seed' FROM generate_series(1, $1) g`, [rows]);
  await fx.admin.query('ANALYZE public.accounts');
  await fx.grantRead([{ schema: 'public', name: 'accounts' }]);
  const pipeline = uniqueName('e2e');
  await fx.preparePublication(pipeline, [{ schema: 'public', name: 'accounts' }]);
  return { fx, pipeline };
}

function yaml(
  fx: PgFixture,
  pipeline: string,
  sinkFile: string,
  snapshot: { concurrency: number; rows: number },
): string {
  const dsn = `postgres://${fx.role}:${fx.rolePassword}@${fx.service.host}:${fx.service.port}/${fx.database}?sslmode=disable`;
  return `connections:
  - name: source-db
    type: postgres
    dsn: ${JSON.stringify(dsn)}
  - name: out
    type: file
    properties:
      file: ${JSON.stringify(sinkFile)}
pipelines:
  - name: ${pipeline}
    replication_type: cdc_backfill
    source:
      connection: source-db
      tables: [${TABLE}]
    sink:
      connection: out
    snapshot:
      concurrency: ${snapshot.concurrency}
      target_rows_per_partition: ${snapshot.rows}
`;
}

interface FlushSample {
  confirmedFlush: bigint;
  fileBytes: number;
}

/** Every 100 ms: the slot's confirmed_flush_lsn, then how much of the sink file exists. */
function sampleFlush(admin: pg.Client, slot: string, sinkFile: string) {
  const samples: FlushSample[] = [];
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      const { rows } = await admin.query(
        'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      if (rows[0]?.lsn) samples.push({ confirmedFlush: parseLsn(rows[0].lsn), fileBytes: await fileSize(sinkFile) });
      await sleep(100);
    }
  })();
  return {
    samples,
    async stop() {
      stopped = true;
      await done;
    },
  };
}

/**
 * The RELIABILITY.md oracle on the file sink:
 * 1. last value per key equals the table;
 * 2. per key, stream positions only go back when replaying positions already delivered;
 * 3. every writer transaction that began after the start position is present;
 * 4. the slot never confirmed a transaction the sink did not yet have.
 */
async function oracle(
  fx: PgFixture,
  lines: SinkLine[],
  opts: { startPosition: string; txns: WriterTxn[]; samples: FlushSample[] },
) {
  const table = await fx.admin.query('SELECT id, balance::text AS balance, note FROM public.accounts ORDER BY id');
  const state = latestState(lines);
  const fromSink = [...state.values()].sort((a, b) => (a.id as number) - (b.id as number));
  expect(fromSink.length).toBe(table.rows.length);
  expect(fromSink).toEqual(table.rows);

  const seen = new Map<string, { max: string; all: Set<string> }>();
  for (const line of lines) {
    if (line.op === 'read') continue;
    const key = JSON.stringify(line.key);
    const entry = seen.get(key);
    if (!entry) {
      seen.set(key, { max: line.position, all: new Set([line.position]) });
      continue;
    }
    if (comparePositions(line.position, entry.max) <= 0) {
      expect(entry.all.has(line.position), `key ${key} went back to unseen position ${line.position}`).toBe(true);
    } else entry.max = line.position;
    entry.all.add(line.position);
  }

  const startLsn = decodePosition(opts.startPosition).lsn;
  const inserted = new Set(lines.filter((l) => l.op === 'insert').map((l) => l.key.id));
  const updates = new Set(lines.filter((l) => l.op === 'update').map((l) => `${l.key.id}:${l.after?.note}`));
  const afterStart = opts.txns.filter((t) => t.lsnBefore > startLsn);
  expect(afterStart.length).toBeGreaterThan(10);
  for (const txn of afterStart) {
    expect(inserted.has(txn.insertedId), `insert ${txn.insertedId} missing`).toBe(true);
    if (txn.updated)
      expect(updates.has(`${txn.updated.id}:${txn.updated.note}`), `update ${txn.updated.note} missing`).toBe(true);
  }

  let confirmedChecks = 0;
  for (const sample of opts.samples) {
    const durable = new Set(lines.filter((l) => l.end <= sample.fileBytes && l.op === 'insert').map((l) => l.key.id));
    for (const txn of afterStart) {
      if (txn.lsnAfter <= sample.confirmedFlush) {
        confirmedChecks++;
        expect(durable.has(txn.insertedId), `slot confirmed past txn ${txn.insertedId} before the sink had it`).toBe(
          true,
        );
      }
    }
  }
  expect(confirmedChecks).toBeGreaterThan(0);
}

async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  proc?: PipelineProcess,
  timeoutMs = 120_000,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${proc ? `\n${proc.stderr}` : ''}`);
    await sleep(25);
  }
}

describe('end to end: Engine + PostgreSQL source + file sink, in a child process', () => {
  it('snapshot and stream with a concurrent writer pass the oracle', async () => {
    const { fx, pipeline } = await prepare(8000);
    await using _fx = fx;
    await using work = await workDir((sinkFile) => yaml(fx, pipeline, sinkFile, { concurrency: 2, rows: 1000 }));
    const writerClient = new pg.Client({ connectionString: fx.adminUrl });
    await writerClient.connect();
    const writer = startWriter(writerClient, { table: TABLE, existingRows: 8000, firstId: 1_000_000 });
    const proc = new PipelineProcess(work.configFile, work.stateFile, work.secretKey);
    const sampler = sampleFlush(fx.admin, `nanosync_slot_${pipeline}`, work.sinkFile);
    try {
      await proc.waitForLine((l) => l.startsWith(`STATE ${pipeline} LIVE_CDC`), 'LIVE_CDC', 120_000);
      await sleep(1500);
      await writer.stop();
      await writerClient.query(`INSERT INTO public.accounts VALUES (9999999, 0, 'marker')`);
      await waitFor(
        async () => (await readSinkFile(work.sinkFile)).some((l) => l.key.id === 9999999),
        'the marker row in the sink',
        proc,
      );
      await sleep(500);
      await sampler.stop();
      const row = pipelineRow(work.stateFile, pipeline)!;
      const lines = await readSinkFile(work.sinkFile);
      expect(lines.filter((l) => l.op === 'read').length).toBeGreaterThan(7000);
      expect(partitions(work.stateFile, pipeline).every((p) => p.status === 'done')).toBe(true);
      await oracle(fx, lines, { startPosition: row.start_position!, txns: writer.txns, samples: sampler.samples });
    } finally {
      await sampler.stop();
      await writer.stop().catch(() => {});
      await writerClient.end();
      await proc.stop();
    }
  });

  it('SIGKILL during the snapshot: the restart keeps completed partitions, re-reads only the rest, and the oracle passes', async () => {
    const { fx, pipeline } = await prepare(40_000);
    await using _fx = fx;
    await using work = await workDir((sinkFile) => yaml(fx, pipeline, sinkFile, { concurrency: 2, rows: 1000 }));
    const writerClient = new pg.Client({ connectionString: fx.adminUrl });
    await writerClient.connect();
    const writer = startWriter(writerClient, { table: TABLE, existingRows: 40_000, firstId: 1_000_000 });
    const sampler = sampleFlush(fx.admin, `nanosync_slot_${pipeline}`, work.sinkFile);
    let proc = new PipelineProcess(work.configFile, work.stateFile, work.secretKey);
    try {
      await waitFor(
        () => partitions(work.stateFile, pipeline).filter((p) => p.status === 'done').length >= 3,
        'three partitions done',
        proc,
      );
      proc.kill('SIGKILL');
      await proc.exited;
      const atKill = partitions(work.stateFile, pipeline);
      const doneAtKill = atKill.filter((p) => p.status === 'done');
      expect(doneAtKill.length).toBeLessThan(atKill.length);
      const bytesAtKill = await fileSize(work.sinkFile);

      proc = new PipelineProcess(work.configFile, work.stateFile, work.secretKey);
      await proc.waitForLine((l) => l.startsWith(`STATE ${pipeline} LIVE_CDC`), 'LIVE_CDC after restart', 120_000);
      await sleep(1000);
      await writer.stop();
      await writerClient.query(`INSERT INTO public.accounts VALUES (9999999, 0, 'marker')`);
      await waitFor(
        async () => (await readSinkFile(work.sinkFile)).some((l) => l.key.id === 9999999),
        'the marker row in the sink',
        proc,
      );
      await sleep(500);
      await sampler.stop();

      const after = partitions(work.stateFile, pipeline);
      expect(after.every((p) => p.status === 'done')).toBe(true);
      for (const p of doneAtKill) expect(after.find((a) => a.id === p.id)?.rows_read).toBe(p.rows_read);
      const lines = await readSinkFile(work.sinkFile);
      const readsAfterRestart = lines.filter((l) => l.op === 'read' && l.end > bytesAtKill).length;
      const pendingAtKill = new Set(atKill.filter((p) => p.status !== 'done').map((p) => p.id));
      const expectedRereads = after
        .filter((p) => pendingAtKill.has(p.id))
        .reduce((sum, p) => sum + (p.rows_read ?? 0), 0);
      expect(readsAfterRestart).toBe(expectedRereads);
      expect(readsAfterRestart).toBeLessThan(40_000);

      const row = pipelineRow(work.stateFile, pipeline)!;
      await oracle(fx, lines, { startPosition: row.start_position!, txns: writer.txns, samples: sampler.samples });
    } finally {
      await sampler.stop();
      await writer.stop().catch(() => {});
      await writerClient.end();
      await proc.stop();
    }
  });
});
