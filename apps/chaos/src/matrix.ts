/**
 * The fault matrix: every selected scenario × every seed, one run at a time on one
 * PostgreSQL and one Kafka broker owned by the runner (scenarios restart and kill them).
 * Each result is reported as it comes; a failed seed prints the command that replays it.
 */
import { writeFile } from 'node:fs/promises';
import { startKafka, startPostgres } from '@nanosync/testcontainers';
import type { Services } from './run.js';
import { contextFor, type Scenario, ScenarioFailure, ScenarioSkipped } from './scenarios.js';

export interface RunResult {
  scenario: string;
  seed: number;
  outcome: 'passed' | 'failed' | 'skipped';
  events: number;
  replays: number;
  changes: number;
  ms: number;
  /** Why it failed or was skipped. */
  reason?: string;
  replay: string;
}

export interface MatrixOptions {
  scenarios: Scenario[];
  seeds: number[];
  /** Upper bound of seeded rows per run. */
  maxRows: number;
  /** NANOSYNC_TEST_FAULT for every nanosync process (the broken-build check); test-only. */
  fault?: string;
  /** Rewritten with the table after every run. */
  reportFile?: string;
  /** Services to use (default: a fresh PostgreSQL and Kafka owned by the runner). */
  services?: Services;
  /** Progress lines (default: stdout). */
  print?: (line: string) => void;
  /** Per-run detail lines (default: only printed for failed runs). */
  verbose?: boolean;
}

/** The one-line command that replays exactly one run. */
export function replayCommand(scenario: string, seed: number, options: { maxRows: number; fault?: string }): string {
  return `pnpm chaos --scenario ${scenario} --seed ${seed} --max-rows ${options.maxRows}${options.fault ? ` --fault ${options.fault}` : ''}`;
}

export async function runMatrix(options: MatrixOptions): Promise<RunResult[]> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const owned: AsyncDisposable[] = [];
  let services = options.services;
  if (!services) {
    const postgres = await startPostgres({ fresh: true });
    owned.push(postgres);
    const kafka = await startKafka({ fresh: true });
    owned.push(kafka);
    services = { postgres, kafka };
  }
  const env: Record<string, string> = options.fault ? { NODE_ENV: 'test', NANOSYNC_TEST_FAULT: options.fault } : {};
  const results: RunResult[] = [];
  const started = new Date();
  try {
    for (const seed of options.seeds) {
      for (const scenario of options.scenarios) {
        const detail: string[] = [];
        const log = (line: string) => {
          detail.push(line);
          if (options.verbose) print(`    ${line}`);
        };
        const replay = replayCommand(scenario.name, seed, options);
        const t0 = Date.now();
        let result: RunResult;
        try {
          const stats = await scenario.run(
            contextFor(services, scenario.name, seed, { maxRows: options.maxRows, env, log }),
          );
          result = { scenario: scenario.name, seed, outcome: 'passed', ...stats, ms: Date.now() - t0, replay };
          print(
            `PASS ${scenario.name} seed ${seed}: ${stats.events} events checked, ${stats.replays} replays (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
          );
        } catch (error) {
          const skipped = error instanceof ScenarioSkipped;
          const reason = error instanceof Error ? error.message : String(error);
          result = {
            scenario: scenario.name,
            seed,
            outcome: skipped ? 'skipped' : 'failed',
            events: 0,
            replays: 0,
            changes: 0,
            ms: Date.now() - t0,
            reason,
            replay,
          };
          if (skipped) print(`SKIP ${scenario.name} seed ${seed}: ${reason}`);
          else {
            print(`FAIL ${scenario.name} seed ${seed}: ${reason.split('\n').slice(0, 20).join('\n  ')}`);
            if (!options.verbose) for (const line of detail) print(`    ${line}`);
            if (error instanceof ScenarioFailure && error.logTail)
              print(`  --- nanosync log (tail) ---\n${error.logTail.slice(-3000)}`);
            else if (!(error instanceof ScenarioFailure) && error instanceof Error && error.stack)
              print(`  ${error.stack.split('\n').slice(1, 6).join('\n  ')}`);
            print(`  replay: ${replay}`);
          }
        }
        results.push(result);
        if (options.reportFile) await writeFile(options.reportFile, reportMarkdown(results, options, started));
      }
    }
  } finally {
    for (const service of owned.reverse()) {
      try {
        await service[Symbol.asyncDispose]();
      } catch {}
    }
  }
  return results;
}

/** scenario × seeds passed, events checked, replays seen, as a markdown table (with the failed seeds). */
export function reportMarkdown(
  results: RunResult[],
  options: { scenarios: Scenario[]; seeds: number[]; maxRows: number; fault?: string },
  started: Date,
): string {
  const lines = [
    `Chaos matrix: seeds ${describeSeeds(options.seeds)}, up to ${options.maxRows} seeded rows per run${options.fault ? `, test fault \`${options.fault}\`` : ''}; started ${started.toISOString()}, ${results.length} runs done.`,
    '',
    '| scenario | seeds passed | events checked | replays seen | mean run | failed seeds |',
    '|---|---|---|---|---|---|',
  ];
  for (const scenario of options.scenarios) {
    const mine = results.filter((r) => r.scenario === scenario.name);
    if (mine.length === 0) continue;
    const passed = mine.filter((r) => r.outcome === 'passed');
    const skipped = mine.filter((r) => r.outcome === 'skipped');
    const failed = mine.filter((r) => r.outcome === 'failed');
    const sum = (f: (r: RunResult) => number) => mine.reduce((a, r) => a + f(r), 0);
    lines.push(
      `| ${scenario.name} | ${passed.length}/${mine.length}${skipped.length ? ` (${skipped.length} skipped)` : ''} | ${sum((r) => r.events)} | ${sum((r) => r.replays)} | ${(sum((r) => r.ms) / mine.length / 1000).toFixed(1)} s | ${failed.map((r) => r.seed).join(', ') || '—'} |`,
    );
  }
  const failed = results.filter((r) => r.outcome === 'failed');
  if (failed.length > 0) {
    lines.push('', 'Replay a failed run:', '');
    for (const r of failed) lines.push(`- \`${r.replay}\` — ${(r.reason ?? '').split('\n')[0]}`);
  }
  return `${lines.join('\n')}\n`;
}

function describeSeeds(seeds: number[]): string {
  const sorted = [...seeds].sort((a, b) => a - b);
  const contiguous = sorted.every((s, i) => i === 0 || s === sorted[i - 1]! + 1);
  return contiguous && sorted.length > 2 ? `${sorted[0]}–${sorted.at(-1)}` : sorted.join(', ');
}
