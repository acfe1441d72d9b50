export type ScenarioId = 'S0' | 'S1' | 'S2' | 'S3' | 'S4' | 'S5';
export const ALL_SCENARIOS: readonly ScenarioId[] = ['S0', 'S1', 'S2', 'S3', 'S4', 'S5'];
export type S5Tool = 'concurrent' | 'blocking' | 'debezium';
const S5_TOOLS: readonly S5Tool[] = ['concurrent', 'blocking', 'debezium'];

export interface BenchOptions {
  quick: boolean;
  /** S0 rows per run (each format, design and worker count). */
  s0Rows: number;
  /** S0 rounds: every worker run is repeated this often, the worker counts side by side, and the median kept. */
  s0Rounds: number;
  /** S1 table size. */
  rows: number;
  /** S2 backlog size (per variant: 100-row and 1-row transactions). */
  changes: number;
  /** S4 records per producer. */
  records: number;
  /** S4 compressions, each run through every client (default snappy, the sink's default). */
  s4Compressions: string[];
  /** S3 seconds of steady load per rate. */
  latencySeconds: number;
  /** S3 base rate (events/s) when S2 does not run before it; its loads are 25/50/75% of it. */
  s3BaseRate: number | undefined;
  /** S5 writer rate, changes per second. */
  s5Rate: number;
  /** S5 runs, in order. */
  s5Tools: S5Tool[];
  only: ReadonlySet<ScenarioId>;
  skipDebezium: boolean;
  /**
   * The `workers` setting of S1's nanosync pipelines (default 0: inline); with N > 0 S2 also
   * runs its at-least-once pipeline once more with N workers (the change stream through them).
   */
  workers: number | 'auto';
  /**
   * Run nanosync from its TypeScript sources through tsx (dev runs) instead of the built
   * package (`apps/cli/dist/bin.js`, what users run), which the bench builds first.
   */
  fromSource: boolean;
  outDir: string;
  help: boolean;
}

export const USAGE = `Usage: pnpm bench [options]

  --quick             every scenario at a tiny size (a minute or few): harness check, not a measurement
  --s0-rows N         S0 rows encoded per run, per format, design and worker count (default 200000; quick 5000)
  --s0-rounds N       S0 rounds of the worker runs, 1, 2 and 4 workers side by side in each; the median
                      run of each is reported (default 3; quick 1)
  --rows N            S1 and S5 snapshot table rows (default 2000000; quick 20000)
  --changes N         S2 backlog changes per variant (default 1000000; quick 10000)
  --records N         S4 records per producer (default 1000000; quick 20000)
  --s4-compressions L S4 compressions, comma-separated (default snappy; any of none,gzip,snappy,lz4,zstd)
  --latency-seconds N S3 seconds of load per rate (default 20; quick 3)
  --s3-base-rate N    S3 loads are 25/50/75% of this many events/s when S2 does not run first
                      (default: S2's rate, or 5000; quick 2000)
  --s5-rate N         S5 writer, changes per second during the snapshots (default 1000; quick 200)
  --s5-tools L        S5 runs, comma-separated (default concurrent,blocking,debezium)
  --only S1,S2        run only these scenarios (S0 in-process encoding ceiling, S1 snapshot, S2 backlog drain, S3 latency, S4 Kafka ceiling,
                      S5 snapshot under a writer)
  --skip-debezium     do not run Debezium (no Maven resolution, no JVM)
  --workers N|auto    the workers setting of S1's nanosync pipelines (default 0: no worker threads); with N,
                      S2 also drains its backlog with N workers and reports workers ÷ inline
  --from-source       run nanosync from its TypeScript sources through tsx (dev runs) instead of
                      the built apps/cli/dist/bin.js, which is built first (turbo, cached)
  --out DIR           where the JSON result goes (default bench-results/ at the repository root)
  --help              this text
`;

