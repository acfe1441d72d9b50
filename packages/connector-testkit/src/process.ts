import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Real processes for end-to-end and crash tests: one child-process harness for every
 * package. `TestProcess` runs any command and collects its output; `NanosyncProcess` runs
 * the `nanosync` CLI; `NanosyncServer` runs `nanosync run` / `serve` and talks to its admin
 * API, and can be SIGKILLed and restarted on the same state.
 */

export interface ExitResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface TestProcessOptions {
  /** Added to the environment (an `undefined` value removes a variable). */
  env?: Record<string, string | undefined>;
  /** Which variables of this process the child inherits (default: all). */
  inherit?: (name: string) => boolean;
  cwd?: string;
  /** Characters of stdout and of stderr kept (the tail), default 4,000,000 each. */
  keepChars?: number;
  /** Append everything the child prints to this file too (for triage). */
  logFile?: string;
}

/** A child process whose output is collected; SIGKILLed on dispose and when the test worker exits. */
export class TestProcess implements AsyncDisposable {
  stdout = '';
  stderr = '';
  readonly child: ChildProcess;
  readonly exited: Promise<ExitResult>;
  readonly #keep: number;
  #waiters: (() => void)[] = [];

  constructor(command: string, args: string[], options: TestProcessOptions = {}) {
    this.#keep = options.keepChars ?? 4_000_000;
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env))
      if (!options.inherit || options.inherit(name)) env[name] = value;
    for (const [name, value] of Object.entries(options.env ?? {})) {
      if (value === undefined) delete env[name];
      else env[name] = value;
    }
    this.child = spawn(command, args, { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const logFile = options.logFile;
    const collect = (stream: 'stdout' | 'stderr') => (chunk: string) => {
      if (logFile) appendFileSync(logFile, chunk);
      this[stream] = (this[stream] + chunk).slice(-this.#keep);
      this.#notify();
    };
    this.child.stdout!.setEncoding('utf8').on('data', collect('stdout'));
    this.child.stderr!.setEncoding('utf8').on('data', collect('stderr'));
    const killOnExit = () => this.child.kill('SIGKILL');
    process.once('exit', killOnExit);
    this.exited = new Promise((resolveExit) => {
      this.child.on('close', (code, signal) => {
        process.off('exit', killOnExit);
        this.#notify();
        resolveExit({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  /** stdout followed by stderr. */
  get output(): string {
    return `${this.stdout}${this.stderr}`;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Complete lines printed on stdout so far. */
  get stdoutLines(): string[] {
    return this.stdout.split('\n').slice(0, -1);
  }

  /** The end of the output, for failure messages. */
  get logTail(): string {
    return this.output.slice(-20_000);
  }

  /** Lines of stderr (the log) containing `text`. */
  logLines(text: string): string[] {
    return this.stderr.split('\n').filter((line) => line.includes(text));
  }

  /** Resolves once the output matches `pattern`; rejects when the process exits first or after `timeoutMs`. */
  async waitFor(pattern: RegExp, timeoutMs = 120_000): Promise<RegExpMatchArray> {
    return this.#until(() => this.output.match(pattern) ?? undefined, `${pattern}`, timeoutMs);
  }

  /** Resolves with the first complete stdout line that satisfies `predicate`. */
  async waitForLine(predicate: (line: string) => boolean, what: string, timeoutMs = 120_000): Promise<string> {
    return this.#until(() => this.stdoutLines.find(predicate), what, timeoutMs);
  }

  async #until<T>(probe: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = probe();
      if (found !== undefined) return found;
      if (!this.running) throw new Error(`process exited before printing ${what}\n${this.logTail}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}\n${this.logTail}`);
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, Math.min(left, 1000));
        this.#waiters.push(() => {
          clearTimeout(timer);
          wake();
        });
      });
    }
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Send `signal` (default SIGKILL: the crash under test) and wait for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<ExitResult> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }

  /** SIGTERM, then SIGKILL if the process is still there after `graceMs`. */
  async stop(graceMs = 15_000): Promise<ExitResult> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill('SIGKILL');
  }
}

/** The repository checkout this kit runs from, when it runs from source (its `apps/cli/src/bin.ts`). */
function repoRoot(): string | undefined {
  const starts = [process.cwd(), dirname(fileURLToPath(import.meta.url))];
  for (const start of starts) {
    for (let dir = resolve(start); ; dir = dirname(dir)) {
      if (existsSync(join(dir, 'apps/cli/src/bin.ts')) && existsSync(join(dir, 'pnpm-workspace.yaml'))) return dir;
      if (dirname(dir) === dir) break;
    }
  }
  return undefined;
}

/**
 * `node --conditions=@nanosync/source --import tsx <entry> …`: a TypeScript file of the
 * repository run from source (tsx resolved from the repository root, so the child may run
 * in any folder).
 */
export function sourceScriptCommand(entry: string, args: string[] = []): { command: string; args: string[] } {
  const root = repoRoot() ?? process.cwd();
  const tsx = pathToFileURL(createRequire(join(root, 'package.json')).resolve('tsx')).href;
  return { command: process.execPath, args: ['--conditions=@nanosync/source', '--import', tsx, entry, ...args] };
}

/**
 * The command that runs the `nanosync` CLI: `NANOSYNC_CLI` (a `.js` or `.ts` entry) when set,
 * else the repository's `apps/cli/src/bin.ts` from source, else the installed `nanosync`
 * package's bin.
 */
export function nanosyncCommand(args: string[]): { command: string; args: string[] } {
  const explicit = process.env.NANOSYNC_CLI;
  if (explicit)
    return explicit.endsWith('.ts')
      ? sourceScriptCommand(resolve(explicit), args)
      : { command: process.execPath, args: [resolve(explicit), ...args] };
  const root = repoRoot();
  if (root) return sourceScriptCommand(join(root, 'apps/cli/src/bin.ts'), args);
  try {
    const manifest = createRequire(join(process.cwd(), 'package.json')).resolve('nanosync/package.json');
    return { command: process.execPath, args: [join(dirname(manifest), 'dist/bin.js'), ...args] };
  } catch {
    throw new Error(
      'cannot find the nanosync CLI: install the "nanosync" package or set NANOSYNC_CLI to its entry file',
    );
  }
}

/**
 * The `nanosync` CLI as a child process, as a user's shell runs it. It inherits this
 * process's environment except `NANOSYNC_*` and vitest's own variables (so a developer's
 * settings do not leak in); `env` adds to it.
 */
export class NanosyncProcess extends TestProcess {
  constructor(args: string[], options: TestProcessOptions = {}) {
    const { command, args: argv } = nanosyncCommand(args);
    super(command, argv, {
      inherit: (name) => !name.startsWith('NANOSYNC_') && !name.startsWith('VITEST'),
      ...options,
      env: { FORCE_COLOR: '0', ...options.env },
      cwd: options.cwd ?? repoRoot(),
    });
  }
}

/** Run a CLI command to completion. */
export async function runNanosync(args: string[], options: TestProcessOptions = {}): Promise<ExitResult> {
  await using proc = new NanosyncProcess(args, options);
  return await proc.exited;
}

export interface NanosyncServerOptions extends TestProcessOptions {
  /** The admin token (default: a random one, passed as NANOSYNC_TOKEN). */
  token?: string;
  /** How long to wait for the admin API (default 120 s). */
  startTimeoutMs?: number;
}

/**
 * `nanosync run --file …` or `nanosync serve …` with its admin API on a free loopback port.
 * `kill()` is the crash; `restart()` starts the same command again on the same state.
 *
 * ```ts
 * await using server = await NanosyncServer.start(['run', '--file', config, '--state', stateFile]);
 * await server.waitForPipeline('orders', (p) => p.state === 'LIVE_CDC');
 * await server.kill('SIGKILL');
 * await server.restart();
 * ```
 */
export class NanosyncServer implements AsyncDisposable {
  #proc: NanosyncProcess;
  #url = '';
  readonly token: string;
  /** Every process started so far, oldest first. */
  readonly processes: NanosyncProcess[] = [];

  private constructor(
    readonly args: string[],
    readonly options: NanosyncServerOptions,
  ) {
    this.token = options.token ?? randomBytes(16).toString('hex');
    this.#proc = this.#spawn();
  }

  /** Start the server and wait until its admin API listens. */
  static async start(args: string[], options: NanosyncServerOptions = {}): Promise<NanosyncServer> {
    const server = new NanosyncServer(args, options);
    try {
      await server.#ready();
    } catch (error) {
      await server.#proc.kill('SIGKILL');
      throw error;
    }
    return server;
  }

  /** The current process. */
  get process(): NanosyncProcess {
    return this.#proc;
  }

  /** Base URL of the admin API (`http://127.0.0.1:<port>`). */
  get url(): string {
    return this.#url;
  }

  #spawn(): NanosyncProcess {
    const listen = this.args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
    const proc = new NanosyncProcess([...this.args, ...listen], {
      ...this.options,
      env: { NANOSYNC_TOKEN: this.token, ...this.options.env },
    });
    this.processes.push(proc);
    return proc;
  }

  async #ready(): Promise<void> {
    const match = await this.#proc.waitFor(
      /admin api listening url=(http:\/\/127\.0\.0\.1:\d+)/,
      this.options.startTimeoutMs ?? 120_000,
    );
    this.#url = match[1]!;
  }

  /** Send `signal` to the current process (default SIGKILL) and wait for it to exit. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<ExitResult> {
    return this.#proc.kill(signal);
  }

  /** Start the same command again (after `kill`), on the same state, and wait for its API. */
  async restart(): Promise<void> {
    if (this.#proc.running) throw new Error('restart() needs the previous process to have exited: kill() it first');
    this.#proc = this.#spawn();
    await this.#ready();
  }

  /** A request to the admin API with the bearer token; `token: null` sends none. */
  async api<T = unknown>(
    path: string,
    init: { method?: string; body?: unknown; token?: string | null } = {},
  ): Promise<{ status: number; body: T; text: string }> {
    const token = init.token === undefined ? this.token : init.token;
    const response = await fetch(`${this.#url}${path}`, {
      method: init.method ?? 'GET',
      headers: {
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
        ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { status: response.status, body: body as T, text };
  }

  /** The pipeline's status document (`GET /v1/pipelines/NAME`). */
  async pipeline<T = Record<string, unknown>>(name: string): Promise<T> {
    const { status, body, text } = await this.api<{ pipeline: T }>(`/v1/pipelines/${encodeURIComponent(name)}`);
    if (status !== 200) throw new Error(`GET /v1/pipelines/${name}: ${status} ${text}`);
    return body.pipeline;
  }

  /** Poll the pipeline's status until `check` holds (a wait, not a timed assertion). */
  async waitForPipeline<T = Record<string, unknown>>(
    name: string,
    check: (status: T) => boolean,
    what = 'the expected status',
    timeoutMs = 120_000,
  ): Promise<T> {
    return eventually(
      async () => {
        const status = await this.pipeline<T>(name);
        return check(status) ? status : undefined;
      },
      `pipeline ${name}: ${what}`,
      timeoutMs,
      () => this.#proc.logTail,
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.processes.map((p) => p.kill('SIGKILL')));
  }
}

/** Poll `probe` until it returns something other than undefined (a wait, never a timed assertion). */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 120_000,
  context?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(
        `gave up waiting for ${what}${last ? `: ${String(last)}` : ''}${context ? `\n${context()}` : ''}`,
      );
    await new Promise((wake) => setTimeout(wake, 250));
  }
}
