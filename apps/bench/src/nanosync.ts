import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@nanosync/testcontainers';
import { errorMessage, log, run, startTool, type Tool } from './util.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI_BIN = join(REPO_ROOT, 'apps/cli/src/bin.ts');
/** What users run: the built package's binary (tsup), its dependencies resolved to their `dist/`. */
const CLI_BUILT = join(REPO_ROOT, 'apps/cli/dist/bin.js');

/**
 * How the bench starts nanosync: `built` (the default) runs `apps/cli/dist/bin.js`, the
 * binary users install, with plain Node; `source` (`--from-source`, dev runs) its TypeScript
 * sources through tsx, as `pnpm nanosync` does. tsx costs start-up, memory (its compiler and
 * source maps) and CPU (esbuild's `keepNames` wraps every function created at run time in a
 * `__name` call: 7% of S1's main thread in a profile), so only the build measures what users get.
 */
export type NanosyncLaunch = 'built' | 'source';
let launch: NanosyncLaunch = 'built';
let buildProblem: string | undefined;

export function nanosyncLaunch(): NanosyncLaunch {
  return launch;
}

/** How the report's header says nanosync ran. */
export function nanosyncLaunchLabel(which: NanosyncLaunch = launch): string {
  return which === 'built' ? 'built package, apps/cli/dist/bin.js' : 'TypeScript sources through tsx (--from-source)';
}

/**
 * Chooses how nanosync runs for the rest of the bench. `built` first builds the CLI and the
 * packages it depends on (`turbo run build --filter=nanosync`: cached, so a tree built before
 * costs a second); when that fails every nanosync run reports n/a with the reason, and the
 * reason is returned.
 */
export async function prepareNanosync(which: NanosyncLaunch): Promise<string | undefined> {
  launch = which;
  buildProblem = undefined;
  if (which === 'source') return undefined;
  const started = performance.now();
  log('building nanosync (turbo run build --filter=nanosync; cached once built)');
  try {
    await run(
      join(REPO_ROOT, 'node_modules/.bin/turbo'),
      ['run', 'build', '--filter=nanosync', '--output-logs=errors-only'],
      {
        cwd: REPO_ROOT,
        timeoutMs: 20 * 60_000,
      },
    );
  } catch (error) {
    buildProblem = `nanosync did not build: ${errorMessage(error)}`.slice(0, 400);
    return buildProblem;
  }
  log(`nanosync built in ${Math.round((performance.now() - started) / 1000)} s`);
  return undefined;
}
const HEAP_SAMPLER = join(REPO_ROOT, 'apps/bench/src/workers/heap-sampler.mjs');

const binLine = (binSource: string) =>
  /^#!\/usr\/bin\/env\s+-S\s+((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)node(?:\s+(.*))?$/.exec(
    (binSource.split('\n', 1)[0] ?? '').trim(),
  );

/**
 * With NANOSYNC_BENCH_CPU_PROF=1 (dev runs): V8's CPU profiler for the whole run, one
 * `.cpuprofile` per thread written into `<work dir>/cpu-prof` when the process exits
 * (NANOSYNC_BENCH_CPU_PROF_INTERVAL_US sets the sampling interval, default 1000). The work
 * folder is kept. Summarise with `node apps/bench/src/heap-summary.mjs <file>.cpuprofile`.
 */
export function cpuProfileOptions(workDir: string, env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.NANOSYNC_BENCH_CPU_PROF !== '1') return [];
  const interval = env.NANOSYNC_BENCH_CPU_PROF_INTERVAL_US;
  return [
    '--cpu-prof',
    '--cpu-prof-dir',
    join(workDir, 'cpu-prof'),
    ...(interval ? ['--cpu-prof-interval', String(Number.parseInt(interval, 10))] : []),
  ];
}

/**
 * The Node options the `nanosync` binary starts with: those on its `#!/usr/bin/env -S … node …`
 * line (apps/cli/src/bin.ts), so the bench measures nanosync as it runs when installed.
 */
