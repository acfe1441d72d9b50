import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

/**
 * Every local service process started by this package is tracked here, so that nothing
 * outlives the test run:
 * - a normal `stop()`/dispose stops it and its watchdog;
 * - process exit, SIGINT, SIGTERM (and crashes, which end in `exit`) signal every tracked
 *   service synchronously;
 * - if this Node process is SIGKILLed, a watchdog (a tiny detached `sh` loop started next to
 *   each service) sees the parent pid vanish, kills the service and removes its temp folder.
 */

export interface ServiceProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** Like `exited`, but keeps the event loop alive meanwhile (the child is otherwise unref'd). */
  waitForExit(): Promise<number | string>;
  /**
   * Ends the watchdog: call once the service folder is gone (dispose) or a new process took
   * over the folder (restart). Until then the watchdog removes the folder if we die, even
   * after the service itself was stopped.
   */
  dismissWatchdog(): void;
}

interface Tracked {
  pid: number;
  /** Signal for a hurried stop: SIGQUIT for the postmaster (immediate shutdown), SIGKILL for the JVM. */
  emergencySignal: NodeJS.Signals;
  watchdogPid: number | undefined;
}

const tracked = new Map<number, Tracked>();
let hooksInstalled = false;

// $1 parent pid, $2 service pid, $3 signal, $4 folder to remove (may be empty).
// Runs until killed by us (dispose, or a restart hands the folder to a new watchdog) or until
// the parent disappears. A zombie counts as gone: after the parent dies, nobody may reap the
// service promptly. Once the service is seen gone its pid is forgotten, never signalled.
const WATCHDOG = `
alive() {
  if [ -r /proc/$1/status ]; then ! grep -q '^State:[[:space:]]*Z' /proc/$1/status 2>/dev/null
  else kill -0 "$1" 2>/dev/null; fi
}
p=$1; s=$2; sig=$3; dir=$4
while alive "$p"; do
  if [ -n "$s" ] && ! alive "$s"; then s=; fi
  sleep 0.5
done
if [ -n "$s" ]; then
  kill -s "$sig" "$s" 2>/dev/null
  i=0
  while alive "$s" && [ $i -lt 40 ]; do sleep 0.25; i=$((i+1)); done
  kill -s KILL "$s" 2>/dev/null
fi
[ -n "$dir" ] && rm -rf "$dir"
exit 0
`;

function startWatchdog(servicePid: number, signal: NodeJS.Signals, removeDir: string | undefined): number | undefined {
  const sigName = signal.replace(/^SIG/, '');
  const watchdog = spawn(
    'sh',
    ['-c', WATCHDOG, 'nanosync-watchdog', String(process.pid), String(servicePid), sigName, removeDir ?? ''],
    {
      detached: true,
      stdio: 'ignore',
    },
  );
  watchdog.on('error', () => {});
  watchdog.unref();
  return watchdog.pid;
}

function killQuietly(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Signals every tracked service; used on exit paths where nothing can be awaited. */
export function killAllTrackedSync(): void {
  for (const entry of tracked.values()) killQuietly(entry.pid, entry.emergencySignal);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllTrackedSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = () => {
      killAllTrackedSync();
      // When nobody else handles the signal, keep its default meaning: terminate.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, handler);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, handler);
  }
}

/** Pids of the service processes currently running (for the CLI's state file and tests). */
export function trackedPids(): number[] {
  return [...tracked.keys()];
}

export interface SpawnServiceOptions {
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr are appended to this file. */
  logFile: string;
  uid?: number;
  gid?: number;
  emergencySignal: NodeJS.Signals;
  /** Removed by the watchdog if this process dies without cleaning up. */
  removeDirOnOrphan?: string;
}

/**
 * Starts a long-running service in its own process group (so a terminal's Ctrl-C reaches us
 * first and we decide the order), tracked and watched as described above.
 */
export function spawnService(options: SpawnServiceOptions): ServiceProcess {
  installHooks();
  const logFd = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(options.command, options.args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', logFd, logFd],
      detached: true,
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
  } finally {
    closeSync(logFd);
  }
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (error) => resolve(`spawn error: ${error.message}`));
  });
  child.unref();
  const pid = child.pid;
  if (pid === undefined) {
    return { pid: -1, child, exited, waitForExit: () => exited, dismissWatchdog() {} };
  }
  const entry: Tracked = {
    pid,
    emergencySignal: options.emergencySignal,
    watchdogPid: startWatchdog(pid, options.emergencySignal, options.removeDirOnOrphan),
  };
  tracked.set(pid, entry);
  void exited.then(() => {
    if (tracked.get(pid) === entry) tracked.delete(pid);
  });
  const dismissWatchdog = () => {
    killQuietly(entry.watchdogPid, 'SIGTERM');
    entry.watchdogPid = undefined;
  };
  const waitForExit = async () => {
    child.ref();
    try {
      return await exited;
    } finally {
      child.unref();
    }
  };
  return { pid, child, exited, waitForExit, dismissWatchdog };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs a short command to completion; rejects with its output when it fails. */
export function run(
  command: string,
  args: string[],
  options: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
    let output = '';
    child.stdout?.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr?.on('data', (chunk) => {
      output += chunk;
    });
    child.once('error', (error) => reject(new Error(`could not run ${command}: ${error.message}`)));
    child.once('exit', (code, signal) => {
      if (code === 0) resolve(output);
      else reject(new Error(`${command} ${args.join(' ')} failed (${code ?? signal}):\n${output.trim()}`));
    });
  });
}
