/**
 * Crashes of the pipeline process while it streams (RELIABILITY.md fault table): SIGKILL at
 * exact points arranged by run-pipeline.ts's kill hooks, and SIGTERM. Each test ends with
 * the oracle over everything the sink received across all runs.
 */
import { describe, expect, it } from 'vitest';
import { decodePosition, encodePosition, parseLsn } from '../../src/position.js';
import { fileSize, type SinkLine } from './e2e/harness.js';
import { BULK_FIRST_ID, E2eScenario, streamLines } from './e2e/scenario.js';

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Stream lines of the rows with ids in [from, to], in file order. */
function group(lines: SinkLine[], from: number, to: number): SinkLine[] {
  return streamLines(lines).filter((l) => Number(l.key.id) >= from && Number(l.key.id) <= to);
}

/** The slot's confirmed_flush_lsn now. */
async function confirmedFlush(s: E2eScenario): Promise<bigint> {
  const { rows } = await s.query(
    'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
    [s.slot],
  );
  return parseLsn(String(rows[0]?.lsn));
}

/**
 * Everything in the file after `bytes` that has a position in (`after`, `through`]: the
 * positions a restart had to deliver again.
 */
function replayed(lines: SinkLine[], bytes: number, after: string, through: string): Set<string> {
  return new Set(
    streamLines(lines)
      .filter((l) => l.end > bytes && l.position > after && l.position <= through)
      .map((l) => l.position),
  );
}

