import { describe, expect, it } from 'vitest';
import { fileSize, sleep } from './e2e/harness.js';
import { E2eScenario, waitFor } from './e2e/scenario.js';

describe('end to end: Engine + PostgreSQL source + file sink, in a child process', () => {
  it('snapshot and stream with a concurrent writer pass the oracle', async () => {
    await using s = await E2eScenario.create({ rows: 8000 });
    await s.startWriter();
    const proc = s.spawn();
    await s.waitLive(proc);
    await sleep(1500);
    await s.finish(proc);
    const lines = await s.lines();
    expect(lines.filter((l) => l.op === 'read').length).toBeGreaterThan(7000);
    expect(s.partitions().every((p) => p.status === 'done')).toBe(true);
    await s.check();
  });

  it('SIGKILL during the snapshot: the restart keeps completed partitions, re-reads only the rest, and the oracle passes', async () => {
    await using s = await E2eScenario.create({ rows: 40_000 });
    await s.startWriter();
    const first = s.spawn();
    await waitFor(() => s.partitions().filter((p) => p.status === 'done').length >= 3, 'three partitions done', first);
    first.kill('SIGKILL');
    await first.exited;
    const atKill = s.partitions();
    const doneAtKill = atKill.filter((p) => p.status === 'done');
    expect(doneAtKill.length).toBeLessThan(atKill.length);
    const bytesAtKill = await fileSize(s.work.sinkFile);

    const second = s.spawn();
    await s.waitLive(second);
    await sleep(1000);
    await s.finish(second);

    const after = s.partitions();
    expect(after.every((p) => p.status === 'done')).toBe(true);
    for (const p of doneAtKill) expect(after.find((a) => a.id === p.id)?.rows_read).toBe(p.rows_read);
    const lines = await s.lines();
    const readsAfterRestart = lines.filter((l) => l.op === 'read' && l.end > bytesAtKill).length;
    const pendingAtKill = new Set(atKill.filter((p) => p.status !== 'done').map((p) => p.id));
    const expectedRereads = after
      .filter((p) => pendingAtKill.has(p.id))
      .reduce((sum, p) => sum + (p.rows_read ?? 0), 0);
    expect(readsAfterRestart).toBe(expectedRereads);
    expect(readsAfterRestart).toBeLessThan(40_000);
    await s.check();
  });
});
