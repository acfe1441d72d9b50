#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=4
// No static imports here: the CLI's modules need node:sqlite, which an older Node cannot
// even load, so the version is checked before anything else is imported.
//
// Memory: the line above starts Node with a young generation of at most 2 × 4 MB. Node
// (no pointer compression) otherwise lets it grow to 2 × 64 MB, which a pipeline fills with
// short-lived garbage. It also limits glibc's malloc to 2 arenas: by default every thread
// that allocates (V8's compiler and collector helpers, libuv's pool) may get its own, which
// kept 10–19 MB more resident in the bench. Both must be set before Node starts, so they live
// here; `pnpm nanosync` and the bench use the same (they start this file with `node`
// themselves; the bench reads this line). See apps/bench/README.md (memory).
import { nodeVersionProblem } from './node-version.js';
import { limitHeapGrowth } from './heap.js';

const problem = nodeVersionProblem(process.versions.node, process.execPath);
if (problem !== undefined) {
  process.stderr.write(`${problem}\n`);
  process.exit(2);
}
limitHeapGrowth();
// A computed specifier keeps the bundler from inlining run.js (and its imports) into this file.
const entry = './run.js';
await import(entry);
