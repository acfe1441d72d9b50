#!/usr/bin/env node
// No static imports here: the CLI's modules need node:sqlite, which an older Node cannot
// even load, so the version is checked before anything else is imported.
import { nodeVersionProblem } from './node-version.js';

const problem = nodeVersionProblem(process.versions.node, process.execPath);
if (problem !== undefined) {
  process.stderr.write(`${problem}\n`);
  process.exit(2);
}
// A computed specifier keeps the bundler from inlining run.js (and its imports) into this file.
const entry = './run.js';
await import(entry);
