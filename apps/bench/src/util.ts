import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message.split('\n')[0] ?? String(error);
  return String(error);
}

export function randomSuffix(length = 6): string {
  return Math.random()
    .toString(36)
    .slice(2, 2 + length)
    .padEnd(length, '0');
}

/** Polls `check` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs: number; intervalMs?: number; abort?: () => string | undefined },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value as T;
    const reason = opts.abort?.();
    if (reason) throw new Error(`${what}: ${reason}`);
    if (Date.now() > deadline)
      throw new Error(`timed out after ${Math.round(opts.timeoutMs / 1000)} s waiting for ${what}`);
    await sleep(opts.intervalMs ?? 100);
  }
}

/** A child process of the bench: logged to a file, killed when the bench exits however it exits. */
export interface Tool {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly startedAt: number;
  readonly logFile: string;
  /** Exit code or signal once it exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
let hooked = false;

function killAllSync(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // gone
    }
  }
}

function installExitHooks(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAllSync);
}

export function startTool(
  name: string,
  command: string,
  args: readonly string[],
  opts: SpawnOptions & { logFile: string },
): Tool {
  installExitHooks();
  const out = createWriteStream(opts.logFile, { flags: 'a' });
  const child = spawn(command, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) {
    // spawn failures surface through 'error'; make them synchronous for the caller
    throw new Error(`could not start ${name} (${command})`);
  }
  live.add(child);
  child.stdout?.pipe(out, { end: false });
  child.stderr?.pipe(out, { end: false });
  const tool: Tool = {
    name,
    child,
    pid: child.pid,
    startedAt: performance.now(),
    logFile: opts.logFile,
    exit: undefined,
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        tool.exit = { code, signal };
        setTimeout(() => out.end(), 50);
        resolve({ code, signal });
      });
    }),
    async stop(graceMs = 15_000) {
      if (tool.exit) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await tool.exited;
      clearTimeout(timer);
    },
  };
  child.once('error', (error) => {
    out.write(`spawn error: ${error.message}\n`);
    live.delete(child);
  });
  return tool;
}

/** Runs a command to completion and returns its output; rejects with stderr on a non-zero exit. */
export function run(
  command: string,
  args: readonly string[],
  opts: SpawnOptions & { input?: string; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    installExitHooks();
    const child = spawn(command, args, {
      ...opts,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.once('error', (error) => {
      live.delete(child);
      if (timer) clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      live.delete(child);
      if (timer) clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else
        reject(
          new Error(
            `${command} ${args.slice(0, 3).join(' ')} exited with ${code ?? signal}: ${(stderr || stdout).trim().split('\n').slice(-5).join(' | ')}`,
          ),
        );
    });
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => {});
      child.stdin?.end(opts.input);
    }
  });
}

/**
 * The most telling line of a failed tool's log, for a one-line "n/a" reason: the last line
 * that looks like an error (stack frames skipped), else the last line; at most 300 characters.
 */
export async function failureLine(file: string): Promise<string> {
  const lines = (await tailOf(file, 80))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('at ') && !/^Node\.js v/.test(l));
  const line = [...lines].reverse().find((l) => /error|exception|fatal|ERR\b|\[NS_/i.test(l)) ?? lines.at(-1) ?? '';
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/** Tail of a log file for error messages. */
export async function tailOf(file: string, lines = 15): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  try {
    const text = await readFile(file, 'utf8');
    return text.trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
