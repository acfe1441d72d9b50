import { defineConfig } from 'tsup';
import { preset } from '../../tsup.preset.js';

export default defineConfig(
  preset(
    { index: 'src/index.ts', host: 'src/host.ts', 'pipeline-worker': 'src/runtime/pipeline-worker.ts' },
    // Shared chunks: both entries must see the same NanosyncError class for instanceof.
    { splitting: true },
  ),
);
