// Preloaded into a nanosync process by the bench (`node --import …/heap-sampler.mjs`) when
// NANOSYNC_BENCH_HEAP_FILE is set: appends the process's own memory figures every
// NANOSYNC_BENCH_HEAP_INTERVAL_MS (default 500) as JSON lines, so a scenario can report the
// JavaScript heap over time next to the RSS it samples from /proc. Changes nothing else.
// Each line also says where the time of the interval went, to tell what holds events back:
// `loopMaxMs` (longest event-loop delay), `gcMs` / `gcMaxMs` (V8's collection pauses, total and
// longest), and for the main thread `cpuMs` and `waitMs` (time it was runnable but waiting for a
// core: /proc/<pid>/task/<pid>/schedstat) — a backlog with high waitMs is CPU starvation.
//
// Two options for finding out what the memory is (dev runs only: both cost time and memory):
// - NANOSYNC_BENCH_HEAP_SNAPSHOT_AT=10,20 writes a V8 heap snapshot (live objects only: V8
//   collects first) that many seconds after start, next to the heap file
//   (`<heap file>.<seconds>s.heapsnapshot`; open it in Chrome's DevTools or summarise it with
//   `node apps/bench/src/heap-summary.mjs`).
// - NANOSYNC_BENCH_ALLOC_PROFILE=5-25 samples every allocation (collected or not) between those
//   seconds with V8's sampling heap profiler and writes `<heap file>.alloc.heapprofile`: what
//   allocates the garbage, by function.
// - NANOSYNC_BENCH_SMAPS_AT=10,20 copies /proc/self/smaps (every mapping's resident size) then
//   to `<heap file>.<seconds>s.smaps`: which part of the RSS is V8's heap, malloc's arenas or
//   the Node binary.
import { Session } from 'node:inspector';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics, writeHeapSnapshot } from 'node:v8';

const file = process.env.NANOSYNC_BENCH_HEAP_FILE;
if (file) {
  const interval = Number(process.env.NANOSYNC_BENCH_HEAP_INTERVAL_MS ?? 500);
  const started = Date.now();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let gcMs = 0;
  let gcMaxMs = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcMs += entry.duration;
      gcMaxMs = Math.max(gcMaxMs, entry.duration);
    }
  }).observe({ entryTypes: ['gc'] });
  // cpu ns, run-queue wait ns, time slices of the main thread (Linux only).
  const schedstat = () => {
    try {
      const [cpu, wait] = readFileSync(`/proc/${process.pid}/task/${process.pid}/schedstat`, 'utf8').split(' ');
      return [Number(cpu) / 1e6, Number(wait) / 1e6];
    } catch {
      return [Number.NaN, Number.NaN];
    }
  };
  let [cpuBefore, waitBefore] = schedstat();
  // What the RSS is made of, cheaply (Linux only): anonymous (V8's heap, malloc, stacks) and
  // file-backed pages (the Node binary, libraries) from /proc/self/status, and the size of
  // glibc's main malloc heap (brk: the `[heap]` mapping in /proc/self/maps, nearly all of it
  // resident since glibc returns only its top). 0 when not readable.
  const kb = (text, name) => {
    const match = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
    return match ? Number(match[1]) * 1024 : 0;
  };
  const residency = () => {
    let status = '';
    let brk = 0;
    try {
      status = readFileSync('/proc/self/status', 'utf8');
      const heap = /^([0-9a-f]+)-([0-9a-f]+) .*\[heap\]$/m.exec(readFileSync('/proc/self/maps', 'utf8'));
      if (heap) brk = Number.parseInt(heap[2], 16) - Number.parseInt(heap[1], 16);
    } catch {
      // not Linux
    }
    return { rssAnon: kb(status, 'RssAnon'), rssFile: kb(status, 'RssFile'), brkHeap: brk };
  };
  const sample = () => {
    const m = process.memoryUsage();
    const [cpu, wait] = schedstat();
    const round = (n) => Math.round(n * 10) / 10;
    const line = {
      t: (Date.now() - started) / 1000,
      at: Date.now(),
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      rss: m.rss,
      // pages of V8's heap that are resident (what heapTotal reserves, less what was never touched)
      v8Physical: getHeapStatistics().total_physical_size,
      ...residency(),
      loopMaxMs: round(loop.max / 1e6),
      gcMs: round(gcMs),
      gcMaxMs: round(gcMaxMs),
      cpuMs: round(cpu - cpuBefore),
      waitMs: round(wait - waitBefore),
    };
    loop.reset();
    gcMs = 0;
    gcMaxMs = 0;
    cpuBefore = cpu;
    waitBefore = wait;
    try {
      appendFileSync(file, `${JSON.stringify(line)}\n`);
    } catch {
      // the bench removed its work folder: nothing to report to
    }
  };
  sample();
  setInterval(sample, interval).unref();

  for (const at of (process.env.NANOSYNC_BENCH_HEAP_SNAPSHOT_AT ?? '').split(',').filter(Boolean)) {
    setTimeout(() => writeHeapSnapshot(`${file}.${at}s.heapsnapshot`), Number(at) * 1000).unref();
  }

  for (const at of (process.env.NANOSYNC_BENCH_SMAPS_AT ?? '').split(',').filter(Boolean)) {
    setTimeout(() => {
      try {
        writeFileSync(`${file}.${at}s.smaps`, readFileSync('/proc/self/smaps'));
      } catch {
        // not Linux, or the folder is gone
      }
    }, Number(at) * 1000).unref();
  }

  const profile = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(process.env.NANOSYNC_BENCH_ALLOC_PROFILE ?? '');
  if (profile) {
    const session = new Session();
    session.connect();
    const post = (method, params) =>
      new Promise((resolve, reject) =>
        session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))),
      );
    setTimeout(() => {
      void post('HeapProfiler.startSampling', {
        samplingInterval: 32 * 1024,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
    }, Number(profile[1]) * 1000).unref();
    setTimeout(async () => {
      const { profile: result } = await post('HeapProfiler.stopSampling', {});
      writeFileSync(`${file}.alloc.heapprofile`, JSON.stringify(result));
    }, Number(profile[2]) * 1000).unref();
  }
}
