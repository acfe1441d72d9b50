import { defineConfig } from 'vitest/config';

const resolve = { conditions: ['@nanosync/source'] };
const roots = ['packages', 'connectors', 'apps', 'testcontainers', 'examples'];
const glob = (kind: string) =>
  roots.flatMap((r) => [`${r}/*/test/${kind}/**/*.test.ts`, `${r}/test/${kind}/**/*.test.ts`]);

export default defineConfig({
  test: {
    projects: [
      {
        resolve,
        ssr: { resolve: { conditions: ['@nanosync/source'] } },
        test: { name: 'unit', include: glob('unit'), testTimeout: 20_000 },
      },
      {
        resolve,
        ssr: { resolve: { conditions: ['@nanosync/source'] } },
        test: {
          name: 'integration',
          include: glob('integration'),
          globalSetup: ['./testcontainers/src/vitest-global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          teardownTimeout: 60_000,
          fileParallelism: true,
          maxWorkers: 2,
          minWorkers: 1,
        },
      },
    ],
  },
});
