import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const vitestBin = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');

interface AssertionResult {
  ancestorTitles: string[];
  title: string;
  status: 'passed' | 'failed' | 'skipped' | 'pending';
  failureMessages: string[];
}

/**
 * Each deliberately broken connector, the test of the kit that guards against its flaw
 * (first), and the other tests the flaw also trips. Every other test of its suite must pass.
 */
const expectations: Record<string, RegExp[]> = {
  BrokenMidTransactionSafePositionSource: [/safePosition only at transaction boundaries/],
  BrokenInclusiveFromSource: [
    /strictly after from/,
    /resumes from the acknowledged position/,
    /stream from it holds exactly the later changes/,
    /TRUNCATE streams/,
  ],
  BrokenOverlappingPartitionsSource: [
    /every row in exactly one partition/,
    /readPartition\(\) runs concurrently/,
    /snapshot shows the state at the start position/,
  ],
  BrokenSnapshotIgnoringSource: [/snapshot shows the state at the start position/],
  BrokenSlotRecreatingSource: [/never silently re-created/],
  BrokenEarlyResolvingSink: [
    /resolves only once the events are durable/,
    /order of changes per key/,
    /a truncate event/,
    /snapshot rows/,
    /unchanged columns/,
    /a replay after a restart/,
  ],
  BrokenReorderingSink: [/order of changes per key/, /resolves only once the events are durable/, /unchanged columns/],
  BrokenTruncateIgnoringSink: [/truncate event empties its table/],
  BrokenBadValueAcceptingSink: [/rejects a value it cannot represent/],
  BrokenUnchangedNullingSink: [/unchanged columns never overwrites them/],
};

describe('the kit fails deliberately broken connectors', () => {
  let results: AssertionResult[] = [];

  beforeAll(async () => {
    const out = await mkdtemp(join(tmpdir(), 'ns-testkit-'));
    try {
      const report = join(out, 'report.json');
      await new Promise<void>((resolve) => {
        // The child exits non-zero (its tests fail, as they must): only the report matters.
        execFile(
          process.execPath,
          [
            vitestBin,
            'run',
            '--config',
            join(here, '../fixtures/vitest.config.ts'),
            '--reporter=json',
            `--outputFile=${report}`,
          ],
          { env: { ...process.env, VITEST: undefined, VITEST_WORKER_ID: undefined, VITEST_POOL_ID: undefined } },
          () => resolve(),
        );
      });
      const parsed = JSON.parse(await readFile(report, 'utf8')) as {
        testResults: { assertionResults: AssertionResult[] }[];
      };
      results = parsed.testResults.flatMap((f) => f.assertionResults);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 300_000);

  const of = (connector: string) => results.filter((r) => r.ancestorTitles.some((t) => t.startsWith(`${connector} `)));

  for (const [connector, [guard, ...alsoTripped]] of Object.entries(expectations)) {
    it(`${connector} fails "${guard!.source}"`, () => {
      const tests = of(connector);
      expect(tests.length, `the child run reported the suite of ${connector}`).toBeGreaterThan(0);
      const matching = tests.filter((t) => guard!.test(t.title));
      expect(matching.length, `a test of ${connector} matches ${guard}`).toBe(1);
      expect(matching[0]!.status, `${connector}: ${matching[0]!.title}`).toBe('failed');
      const expectedFailures = [guard!, ...alsoTripped];
      const unexpected = tests.filter((t) => t.status === 'failed' && !expectedFailures.some((g) => g.test(t.title)));
      expect(
        unexpected.map((t) => `${t.title}: ${t.failureMessages[0]?.split('\n')[0]}`),
        `${connector}: the rest of its suite passes`,
      ).toEqual([]);
    });
  }
});
