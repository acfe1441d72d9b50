// Preloaded into a nanosync process by the bench (`node --import …/heap-sampler.mjs`) when
// NANOSYNC_BENCH_HEAP_FILE is set: appends the process's own memory figures every
// NANOSYNC_BENCH_HEAP_INTERVAL_MS (default 500) as JSON lines, so a scenario can report the
// JavaScript heap over time next to the RSS it samples from /proc. Changes nothing else.
import { appendFileSync } from 'node:fs';

const file = process.env.NANOSYNC_BENCH_HEAP_FILE;
if (file) {
  const interval = Number(process.env.NANOSYNC_BENCH_HEAP_INTERVAL_MS ?? 500);
  const started = Date.now();
  const sample = () => {
    const m = process.memoryUsage();
    try {
      appendFileSync(
        file,
        `${JSON.stringify({ t: (Date.now() - started) / 1000, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss })}\n`,
      );
    } catch {
      // the bench removed its work folder: nothing to report to
    }
  };
  sample();
  setInterval(sample, interval).unref();
}
