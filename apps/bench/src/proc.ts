import { readdirSync, readFileSync } from 'node:fs';

/**
 * Resource accounting for one process and its descendants, read from /proc (Linux only).
 *
 * CPU: the sum over the live processes of the tree of utime+stime+cutime+cstime. A child
 * that exited and was reaped moved its time into its parent's cutime/cstime, and a live
 * child is counted by its own utime/stime, so nothing is counted twice. Sample before the
 * root exits: once it is gone its counters cannot be read.
 *
 * Memory: the peak of the tree's summed VmRSS over the samples, or the root's VmHWM (the
 * kernel's own high-water mark, which catches spikes between samples) when that is larger.
 */

export interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks. */
  cpuTicks: number;
}

/** Parses /proc/<pid>/stat. The command name sits in parentheses and may itself hold spaces or ')'. */
export function parseProcStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error(`unexpected /proc stat line: ${text.slice(0, 80)}`);
  const pid = Number(text.slice(0, open).trim());
  // After ") ": state(3) ppid(4) pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) cutime(16) cstime(17)
  const rest = text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  const field = (n: number) => Number(rest[n - 3]);
  return { pid, ppid: field(4), cpuTicks: field(14) + field(15) + field(16) + field(17) };
}

export interface ProcMemory {
  rssBytes: number;
  hwmBytes: number;
}

/** Parses VmRSS and VmHWM (kB) out of /proc/<pid>/status; zero when absent (kernel threads, zombies). */
export function parseProcStatus(text: string): ProcMemory {
  const kb = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
    return match ? Number(match[1]) * 1024 : 0;
  };
  return { rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}

/** The pids of `root` and all its descendants, given every process's parent. */
export function descendantsOf(root: number, parents: ReadonlyMap<number, number>): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parents) {
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    if (!parents.has(pid) && pid !== root) continue;
    out.push(pid);
    for (const child of children.get(pid) ?? []) stack.push(child);
  }
  return out;
}

let clockTicksPerSecond = 100;
/** Clock ticks per second for /proc times; USER_HZ is 100 on every mainstream Linux build. */
export function setClockTicks(hz: number): void {
  if (hz > 0) clockTicksPerSecond = hz;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function allParents(): Map<number, number> {
  const parents = new Map<number, number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return parents;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const text = readText(`/proc/${name}/stat`);
    if (!text) continue;
    try {
      const stat = parseProcStat(text);
      parents.set(stat.pid, stat.ppid);
    } catch {
      // raced with exit
    }
  }
  return parents;
}

export interface ResourceUsage {
  /** Peak resident memory of the process tree, bytes. */
  peakRssBytes: number;
  /** CPU time of the process tree, seconds. */
  cpuSeconds: number;
}

export class ProcessTreeMonitor {
  private timer: NodeJS.Timeout | undefined;
  private peakRss = 0;
  private cpuTicks = 0;
  private knownPids = new Set<number>();
  private sampleCount = 0;

  constructor(
    readonly rootPid: number,
    private readonly intervalMs = 200,
  ) {}

  static supported(): boolean {
    return readText('/proc/self/stat') !== undefined;
  }

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  /** Takes one reading now. Cheap enough to call at the moment a scenario completes. */
  sample(): void {
    // Re-scan the whole process table only every few samples; children of a running tool are stable.
    if (this.sampleCount++ % 5 === 0 || this.knownPids.size === 0) {
      this.knownPids = new Set(descendantsOf(this.rootPid, allParents()));
    }
    let rss = 0;
    let ticks = 0;
    let rootHwm = 0;
    let seen = 0;
    for (const pid of this.knownPids) {
      const stat = readText(`/proc/${pid}/stat`);
      const status = readText(`/proc/${pid}/status`);
      if (!stat || !status) continue;
      seen++;
      ticks += parseProcStat(stat).cpuTicks;
      const memory = parseProcStatus(status);
      rss += memory.rssBytes;
      if (pid === this.rootPid) rootHwm = memory.hwmBytes;
    }
    if (seen === 0) return;
    this.peakRss = Math.max(this.peakRss, rss, rootHwm);
    this.cpuTicks = Math.max(this.cpuTicks, ticks);
  }

  usage(): ResourceUsage {
    return { peakRssBytes: this.peakRss, cpuSeconds: this.cpuTicks / clockTicksPerSecond };
  }

  /** Final reading (if the process is still there) and stop sampling. */
  stop(): ResourceUsage {
    this.sample();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return this.usage();
  }
}

/**
 * The whole machine's CPU time so far from /proc/stat's `cpu` line, in clock ticks: busy
 * (everything but idle and iowait) and total. Two readings give the share of all cores in use
 * between them; undefined where /proc/stat is not readable.
 */
export function machineCpuTicks(
  text: string | undefined = readText('/proc/stat'),
): { busy: number; total: number } | undefined {
  const line = text?.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return undefined;
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return { busy: total - idle, total };
}
