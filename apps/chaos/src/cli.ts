/**
 * pnpm chaos [--seeds N] [--seed S] [--scenario name[,name]] [--report file] [--max-rows N] [--verbose]
 *
 * Runs every scenario (or the named ones) for seeds 1..N (default 2), or only seed S, and
 * prints one line per run; a failed run prints its seed and the command that replays it.
 * `--fault SPEC` sets NANOSYNC_TEST_FAULT (with NODE_ENV=test) on every nanosync process:
 * a test-only hook, e.g. `ack-before-write`, the deliberately broken build the runner must catch.
 * Exit code 1 when any run failed.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runMatrix } from './matrix.js';
import { SCENARIOS, scenarioNamed } from './scenarios.js';

const usage = `usage: pnpm chaos [--seeds N] [--seed S] [--scenario name[,name]] [--report file] [--max-rows N] [--verbose]
scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string' },
      seed: { type: 'string' },
      scenario: { type: 'string' },
      report: { type: 'string' },
      'max-rows': { type: 'string' },
      fault: { type: 'string' },
      verbose: { type: 'boolean' },
      list: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  if (values.list) {
    for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(24)} ${s.fault}\n`);
    return 0;
  }
  const positive = (text: string | undefined, flag: string, fallback: number) => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer (got '${text}')`);
    return n;
  };
  const seeds =
    values.seed !== undefined
      ? [positive(values.seed, '--seed', 1)]
      : Array.from({ length: positive(values.seeds, '--seeds', 2) }, (_, i) => i + 1);
  const scenarios = values.scenario ? values.scenario.split(',').map((n) => scenarioNamed(n.trim())) : SCENARIOS;
  const maxRows = positive(values['max-rows'], '--max-rows', 3000);
  const results = await runMatrix({
    scenarios,
    seeds,
    maxRows,
    ...(values.fault ? { fault: values.fault } : {}),
    ...(values.report ? { reportFile: resolve(process.env.INIT_CWD ?? process.cwd(), values.report) } : {}),
    verbose: values.verbose ?? false,
  });
  const failed = results.filter((r) => r.outcome === 'failed');
  const passed = results.filter((r) => r.outcome === 'passed').length;
  process.stdout.write(
    `\n${passed} passed, ${failed.length} failed, ${results.length - passed - failed.length} skipped of ${results.length} runs\n`,
  );
  for (const r of failed) process.stdout.write(`failed: ${r.scenario} seed ${r.seed} — replay: ${r.replay}\n`);
  return failed.length > 0 ? 1 : 0;
}

// Interrupted: exit through process.exit so the harness's exit hooks SIGKILL the nanosync
// children (PostgreSQL and Kafka stop by themselves once this process is gone).
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`chaos: ${error instanceof Error ? error.message : String(error)}\n${usage}\n`);
    process.exit(2);
  },
);
