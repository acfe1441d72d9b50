import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { ProcessTreeMonitor, type ResourceUsage } from './proc.js';
import { failureLine, sleep, startTool, type Tool } from './util.js';

export interface Progress {
  /** A number that grows while the tool works (messages, lines, bytes); used to detect a stall. */
  progress: number;
  done: boolean;
}

export interface RunMeasurement {
  /** Spawn → done, seconds. */
  seconds: number;
  /** Spawn → `started()` first held, seconds. */
  startupSeconds?: number;
  usage: ResourceUsage;
  progress: number;
}

/**
 * Watches a running tool until `check` says it is done, sampling its process tree all along.
 * Fails when the tool exits first, or when its progress stands still for `stallMs`.
 * The tool keeps running afterwards: stopping it is the caller's business.
 */
export async function measureUntil(opts: {
  tool: Tool;
  check: () => Promise<Progress>;
  started?: () => Promise<boolean>;
  /** A reason to give up now (e.g. the tool reports a fatal error while its process lives on). */
  abort?: () => string | undefined;
  stallMs?: number;
  intervalMs?: number;
}): Promise<RunMeasurement> {
  const { tool } = opts;
  const monitor = new ProcessTreeMonitor(tool.pid).start();
  const stallMs = opts.stallMs ?? 120_000;
  let lastProgress = -1;
  let lastChange = performance.now();
  let startupSeconds: number | undefined;
  try {
    for (;;) {
      if (startupSeconds === undefined && opts.started && (await opts.started()))
        startupSeconds = (performance.now() - tool.startedAt) / 1000;
      const state = await opts.check();
      if (state.done) {
        const seconds = (performance.now() - tool.startedAt) / 1000;
        monitor.sample();
        return { seconds, startupSeconds, usage: monitor.usage(), progress: state.progress };
      }
      const abort = opts.abort?.();
      if (abort) throw new Error(`${tool.name}: ${abort}`);
      if (tool.exit) {
        throw new Error(
          `${tool.name} exited (${tool.exit.code ?? tool.exit.signal}) before finishing: ${await failureLine(tool.logFile)}`,
        );
      }
      if (state.progress !== lastProgress) {
        lastProgress = state.progress;
        lastChange = performance.now();
      } else if (performance.now() - lastChange > stallMs) {
        throw new Error(
          `${tool.name} made no progress for ${Math.round(stallMs / 1000)} s (stuck at ${state.progress}); log ${tool.logFile}`,
        );
      }
      await sleep(opts.intervalMs ?? 100);
    }
  } finally {
    monitor.stop();
  }
}

const GNU_TIME = '/usr/bin/time';

/** Parses the line GNU time writes with `-f 'NSBENCH %e %U %S %M'`. */
export function parseGnuTime(text: string): { seconds: number; cpuSeconds: number; maxRssBytes: number } | undefined {
  const match = /NSBENCH (\S+) (\S+) (\S+) (\d+)/.exec(text);
  if (!match) return undefined;
  return {
    seconds: Number(match[1]),
    cpuSeconds: Number(match[2]) + Number(match[3]),
    maxRssBytes: Number(match[4]) * 1024,
  };
}

/**
 * Runs a baseline command (psql COPY, pg_recvlogical, ProducerPerformance) to its exit.
 * Under GNU time when the machine has it (exact CPU and peak RSS of the finished command),
 * otherwise sampled from /proc while it runs.
 */
export async function runToExit(
  name: string,
  command: string,
  args: readonly string[],
  opts: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string },
): Promise<{ seconds: number; usage: ResourceUsage; code: number | null; tool: Tool }> {
  const timeFile = `${opts.logFile}.time`;
  const useTime = existsSync(GNU_TIME);
  const tool = useTime
    ? startTool(name, GNU_TIME, ['-o', timeFile, '-f', 'NSBENCH %e %U %S %M', command, ...args], opts)
    : startTool(name, command, args, opts);
  const monitor = new ProcessTreeMonitor(tool.pid, 50).start();
  const exit = await tool.exited;
  const seconds = (performance.now() - tool.startedAt) / 1000;
  monitor.stop();
  let usage = monitor.usage();
  if (useTime) {
    const parsed = parseGnuTime(await readFile(timeFile, 'utf8').catch(() => ''));
    if (parsed) usage = { cpuSeconds: parsed.cpuSeconds, peakRssBytes: parsed.maxRssBytes };
  }
  return { seconds, usage, code: exit.code, tool };
}