export function binNodeOptions(binSource: string = readFileSync(CLI_BIN, 'utf8')): string[] {
  const options = binLine(binSource)?.[2] ?? '';
  return options.split(/\s+/).filter((arg) => arg.startsWith('--'));
}

/** The environment the same line sets before Node starts (`NAME=value` before `node`). */
export function binEnvironment(binSource: string = readFileSync(CLI_BIN, 'utf8')): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of (binLine(binSource)?.[1] ?? '').split(/\s+/).filter(Boolean)) {
    const at = pair.indexOf('=');
    env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return env;
}

/**
 * Dev runs only: `NANOSYNC_BENCH_NODE_OPTIONS` adds Node options after the binary's own (later
 * ones win, e.g. `--max-semi-space-size=8` over the binary's 4), to compare settings without editing the binary.
 */
function extraNodeOptions(): string[] {
  return (process.env.NANOSYNC_BENCH_NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
}

export type NanosyncSinkSpec =
  | { kind: 'kafka'; brokers: string[]; topic: string; compression: string; delivery?: 'exactly_once' }
  | { kind: 'file'; file: string };

export interface NanosyncPipelineSpec {
  name: string;
  pgUrl: string;
  /** schema.table */
  table: string;
  replicationType: 'snapshot' | 'cdc' | 'cdc_backfill';
  sink: NanosyncSinkSpec;
  /** State database, config and logs. Reuse it to resume from the stored checkpoint. */
  workDir: string;
  snapshotConcurrency?: number;
  /** snapshot.mode of a cdc_backfill pipeline (nanosync's default: concurrent). */
  snapshotMode?: 'concurrent' | 'blocking';
  snapshotChunkRows?: number;
  snapshotChunkBytes?: number;
  /** The pipeline's `workers` setting (absent: nanosync's default). */
  workers?: number | 'auto';
  /** JSON lines of the process's own memory (heap, RSS) every 500 ms (workers/heap-sampler.mjs). */
  heapFile?: string;
}

/** Why nanosync cannot run a pipeline into `sink` here, or undefined when the parts it needs are in the tree. */
export function nanosyncUnavailableReason(sink: NanosyncSinkSpec['kind']): string | undefined {
  if (buildProblem !== undefined) return buildProblem;
  const parts =
    launch === 'built'
      ? ['apps/cli/dist/bin.js', 'connectors/source-postgres/dist/index.js', `connectors/sink-${sink}/dist/index.js`]
      : ['apps/cli/src/bin.ts', 'connectors/source-postgres/src/index.ts', `connectors/sink-${sink}/src/index.ts`];
  for (const part of parts) {
    if (!existsSync(join(REPO_ROOT, part))) return `nanosync is not complete in this tree (${part} missing)`;
  }
  return undefined;
}

const q = (value: string) => JSON.stringify(value);

export function nanosyncConfigYaml(spec: NanosyncPipelineSpec): string {
  const lines = ['connections:', '  - name: source', '    type: postgres', `    dsn: ${q(spec.pgUrl)}`];
  if (spec.sink.kind === 'kafka') {
    lines.push(
      '  - name: sink',
      '    type: kafka',
      '    properties:',
      `      brokers: ${q(spec.sink.brokers.join(','))}`,
    );
  } else {
    lines.push('  - name: sink', '    type: file');
  }
  lines.push(
    'pipelines:',
    `  - name: ${spec.name}`,
    `    replication_type: ${spec.replicationType}`,
    '    source:',
    '      connection: source',
    `      tables: [${spec.table}]`,
  );
  const snapshot: string[] = [];
  if (spec.snapshotConcurrency) snapshot.push(`      concurrency: ${spec.snapshotConcurrency}`);
  if (spec.snapshotMode) snapshot.push(`      mode: ${spec.snapshotMode}`);
  if (spec.snapshotChunkRows) snapshot.push(`      chunk_rows: ${spec.snapshotChunkRows}`);
  if (spec.snapshotChunkBytes) snapshot.push(`      chunk_bytes: ${spec.snapshotChunkBytes}`);
  if (snapshot.length > 0) lines.push('    snapshot:', ...snapshot);
  if (spec.workers !== undefined) lines.push(`    workers: ${spec.workers}`);
  lines.push('    sink:', '      connection: sink', '      properties:');
  if (spec.sink.kind === 'kafka') {
    lines.push(
      `        topic: ${q(spec.sink.topic)}`,
      '        message_format: json',
      `        compression: ${spec.sink.compression}`,
      '        primary_keys: id',
      '        tombstones: false',
    );
    if (spec.sink.delivery) lines.push(`        delivery: ${spec.sink.delivery}`);
  } else {
    lines.push(`        file: ${q(spec.sink.file)}`);
  }
  return `${lines.join('\n')}\n`;
}

export const ADMIN_TOKEN = 'nanosync-bench-token';

export interface NanosyncProcess {
  tool: Tool;
  adminUrl: string;
  /** The pipeline's error once the admin API reports it errored (polled every second), else undefined. */
  failure(): string | undefined;
  /** GET /v1/pipelines/:name from the admin API; undefined while it is not answering. */
  status(): Promise<Record<string, unknown> | undefined>;
}

/**
 * `nanosync run --file` in its own process, so its memory and CPU are its own: the built
 * binary with the Node options and environment of its `#!` line, or (`--from-source`) the
 * TypeScript sources through tsx like `pnpm nanosync`, with the same options read off the
 * source's line. Same state folder = resume from the last checkpoint.
 */
export async function startNanosync(spec: NanosyncPipelineSpec): Promise<NanosyncProcess> {
  await mkdir(spec.workDir, { recursive: true });
  const configFile = join(spec.workDir, 'nanosync.yaml');
  await writeFile(configFile, nanosyncConfigYaml(spec));
  const port = await freePort();
  const bin = launch === 'built' ? CLI_BUILT : CLI_BIN;
  const binSource = readFileSync(bin, 'utf8');
  const tool = startTool(
    'nanosync',
    process.execPath,
    [
      ...binNodeOptions(binSource),
      ...cpuProfileOptions(spec.workDir),
      ...extraNodeOptions(),
      ...(launch === 'source' ? ['--conditions=@nanosync/source', '--import', 'tsx'] : []),
      ...(spec.heapFile ? ['--import', HEAP_SAMPLER] : []),
      bin,
      'run',
      '--file',
      configFile,
      '--state',
      join(spec.workDir, 'state', 'state.db'),
      '--listen',
      `127.0.0.1:${port}`,
      '--log-level',
      'info',
    ],
    {
      cwd: REPO_ROOT,
      logFile: join(spec.workDir, 'nanosync.log'),
      env: {
        // The binary's own settings first: a variable set for the bench (a dev run comparing
        // malloc settings) wins, as it would not for the installed binary.
        ...binEnvironment(binSource),
        ...process.env,
        NANOSYNC_TOKEN: ADMIN_TOKEN,
        ...(spec.heapFile ? { NANOSYNC_BENCH_HEAP_FILE: spec.heapFile } : {}),
      },
    },
  );
  const adminUrl = `http://127.0.0.1:${port}`;
  let failure: string | undefined;
  const process_: NanosyncProcess = {
    tool,
    adminUrl,
    failure: () => failure,
    async status() {
      try {
        const response = await fetch(`${adminUrl}/v1/pipelines/${spec.name}`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
          signal: AbortSignal.timeout(2_000),
        });
        if (!response.ok) return undefined;
        const body = (await response.json()) as { pipeline?: Record<string, unknown> };
        return body.pipeline;
      } catch {
        return undefined;
      }
    },
  };
  // A pipeline that errored keeps its process serving: notice it instead of waiting for a stall.
  const poller = setInterval(async () => {
    if (tool.exit) return clearInterval(poller);
    const status = await process_.status();
    if (status && /error/i.test(String(status.state ?? ''))) {
      failure =
        `pipeline ${String(status.state)}: ${typeof status.error === 'string' ? status.error : JSON.stringify(status.error ?? '')}`.slice(
          0,
          400,
        );
    }
  }, 1_000);
  poller.unref();
  void tool.exited.then(() => clearInterval(poller));
  return process_;
}
