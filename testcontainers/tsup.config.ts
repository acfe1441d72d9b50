import { defineConfig } from 'tsup';
import { preset } from '../tsup.preset.js';

export default defineConfig(
  preset({ index: 'src/index.ts', cli: 'src/cli.ts', 'vitest-global-setup': 'src/vitest-global-setup.ts' }),
);