describe('end to end: the pipeline process crashing while it streams', () => {
  it('SIGKILL at an arbitrary moment, between a sink write and its checkpoint, between a checkpoint and the acknowledgement, and inside a large transaction, with a concurrent writer: only replays, never gaps', async () => {
    await using s = await E2eScenario.create({ rows: 2000 });
    await s.startWriter();

    // 1. Whenever it happens to be: some events in, the writer going on.
    const first = s.spawn();
    await s.waitLive(first);
    await s.waitForStreamEvents(streamLines(await s.lines()).length + 30, first);
    first.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');

    // 2. A sink write made durable, its checkpoint never stored.
    const second = s.spawn({ afterStreamEvents: 40 });
    await s.waitForHook(second);
    const atSecond = await s.lines();
    const checkpointAtSecond = s.checkpoint()!;
    const lastAtSecond = streamLines(atSecond).at(-1)!.position;
    expect(lastAtSecond > checkpointAtSecond, 'the killed write is in the file, past the checkpoint').toBe(true);
    const bytesAtSecond = await fileSize(s.work.sinkFile);

    // 3. A checkpoint stored, the source never acknowledged to it.
    const third = s.spawn({ afterCheckpoints: 5 });
    await s.waitForHook(third);
    const checkpointAtThird = s.checkpoint()!;
    // Acknowledging a transaction's checkpoint lets the slot move to its commit's end, past its commit LSN.
    expect(await confirmedFlush(s)).toBeLessThanOrEqual(decodePosition(checkpointAtThird).lsn);
    const bytesAtThird = await fileSize(s.work.sinkFile);

    // 4. Inside one transaction of 6000 changes: its inserts, then updates of the same rows.
    const firstBulk = BULK_FIRST_ID + 1;
    const lastBulk = BULK_FIRST_ID + 3000;
    const fourth = s.spawn({ afterEvent: { id: BULK_FIRST_ID + 1200, op: 'update' } });
    await s.waitLive(fourth);
    await s.query(
      `BEGIN;
       INSERT INTO public.accounts (id, balance, note) SELECT g, g, 'bulk' FROM generate_series(${firstBulk}, ${lastBulk}) g;
       UPDATE public.accounts SET note = 'bulk-updated', balance = balance + 1 WHERE id BETWEEN ${firstBulk} AND ${lastBulk};
       COMMIT`,
    );
    await s.waitForHook(fourth);
    const atFourth = await s.lines();
    const bytesAtFourth = await fileSize(s.work.sinkFile);
    const bulkBeforeKill = group(atFourth, firstBulk, lastBulk);
    const bulkLsn = decodePosition(bulkBeforeKill[0]!.position).lsn;
    expect(bulkBeforeKill.map((l) => decodePosition(l.position).index)).toEqual(range(1, 4200));
    expect(bulkBeforeKill.every((l) => decodePosition(l.position).lsn === bulkLsn)).toBe(true);
    expect(decodePosition(s.checkpoint()!).lsn, 'nothing of the cut transaction is checkpointed').toBeLessThan(bulkLsn);

    // 5. Run to the end.
    const last = s.spawn();
    await s.waitLive(last);
    await s.finish(last);
    const lines = await s.check();

    // The write killed before its checkpoint was delivered again.
    const uncheckpointed = new Set(
      streamLines(atSecond)
        .filter((l) => l.position > checkpointAtSecond)
        .map((l) => l.position),
    );
    expect(uncheckpointed.size).toBeGreaterThan(0);
    expect(replayed(lines, bytesAtSecond, checkpointAtSecond, lastAtSecond)).toEqual(uncheckpointed);
    // A checkpoint the slot never heard of still holds: the next run starts after it.
    const afterThird = streamLines(lines).find((l) => l.end > bytesAtThird)!;
    expect(afterThird.position > checkpointAtThird).toBe(true);
    // The cut transaction came again, whole, with the same positions.
    const bulkAfter = group(lines, firstBulk, lastBulk).filter((l) => l.end > bytesAtFourth);
    expect(bulkAfter.map((l) => decodePosition(l.position).index)).toEqual(range(1, 6000));
    expect(bulkAfter.slice(0, 4200).map((l) => l.position)).toEqual(bulkBeforeKill.map((l) => l.position));
  });

  it('a multi-row INSERT and a COPY (one commit LSN for all their rows), each killed in the middle of writing the group: nothing missing after the restart', async () => {
    await using s = await E2eScenario.create({ rows: 500 });
    await s.startWriter();
    const insertFrom = BULK_FIRST_ID + 1;
    const insertTo = BULK_FIRST_ID + 2000;
    const copyFrom = BULK_FIRST_ID + 10_001;
    const copyTo = BULK_FIRST_ID + 12_000;

    const first = s.spawn({ afterEvent: { id: insertFrom + 1299 } });
    await s.waitLive(first);
    await s.query(
      `INSERT INTO public.accounts (id, balance, note) SELECT g, g, 'multi' FROM generate_series(${insertFrom}, ${insertTo}) g`,
    );
    await s.waitForHook(first);
    const bytesAtFirst = await fileSize(s.work.sinkFile);
    const insertBeforeKill = group(await s.lines(), insertFrom, insertTo);
    expect(insertBeforeKill.map((l) => Number(l.key.id))).toEqual(range(insertFrom, insertFrom + 1299));
    const insertLsn = decodePosition(insertBeforeKill[0]!.position).lsn;
    expect(insertBeforeKill.map((l) => l.position)).toEqual(range(1, 1300).map((i) => encodePosition(insertLsn, i)));
    expect(decodePosition(s.checkpoint()!).lsn).toBeLessThan(insertLsn);

    // COPY writes its rows with multi-insert WAL records: a different decoding path.
    const second = s.spawn({ afterEvent: { id: copyFrom + 1499 } });
    await s.waitLive(second);
    await s.query(
      `COPY public.accounts (id, balance, note) FROM PROGRAM 'seq -f ''%.0f,7,copy'' ${copyFrom} ${copyTo}' WITH (FORMAT csv)`,
    );
    await s.waitForHook(second);
    const bytesAtSecond = await fileSize(s.work.sinkFile);
    const atSecond = await s.lines();
    const copyBeforeKill = group(atSecond, copyFrom, copyTo);
    expect(copyBeforeKill.map((l) => Number(l.key.id))).toEqual(range(copyFrom, copyFrom + 1499));
    const copyLsn = decodePosition(copyBeforeKill[0]!.position).lsn;
    expect(copyBeforeKill.every((l) => decodePosition(l.position).lsn === copyLsn)).toBe(true);
    expect(decodePosition(s.checkpoint()!).lsn).toBeLessThan(copyLsn);
    // The restart in between delivered the cut INSERT again, whole.
    const insertReplay = group(atSecond, insertFrom, insertTo).filter((l) => l.end > bytesAtFirst);
    expect(insertReplay.map((l) => Number(l.key.id))).toEqual(range(insertFrom, insertTo));
    expect(insertReplay.slice(0, 1300).map((l) => l.position)).toEqual(insertBeforeKill.map((l) => l.position));

    const last = s.spawn();
    await s.waitLive(last);
    await s.finish(last);
    const lines = await s.check();
    const copyReplay = group(lines, copyFrom, copyTo).filter((l) => l.end > bytesAtSecond);
    expect(copyReplay.map((l) => Number(l.key.id))).toEqual(range(copyFrom, copyTo));
    expect(copyReplay.map((l) => decodePosition(l.position).index)).toEqual(range(1, 2000));
    expect(copyReplay.slice(0, 1500).map((l) => l.position)).toEqual(copyBeforeKill.map((l) => l.position));
  });

  it('SIGTERM: the process exits cleanly by itself with its checkpoint stored and acknowledged, and the restart delivers nothing twice', async () => {
    await using s = await E2eScenario.create({ rows: 1000 });
    await s.startWriter();
    // A slow sink: the stop always finds batches queued in front of it, to write, checkpoint and acknowledge.
    const first = s.spawn(undefined, { writeDelayMs: 200 });
    await s.waitLive(first);
    await s.waitForStreamEvents(60, first);
    first.kill('SIGTERM');
    expect(await first.exited, first.logTail).toBe(0);

    const atStop = streamLines(await s.lines());
    const bytesAtStop = await fileSize(s.work.sinkFile);
    const checkpoint = s.checkpoint()!;
    const lastWritten = atStop.at(-1)!.position;
    // Everything written is covered by the checkpoint: exactly (a transaction's last event), or
    // by a later keepalive position (index 0) when the stream was idle.
    if (decodePosition(checkpoint).index === 0) expect(checkpoint > lastWritten).toBe(true);
    else expect(checkpoint).toBe(lastWritten);
    // The slot was told before the process exited: at the checkpoint (a transaction's commit
    // end, or the keepalive position), so the server keeps no WAL the pipeline is done with.
    expect(await confirmedFlush(s)).toBeGreaterThanOrEqual(decodePosition(checkpoint).lsn);

    const second = s.spawn();
    await s.waitLive(second);
    await s.waitForStreamEvents(atStop.length + 30, second);
    await s.finish(second);
    const lines = streamLines(await s.check());
    const afterRestart = lines.filter((l) => l.end > bytesAtStop);
    expect(afterRestart[0]!.position > checkpoint, 'the restart starts after the checkpoint').toBe(true);
    const positions = lines.map((l) => l.position);
    expect(new Set(positions).size, 'no stream event delivered twice').toBe(positions.length);
  });
});
