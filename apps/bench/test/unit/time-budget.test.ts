import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { machineCpuTicks } from '../../src/proc.js';
import { timeBudget } from '../../src/scenarios/common.js';

const dir = mkdtempSync(join(tmpdir(), 'ns-time-budget-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('where the nanosync process spent a phase', () => {
  it('sums the sampler lines inside the interval, per second', async () => {
    const file = join(dir, 'heap.jsonl');
    const line = (at: number, s: Record<string, number>) => JSON.stringify({ at, heapUsed: 1, rss: 1, ...s });
    writeFileSync(
      file,
      [
        line(500, { cpuMs: 400, waitMs: 400, gcMs: 40, gcMaxMs: 30, loopMaxMs: 900 }), // before the phase
        line(1500, { cpuMs: 200, waitMs: 100, gcMs: 10, gcMaxMs: 6, loopMaxMs: 40 }),
        line(2000, { cpuMs: 300, waitMs: 250, gcMs: 20, gcMaxMs: 12, loopMaxMs: 120 }),
        line(2500, { cpuMs: 100, waitMs: 50, gcMs: 0, gcMaxMs: 0, loopMaxMs: 15 }),
        '{"at": 2900, "cpuMs"', // cut by the process's end
      ].join('\n'),
    );
    expect(await timeBudget(file, 1000, 3000)).toEqual({
      mainThreadCpuMsPerS: 300,
      runQueueWaitMsPerS: 200,
      gcPauseMsPerS: 15,
      worstRunQueueWaitMsIn500Ms: 250,
      longestGcPauseMs: 12,
      longestLoopDelayMs: 120,
    });
  });

  it('is empty without samples (no file, or an older sampler without the time fields)', async () => {
    expect(await timeBudget(join(dir, 'missing.jsonl'), 0, 1)).toEqual({});
    const old = join(dir, 'old.jsonl');
    writeFileSync(old, `${JSON.stringify({ t: 1, heapUsed: 1, rss: 1 })}\n`);
    expect(await timeBudget(old, 0, Date.now())).toEqual({});
  });

  it('the machine’s busy share comes from /proc/stat’s cpu line', () => {
    expect(machineCpuTicks('cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n')).toEqual({ busy: 150, total: 1000 });
    expect(machineCpuTicks('intr 1\n')).toBeUndefined();
  });

  it('the sampler preload writes those fields for a real process', () => {
    const file = join(dir, 'real.jsonl');
    const sampler = fileURLToPath(new URL('../../src/workers/heap-sampler.mjs', import.meta.url));
    const run = spawnSync(
      process.execPath,
      [
        '--import',
        sampler,
        '-e',
        'setTimeout(() => { const end = Date.now() + 700; while (Date.now() < end); setTimeout(() => {}, 400); }, 100)',
      ],
      { env: { ...process.env, NANOSYNC_BENCH_HEAP_FILE: file, NANOSYNC_BENCH_HEAP_INTERVAL_MS: '200' } },
    );
    expect(run.status).toBe(0);
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const last = lines.at(-1);
    for (const field of ['at', 'cpuMs', 'waitMs', 'gcMs', 'gcMaxMs', 'loopMaxMs', 'heapUsed', 'rss'])
      expect(typeof last[field], field).toBe('number');
    // The busy loop blocked the event loop for about 700 ms: the first sample after it says so.
    expect(Math.max(...lines.map((l) => l.loopMaxMs))).toBeGreaterThan(500);
  });
});
