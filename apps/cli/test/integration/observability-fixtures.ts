import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { PipelineStatus } from '@nanosync/core/host';
import { type PostgresService, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { type CliProcess, cliCommand, eventually, REPO_ROOT, startServing } from './cli-process.js';

const run = promisify(execFile);

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

export interface PipelineSpec {
  name: string;
  tables: string[];
}

/**
 * A fresh database, a temp folder for config, state and file-sink output, and (once
 * `serve()` ran) a real `nanosync serve` child with its admin token. Disposal stops the
 * server and drops the replication slots the test created.
 */
export class ObservabilityContext implements AsyncDisposable {
  server?: { proc: CliProcess; url: string; token: string };

  private constructor(
    readonly postgres: PostgresService,
    readonly databaseUrl: string,
    readonly dir: string,
    readonly db: pg.Client,
  ) {}

  /** `settings` start a PostgreSQL of the test's own with those server settings. */
  static async create(settings?: Record<string, string>): Promise<ObservabilityContext> {
    const postgres = await startPostgres(settings ? { fresh: true, settings } : {});
    const databaseUrl = await postgres.createDatabase();
    const dir = await mkdtemp(join(tmpdir(), 'ns-obs-it-'));
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    return new ObservabilityContext(postgres, databaseUrl, dir, db);
  }

  get stateFile(): string {
    return join(this.dir, 'state', 'state.db');
  }

  get outDir(): string {
    return join(this.dir, 'out');
  }

  /** `CREATE TABLE public.<name> (id bigint primary key, note text)` with `rows` rows. */
  async createTable(name: string, rows: number): Promise<void> {
    await this.db.query(`CREATE TABLE public.${name} (id bigint PRIMARY KEY, note text)`);
    await this.db.query(`INSERT INTO public.${name} SELECT g, 'row ' || g FROM generate_series(1, $1) g`, [rows]);
  }

  async writeConfig(
    pipelines: PipelineSpec[],
    rowsPerPartition = 100,
    replicationType = 'cdc_backfill',
    /** `snapshot.concurrency`; the default when undefined. */
    snapshotConcurrency?: number,
  ): Promise<string> {
    const text = `connections:
  - name: pg
    type: postgres
    dsn: ${JSON.stringify(this.databaseUrl)}
  - name: out
    type: file
    properties:
      path: ${JSON.stringify(this.outDir)}
pipelines:
${pipelines
  .map(
    (p) => `  - name: ${p.name}
    replication_type: ${replicationType}
${replicationType === 'cdc_backfill' ? `    snapshot:\n      target_rows_per_partition: ${rowsPerPartition}\n${snapshotConcurrency === undefined ? '' : `      concurrency: ${snapshotConcurrency}\n`}` : ''}    source:
      connection: pg
      tables: [${p.tables.join(', ')}]
    sink:
      connection: out
`,
  )
  .join('')}`;
    const file = join(this.dir, 'pipelines.yaml');
    await writeFile(file, text);
    return file;
  }

  /** Start `nanosync serve` (token generated into the state folder) and wait for its API. */
  async serve(args: string[] = [], env: Record<string, string> = {}): Promise<{ url: string; token: string }> {
    const { proc, server } = await startServing(['serve', '--state', this.stateFile, ...args], { env });
    killOnExit(proc);
    const token = env.NANOSYNC_TOKEN ?? (await readFile(join(dirname(this.stateFile), 'token'), 'utf8')).trim();
    this.server = { proc, url: server, token };
    return { url: server, token };
  }

  async api<T>(
    path: string,
    init: { method?: string; body?: unknown; token?: string | null } = {},
  ): Promise<{ status: number; body: T; text: string }> {
    const server = this.mustServer();
    const token = init.token === undefined ? server.token : init.token;
    const response = await fetch(`${server.url}${path}`, {
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

  async status(name: string): Promise<PipelineStatus> {
    const { status, body, text } = await this.api<{ pipeline: PipelineStatus }>(`/v1/pipelines/${name}`);
    if (status !== 200) throw new Error(`GET /v1/pipelines/${name}: ${status} ${text}`);
    return body.pipeline;
  }

  /** Wait until `check` holds for the pipeline's status; returns that status. */
  waitForStatus(
    name: string,
    what: string,
    check: (p: PipelineStatus) => boolean,
    timeoutMs = 90_000,
  ): Promise<PipelineStatus> {
    return eventually(
      async () => {
        const p = await this.status(name);
        return check(p) ? p : undefined;
      },
      `${name}: ${what}`,
      timeoutMs,
    );
  }

  private mustServer() {
    if (this.server === undefined) throw new Error('serve() first');
    return this.server;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.server) await this.server.proc[Symbol.asyncDispose]();
    const slots = await this.db
      .query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots WHERE database = current_database()')
      .catch(() => ({ rows: [] as { slot_name: string }[] }));
    for (const { slot_name } of slots.rows) {
      await this.db
        .query(
          'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
          [slot_name],
        )
        .catch(() => undefined);
      await this.db.query('SELECT pg_drop_replication_slot($1)', [slot_name]).catch(() => undefined);
    }
    await this.db.end().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
    await this.postgres[Symbol.asyncDispose]();
  }
}

/** SIGKILL a CLI child if the test worker exits first (a timed-out test skips its disposers). */
export function killOnExit(proc: CliProcess): void {
  const kill = () => proc.kill('SIGKILL');
  process.once('exit', kill);
  void proc.exited.then(() => process.off('exit', kill));
}

/** Value of one series in a Prometheus text exposition; labels must match exactly (order-free). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      found[pair[1]!] = pair[2]!;
    const keys = Object.keys(labels);
    if (Object.keys(found).length === keys.length && keys.every((k) => found[k] === labels[k])) return Number(match[3]);
  }
  return undefined;
}

function shellQuote(value: string): string {
  return /^[A-Za-z0-9_\-./:=@%+,]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * A real terminal for an interactive command: a detached tmux session on its own server
 * socket, so nothing the developer runs is touched. The pane stays after the command ends
 * (`remain-on-exit`), which is how a test sees that it exited and with which code.
 */
export class TmuxSession implements AsyncDisposable {
  private onDispose: () => void = () => {};

  private constructor(
    private readonly socket: string,
    private readonly confFile: string,
  ) {}

  static async assertAvailable(): Promise<void> {
    try {
      await run('tmux', ['-V']);
    } catch {
      throw new Error('tmux is needed for the dashboard tests (apt-get install -y tmux)');
    }
  }

  /** Run the CLI with `args` in a new `columns`×`rows` terminal. Only `env` (plus PATH/HOME/locale) reaches it. */
  static async start(
    args: string[],
    options: { env?: Record<string, string>; columns?: number; rows?: number } = {},
  ): Promise<TmuxSession> {
    await TmuxSession.assertAvailable();
    const socket = uniqueName('nsmon');
    const confFile = join(tmpdir(), `${socket}.conf`);
    await writeFile(confFile, 'set -g remain-on-exit on\nset -g history-limit 1000\n');
    const session = new TmuxSession(socket, confFile);
    // A test that times out never reaches its disposer: take the tmux server down with the worker.
    const cleanup = () => {
      try {
        execFileSync('tmux', ['-L', socket, 'kill-server'], { stdio: 'ignore' });
      } catch {}
    };
    process.once('exit', cleanup);
    session.onDispose = () => process.off('exit', cleanup);
    const { command, args: argv } = cliCommand(args);
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      LANG: 'C.UTF-8',
      TERM: 'xterm-256color',
      ...options.env,
    };
    const line = ['exec', 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), command, ...argv]
      .map(shellQuote)
      .join(' ');
    await run('tmux', [
      '-L',
      socket,
      '-u',
      '-f',
      confFile,
      'new-session',
      '-d',
      '-s',
      'main',
      '-x',
      String(options.columns ?? 150),
      '-y',
      String(options.rows ?? 40),
      '-c',
      REPO_ROOT,
      line,
    ]);
    return session;
  }

  private tmux(...args: string[]) {
    return run('tmux', ['-L', this.socket, ...args]);
  }

  async capture(): Promise<string> {
    return (await this.tmux('capture-pane', '-p', '-t', 'main')).stdout;
  }

  async sendKeys(...keys: string[]): Promise<void> {
    await this.tmux('send-keys', '-t', 'main', ...keys);
  }

  /** The pane's command has ended: its exit status (`signal N` when a signal ended it); undefined while it runs. */
  async exitStatus(): Promise<number | string | undefined> {
    const { stdout } = await this.tmux(
      'display-message',
      '-p',
      '-t',
      'main',
      '#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}|#{pane_pid}',
    );
    const [dead, status, signal, pid] = stdout.trim().split('|');
    if (dead !== '1') return undefined;
    if (status) return Number(status);
    if (signal) return `signal ${signal}`;
    // The terminal closed but tmux has not reaped the process yet (it can lag far behind):
    // a zombie's wait status is the last field of /proc/PID/stat.
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] !== 'Z') return undefined;
    const wait = Number(fields.at(-1));
    return (wait & 0x7f) === 0 ? (wait >> 8) & 0xff : `signal ${wait & 0x7f}`;
  }

  /** tmux's view of the pane, for failure messages. */
  async describePane(): Promise<string> {
    const { stdout } = await this.tmux(
      'display-message',
      '-p',
      '-t',
      'main',
      'dead=#{pane_dead} status=#{pane_dead_status} signal=#{pane_dead_signal} pid=#{pane_pid} command=#{pane_current_command}',
    );
    const pid = /pid=(\d+)/.exec(stdout)?.[1];
    const proc = pid
      ? await readFile(`/proc/${pid}/status`, 'utf8').then(
          (t) =>
            t
              .split('\n')
              .filter((l) => /^(Name|State|PPid):/.test(l))
              .join(' '),
          () => 'no such process',
        )
      : '';
    return `${stdout.trim()} proc: ${proc}`;
  }

  /** Poll the screen until `check` accepts it (a bounded wait, not a timing assertion). */
  async waitForScreen(what: string, check: (screen: string) => boolean, timeoutMs = 60_000): Promise<string> {
    let last = '';
    try {
      return await eventually(
        async () => {
          last = await this.capture();
          return check(last) ? last : undefined;
        },
        what,
        timeoutMs,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- screen ---\n${last}`);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.tmux('kill-server').catch(() => undefined);
    this.onDispose();
    await rm(this.confFile, { force: true });
  }
}
