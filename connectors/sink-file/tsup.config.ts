import { defineConfig } from 'tsup';
import { preset } from '../../tsup.preset.js';

export default defineConfig(preset(['src/index.ts', 'src/worker.ts']));
