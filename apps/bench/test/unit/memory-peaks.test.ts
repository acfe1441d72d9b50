import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { memoryPeaks } from '../../src/scenarios/common.js';

const dir = mkdtempSync(join(tmpdir(), 'ns-memory-peaks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1024 * 1024;

it('reports the peaks, and after start-up the average heapTotal and the lowest heapUsed', async () => {
  const line = (t: number, heapUsed: number, heapTotal: number, rss: number) =>
    JSON.stringify({ t, heapUsed: heapUsed * MiB, heapTotal: heapTotal * MiB, rss: rss * MiB, cpuMs: 100 });
  const file = join(dir, 'heap.jsonl');
  writeFileSync(
    file,
    [
      // Start-up (t ≤ 10 s) counts for the peaks only.
      line(0.5, 5, 6, 50),
      line(9.5, 30, 120, 190),
      line(11, 40, 70, 180),
      line(12, 80, 90, 200),
      line(13, 45, 80, 199),
      '{"t": 13.5, "heapUs', // cut by the process's end
    ].join('\n'),
  );
  expect(await memoryPeaks(file)).toEqual({
    peakHeapUsedMB: 80,
    peakHeapTotalMB: 120,
    peakExternalMB: 0,
    peakArrayBuffersMB: 0,
    peakOwnRssMB: 200,
    meanHeapTotalMB: 80,
    heapFloorMB: 40,
    mainThreadCpuSeconds: 0.5,
  });
});
