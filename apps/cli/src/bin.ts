#!/usr/bin/env -S node --max-semi-space-size=16
// No static imports here: the CLI's modules need node:sqlite, which an older Node cannot
// even load, so the version is checked before anything else is imported.
//
// Memory: the line above starts Node with a young generation of at most 2 × 16 MB. Node
// (no pointer compression) otherwise lets it grow to 2 × 64 MB, which a pipeline fills with
// short-lived garbage: about a third of its peak RSS. `pnpm nanosync` and the bench pass the
// same option (they start this file with `node` themselves); see
// apps/bench/README.md (memory).
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
