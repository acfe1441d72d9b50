import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const CLI_ENTRY = join(REPO_ROOT, 'apps/cli/src/bin.ts');
/** tsx's ESM loader, by absolute URL, so the child may run from any folder. */
const TSX_LOADER = pathToFileURL(createRequire(join(REPO_ROOT, 'package.json')).resolve('tsx')).href;

/**
 * The CLI exactly as a user's shell runs it from source:
 * `node --conditions=@nanosync/source --import tsx apps/cli/src/bin.ts …`.
 */
export function cliCommand(args: string[]): { command: string; args: string[] } {
  return {
    command: process.execPath,
    args: ['--conditions=@nanosync/source', '--import', TSX_LOADER, CLI_ENTRY, ...args],
  };
}

/** The environment of a CLI child: ours without any NANOSYNC_* setting, plus `extra`. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('NANOSYNC_') && !k.startsWith('VITEST')) env[k] = v;
  return { ...env, FORCE_COLOR: '0', ...extra };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A CLI child process whose output is collected; killed on dispose if still running. */
export class CliProcess implements AsyncDisposable {
  stdout = '';
  stderr = '';
  readonly child: ChildProcess;
  readonly exited: Promise<CliResult>;
  private waiters: (() => void)[] = [];

  constructor(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}) {
    const { command, args: argv } = cliCommand(args);
    this.child = spawn(command, argv, {
      cwd: options.cwd ?? REPO_ROOT,
      env: cliEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      this.notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      this.notify();
    });
    this.exited = new Promise((resolveExit) => {
      this.child.on('close', (code, signal) => {
        this.notify();
        resolveExit({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  get output(): string {
    return `${this.stdout}${this.stderr}`;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolve once stdout+stderr match `pattern`; reject if the process exits first or after `timeoutMs`. */
  async waitFor(pattern: RegExp, timeoutMs = 120_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.output.match(pattern);
      if (found) return found;
      if (!this.running) throw new Error(`CLI exited before printing ${pattern}:\n${this.output}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}:\n${this.output}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.child.kill(signal);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.running) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Run a CLI command to completion. */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  await using proc = new CliProcess(args, options);
  return await proc.exited;
}

/** Start `serve` (or `run`) on a free port and wait until its admin API answers; returns the API address. */
export async function startServing(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ proc: CliProcess; server: string }> {
  const proc = new CliProcess([...args, '--listen', '127.0.0.1:0'], options);
  try {
    const match = await proc.waitFor(/admin api listening url=(http:\/\/127\.0\.0\.1:\d+)/);
    await proc.waitFor(/nanosync serving — Ctrl-C to stop/);
    return { proc, server: match[1]! };
  } catch (err) {
    await proc[Symbol.asyncDispose]();
    throw err;
  }
}

/** Poll `probe` until it returns a value other than undefined (waiting, not a timed assertion). */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
