/**
 * The fault matrix in CI: every scenario of apps/chaos with 2 seeds (small runs), and the
 * runner's own test: a deliberately broken build is caught by some seed within those seeds.
 * The full matrix (`pnpm chaos --seeds 20`) is run by hand; see apps/chaos/README.md.
 */
import { type KafkaService, type PostgresService, startKafka, startPostgres } from '@nanosync/testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunResult, runMatrix } from '../../src/matrix.js';
import { SCENARIOS, scenarioNamed } from '../../src/scenarios.js';

const SEEDS = [1, 2];
const MAX_ROWS = 1500;

let postgres: PostgresService;
let kafka: KafkaService;

beforeAll(async () => {
  // Owned by this file: scenarios restart PostgreSQL and kill the broker.
  postgres = await startPostgres({ fresh: true });
  kafka = await startKafka({ fresh: true });
}, 300_000);

afterAll(async () => {
  await kafka?.[Symbol.asyncDispose]();
  await postgres?.[Symbol.asyncDispose]();
});

async function matrix(names: string[], fault?: string): Promise<{ results: RunResult[]; output: string }> {
  const lines: string[] = [];
  const results = await runMatrix({
    scenarios: names.map(scenarioNamed),
    seeds: SEEDS,
    maxRows: MAX_ROWS,
    services: { postgres, kafka },
    print: (line) => lines.push(line),
    ...(fault ? { fault } : {}),
  });
  return { results, output: lines.join('\n') };
}

describe(`the fault matrix, seeds ${SEEDS.join(', ')}`, () => {
  for (const scenario of SCENARIOS) {
    it(`${scenario.name}: ${scenario.fault}`, { timeout: 400_000 }, async (context) => {
      const { results, output } = await matrix([scenario.name]);
      expect(
        results.filter((r) => r.outcome === 'failed').map((r) => `seed ${r.seed}: ${r.reason}`),
        output,
      ).toEqual([]);
      // A fault this machine cannot stage (no SQL Server, no mount rights) is reported as a skip, with its reason.
      const skipped = results.filter((r) => r.outcome === 'skipped');
      if (skipped.length === results.length) context.skip(skipped[0]!.reason);
      expect(results.filter((r) => r.outcome === 'passed').length, output).toBeGreaterThan(0);
      for (const r of results.filter((r) => r.outcome === 'passed')) expect(r.events).toBeGreaterThan(0);
    });
  }

  it(
    'catches a deliberately broken build (checkpoint and acknowledgement before the sink write, NANOSYNC_TEST_FAULT=ack-before-write) within those seeds, naming the lost changes and the replay command',
    { timeout: 400_000 },
    async () => {
      const { results, output } = await matrix(['kill-write-checkpoint'], 'ack-before-write');
      const failed = results.filter((r) => r.outcome === 'failed');
      expect(failed.length, output).toBeGreaterThan(0);
      expect(failed.map((r) => r.reason).join('\n'), output).toMatch(/change lost|missing from the sink/);
      expect(output).toContain(
        `replay: pnpm chaos --scenario kill-write-checkpoint --seed ${failed[0]!.seed} --max-rows ${MAX_ROWS} --fault ack-before-write`,
      );
    },
  );
});
