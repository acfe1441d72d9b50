import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@nanosync/testcontainers';
import { startTool, type Tool } from './util.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI_BIN = join(REPO_ROOT, 'apps/cli/src/bin.ts');
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
 * ones win, e.g. `--max-semi-space-size=8`), to compare settings without editing the binary.
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
  const parts = [
    'apps/cli/src/bin.ts',
    'connectors/source-postgres/src/index.ts',
    `connectors/sink-${sink}/src/index.ts`,
  ];
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
 * `nanosync run --file` in its own process (TypeScript sources through tsx, like `pnpm nanosync`),
 * so its memory and CPU are its own. Same state folder = resume from the last checkpoint.
 */
export async function startNanosync(spec: NanosyncPipelineSpec): Promise<NanosyncProcess> {
  await mkdir(spec.workDir, { recursive: true });
  const configFile = join(spec.workDir, 'nanosync.yaml');
  await writeFile(configFile, nanosyncConfigYaml(spec));
  const port = await freePort();
  const tool = startTool(
    'nanosync',
    process.execPath,
    [
      ...binNodeOptions(),
      ...cpuProfileOptions(spec.workDir),
      ...extraNodeOptions(),
      '--conditions=@nanosync/source',
      '--import',
      'tsx',
      ...(spec.heapFile ? ['--import', HEAP_SAMPLER] : []),
      CLI_BIN,
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
        ...binEnvironment(),
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