function positiveInt(flag: string, value: string | undefined): number {
  const cleaned = (value ?? '').replaceAll('_', '').replaceAll(',', '');
  const multiplier = /[kK]$/.test(cleaned) ? 1_000 : /[mM]$/.test(cleaned) ? 1_000_000 : 1;
  const number = Number(cleaned.replace(/[kKmM]$/, '')) * multiplier;
  if (!Number.isInteger(number) || number <= 0)
    throw new Error(`${flag} needs a positive whole number, got ${JSON.stringify(value)}`);
  return number;
}

function workersOption(value: string | true | undefined): number | 'auto' {
  if (value === undefined || value === true) return 0;
  if (value === 'auto') return 'auto';
  if (value === '0') return 0;
  return positiveInt('--workers', value);
}

export function parseArgs(argv: readonly string[], defaultOutDir: string): BenchOptions {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') continue;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(arg)}\n\n${USAGE}`);
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    if (['quick', 'skip-debezium', 'from-source', 'help'].includes(name)) {
      flags.set(name, true);
      continue;
    }
    if (
      ![
        's0-rows',
        's0-rounds',
        'rows',
        'changes',
        'records',
        's4-compressions',
        'latency-seconds',
        's3-base-rate',
        's5-rate',
        's5-tools',
        'only',
        'out',
        'workers',
      ].includes(name)
    ) {
      throw new Error(`unknown option --${name}\n\n${USAGE}`);
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    flags.set(name, value);
  }
  const quick = flags.get('quick') === true;
  const num = (name: string, full: number, small: number) => {
    const value = flags.get(name);
    return typeof value === 'string' ? positiveInt(`--${name}`, value) : quick ? small : full;
  };
  let only: Set<ScenarioId> = new Set(ALL_SCENARIOS);
  const onlyValue = flags.get('only');
  if (typeof onlyValue === 'string') {
    only = new Set();
    for (const part of onlyValue
      .split(',')
      .map((s) => s.trim().toUpperCase())
      .filter(Boolean)) {
      if (!(ALL_SCENARIOS as readonly string[]).includes(part))
        throw new Error(`--only: unknown scenario ${part} (known: ${ALL_SCENARIOS.join(', ')})`);
      only.add(part as ScenarioId);
    }
  }
  const compressionsValue = flags.get('s4-compressions');
  const s4Compressions =
    typeof compressionsValue === 'string'
      ? compressionsValue
          .split(',')
          .map((s) => s.trim().toLowerCase())
          .filter(Boolean)
      : ['snappy'];
  for (const c of s4Compressions) {
    if (!['none', 'gzip', 'snappy', 'lz4', 'zstd'].includes(c))
      throw new Error(`--s4-compressions: unknown compression ${c} (known: none, gzip, snappy, lz4, zstd)`);
  }
  const toolsValue = flags.get('s5-tools');
  const s5Tools =
    typeof toolsValue === 'string'
      ? toolsValue
          .split(',')
          .map((s) => s.trim().toLowerCase())
          .filter(Boolean)
      : [...S5_TOOLS];
  for (const t of s5Tools) {
    if (!(S5_TOOLS as readonly string[]).includes(t))
      throw new Error(`--s5-tools: unknown run ${t} (known: ${S5_TOOLS.join(', ')})`);
  }
  const out = flags.get('out');
  return {
    quick,
    s0Rows: num('s0-rows', 200_000, 5_000),
    s0Rounds: num('s0-rounds', 3, 1),
    rows: num('rows', 2_000_000, 20_000),
    changes: num('changes', 1_000_000, 10_000),
    records: num('records', 1_000_000, 20_000),
    s4Compressions,
    latencySeconds: num('latency-seconds', 20, 3),
    s3BaseRate: typeof flags.get('s3-base-rate') === 'string' ? num('s3-base-rate', 0, 0) : undefined,
    s5Rate: num('s5-rate', 1_000, 200),
    s5Tools: s5Tools as S5Tool[],
    only,
    skipDebezium: flags.get('skip-debezium') === true,
    workers: workersOption(flags.get('workers')),
    fromSource: flags.get('from-source') === true,
    outDir: typeof out === 'string' ? out : defaultOutDir,
    help: flags.get('help') === true,
  };
}
