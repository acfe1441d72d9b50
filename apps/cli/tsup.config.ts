import { defineConfig } from 'tsup';
import { preset } from '../../tsup.preset.js';

// Code splitting: a module imported with `await import()` (the `monitor` dashboard: Ink, React,
// Yoga) becomes a chunk of its own that loads when it is imported. Without it, esbuild puts the
// module into the entry's file and hoists its package imports to static imports at the top, so
// `nanosync run` loaded Ink, React and Yoga too: ~10 MB more live heap and ~17 MB more off-heap
// memory in a running server (apps/bench/README.md, issue 19 item 4, fourth pass).
export default defineConfig(preset(['src/index.ts', 'src/bin.ts', 'src/run.ts'], { splitting: true }));
