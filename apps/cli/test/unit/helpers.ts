import { ErrorCode, NanosyncError } from '@nanosync/core';
import type { PipelineStatus } from '@nanosync/core/host';
import type { CliIo } from '../../src/io.js';
import type { AdminEngine, ApplyResult } from '../../src/server/admin-engine.js';

export interface CapturedIo extends CliIo {
  stdout: string[];
  stderr: string[];
  text(): string;
}

export function captureIo(env: NodeJS.ProcessEnv = {}, cwd = process.cwd()): CapturedIo {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (t) => stdout.push(t),
    err: (t) => stderr.push(t),
    env,
    cwd,
    text: () => [...stdout, ...stderr].join('\n'),
  };
}

/** An in-memory stand-in for core's Engine, for the HTTP layer only: no pipelines really run. */
export function fakeEngine(initial: Partial<PipelineStatus>[] = []) {
  const pipelines = new Map<string, PipelineStatus>();
  const hashes = new Map<string, string>();
  const calls: string[] = [];
  for (const p of initial) pipelines.set(p.name!, status(p));
  const engine: AdminEngine = {
    async apply(name, _definition, hash, replicationType): Promise<ApplyResult> {
      calls.push(`apply ${name}`);
      const previous = hashes.get(name);
      hashes.set(name, hash);
      if (previous === hash) return 'unchanged';
      pipelines.set(name, status({ name, replicationType, state: 'SNAPSHOTTING' }));
      return previous === undefined ? 'created' : 'updated';
    },
    async pause(name) {
      calls.push(`pause ${name}`);
      get(name).state = 'PAUSED';
    },
    async resume(name) {
      calls.push(`resume ${name}`);
      get(name).state = 'LIVE_CDC';
    },
    async resnapshot(name, tables) {
      calls.push(`resnapshot ${name} ${tables.join(',')}`);
      get(name).state = 'SNAPSHOTTING';
      return tables.length > 0 ? tables : ['public.all'];
    },
    async delete(name) {
      calls.push(`delete ${name}`);
      get(name);
      pipelines.delete(name);
    },
    async list() {
      return [...pipelines.values()];
    },
    async status(name) {
      return get(name);
    },
  };
  function get(name: string): PipelineStatus {
    const found = pipelines.get(name);
    if (!found) throw new NanosyncError(ErrorCode.PipelineNotFound, `pipeline "${name}" not found`);
    return found;
  }
  return { engine, calls, pipelines };
}

function status(p: Partial<PipelineStatus>): PipelineStatus {
  return {
    name: p.name ?? 'x',
    state: p.state ?? 'LIVE_CDC',
    replicationType: p.replicationType ?? 'cdc_backfill',
    eventsPerSecond: p.eventsPerSecond ?? 0,
    eventsTotal: p.eventsTotal ?? 0,
    tables: [],
    sinks: [],
    warnings: [],
    ...p,
  } as PipelineStatus;
}
