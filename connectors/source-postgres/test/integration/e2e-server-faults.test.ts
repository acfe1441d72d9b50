/**
 * The database side failing under a running pipeline (RELIABILITY.md fault table): the
 * server restarted (`pg_ctl -m fast`) during the snapshot and during streaming, and the
 * walsender terminated. The pipeline process keeps running throughout; each test ends with
 * the oracle.
 */
import { startPostgres } from '@nanosync/testcontainers';
import { describe, expect, it } from 'vitest';
import type { PipelineProcess } from './e2e/harness.js';
import { E2eScenario, streamLines, waitFor } from './e2e/scenario.js';
import { terminateWalsender } from './stream-helpers.js';

/** The pipeline never gave up: no ERRORED state, and the process is still running. */
function expectNeverErrored(s: E2eScenario, proc: PipelineProcess): void {
  expect(proc.running, proc.logTail).toBe(true);
  expect(proc.stdout.filter((l) => l.startsWith(`STATE ${s.pipeline} ERRORED`))).toEqual([]);
}

async function moreStreamEvents(s: E2eScenario, proc: PipelineProcess, more: number): Promise<void> {
  await s.waitForStreamEvents(streamLines(await s.lines()).length + more, proc);
}

describe('end to end: the database failing under a running pipeline', () => {
  it('PostgreSQL restarted (pg_ctl -m fast) during the snapshot: the pipeline reconnects, completes the snapshot and streams; the oracle passes', async () => {
    await using service = await startPostgres({ fresh: true });
    // Blocking mode: this is the path that reads from an exported snapshot held by the
    // replication connection (concurrent mode has none; its restart is covered by the kills
    // of concurrent-snapshot.test.ts).
    await using s = await E2eScenario.create({
      rows: 40_000,
      service,
      snapshot: { concurrency: 2, rows: 1000, mode: 'blocking' },
    });
    await s.startWriter();
    const proc = s.spawn();
    await waitFor(() => s.partitions().filter((p) => p.status === 'done').length >= 3, 'three partitions done', proc);
    const beforeRestart = s.partitions();
    expect(beforeRestart.some((p) => p.status !== 'done')).toBe(true);
    await service.restart();
    await s.waitLive(proc);
    await moreStreamEvents(s, proc, 30);
    await s.finish(proc);

    expectNeverErrored(s, proc);
    // The restart hit the snapshot: the connection holding the exported snapshot died with
    // it, and the partitions still pending were read afterwards from fresh snapshots.
    expect(proc.logLines('replication connection holding the exported snapshot failed').length).toBeGreaterThan(0);
    expect(proc.logLines('exported snapshot no longer available').length).toBeGreaterThan(0);
    const after = s.partitions();
    expect(after.every((p) => p.status === 'done')).toBe(true);
    for (const p of beforeRestart.filter((b) => b.status === 'done'))
      expect(after.find((a) => a.id === p.id)?.rows_read).toBe(p.rows_read);
    await s.check();
  });

  it('PostgreSQL restarted (pg_ctl -m fast) while streaming, with a concurrent writer: the stream reconnects and resumes; the oracle passes', async () => {
    await using service = await startPostgres({ fresh: true });
    await using s = await E2eScenario.create({ rows: 1000, service });
    await s.startWriter();
    const proc = s.spawn();
    await s.waitLive(proc);
    await moreStreamEvents(s, proc, 30);
    await service.restart();
    await moreStreamEvents(s, proc, 60);
    await s.finish(proc);

    expectNeverErrored(s, proc);
    expect(proc.logLines('replication connection lost; reconnecting').length).toBeGreaterThan(0);
    await s.check();
  });

  it('the walsender terminated (pg_terminate_backend) three times while the Engine streams: it reconnects each time; the oracle passes', async () => {
    await using s = await E2eScenario.create({ rows: 1000 });
    await s.startWriter();
    const proc = s.spawn();
    await s.waitLive(proc);
    for (let round = 0; round < 3; round++) {
      await moreStreamEvents(s, proc, 20);
      const pid = await terminateWalsender(s.fx.admin, s.slot);
      await waitFor(
        async () => {
          const { rows } = await s.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [s.slot]);
          const active = rows[0]?.active_pid;
          return active !== null && active !== undefined && Number(active) !== pid;
        },
        'a new walsender',
        proc,
      );
    }
    await moreStreamEvents(s, proc, 20);
    await s.finish(proc);

    expectNeverErrored(s, proc);
    expect(proc.logLines('replication connection lost; reconnecting').length).toBeGreaterThanOrEqual(3);
    await s.check();
  });
});
