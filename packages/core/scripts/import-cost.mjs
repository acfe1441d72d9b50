// Measures what importing each entry of the built package costs a fresh Node process:
// wall time of the `import()` (median of several runs) and how many modules it loads.
//   pnpm --filter @nanosync/core build && node packages/core/scripts/import-cost.mjs [runs]
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '../dist');
const runs = Number(process.argv[2] ?? 9);
const entries = { '@nanosync/core': 'index.js', '@nanosync/core/host': 'host.js' };

const probe = (url) => `
import { registerHooks } from 'node:module';
let modules = 0;
registerHooks({ load(url, context, next) { modules++; return next(url, context); } });
const start = performance.now();
await import(${JSON.stringify(url)});
console.log(JSON.stringify({ ms: performance.now() - start, modules }));
`;

for (const [name, file] of Object.entries(entries)) {
  const path = join(dist, file);
  if (!existsSync(path)) throw new Error(`${path} is missing: run pnpm --filter @nanosync/core build first`);
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const out = execFileSync(process.execPath, [
      '--no-warnings',
      '--input-type=module',
      '-e',
      probe(pathToFileURL(path).href),
    ]);
    samples.push(JSON.parse(String(out)));
  }
  samples.sort((a, b) => a.ms - b.ms);
  const median = samples[Math.floor(samples.length / 2)];
  console.log(
    `${name.padEnd(22)} ${median.ms.toFixed(1).padStart(7)} ms  ${String(median.modules).padStart(4)} modules  (median of ${runs}, Node ${process.version})`,
  );
}
