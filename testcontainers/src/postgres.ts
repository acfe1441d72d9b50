import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { appendFile, chown, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { cacheRoot, dockerAvailable, ENV_PG_URL, freePort, log, randomSuffix, sleep } from './env.js';
import { ServiceStartError } from './errors.js';
import { run, type ServiceProcess, spawnService } from './processes.js';

export interface PostgresService extends AsyncDisposable {
  /** Superuser URL, e.g. postgres://postgres@127.0.0.1:54321/postgres */
  url: string;
  host: string;
  port: number;
  user: string;
  database: string;
  /** False when reusing NANOSYNC_TEST_PG_URL: stop/start/restart are then refused. */
  owned: boolean;
  /** Creates an empty database (default name `ns_<random>`) and returns its superuser URL. */
  createDatabase(name?: string): Promise<string>;
  /** Fast shutdown (`pg_ctl stop -m fast`): clients see their connections close. */
  stop(): Promise<void>;
  /** Starts a stopped server again on the same port with the same data. */
  start(): Promise<void>;
  restart(): Promise<void>;
  stopAsync?: never;
}

export interface StartPostgresOptions {
  /** Always start a new server owned by the caller, ignoring NANOSYNC_TEST_PG_URL. */
  fresh?: boolean;
  /** Extra server settings (postgresql.conf), merged over the defaults below; implies a new owned server. */
  settings?: Record<string, string>;
}

/**
 * Settings every local test server gets.
 *
 * fsync is off on purpose. Startup costs the same either way, but each commit waits for a
 * disk flush with fsync on: 300 single-row commits took 1.2–1.5 s with it and 0.04–0.18 s
 * without on the team machine. What tests simulate is a process crash (`pg_ctl -m immediate`,
 * a killed postmaster), and the OS page cache survives that, so recovery behaves as in
 * production; only an operating-system crash could lose data, and test servers are thrown
 * away. synchronous_commit stays on, so commit and flush LSNs behave as in production.
 */
export const DEFAULT_PG_SETTINGS: Readonly<Record<string, string>> = {
  wal_level: 'logical',
  max_replication_slots: '64',
  max_wal_senders: '64',
  max_connections: '200',
  listen_addresses: '127.0.0.1',
  fsync: 'off',
  wal_sender_timeout: '60s',
  timezone: 'UTC',
};

export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresService> {
  const reuse = process.env[ENV_PG_URL];
  const customised = Object.keys(options.settings ?? {}).length > 0;
  if (reuse && !options.fresh && !customised) return reusePostgres(reuse);
  if (await dockerAvailable()) {
    const { startDockerPostgres } = await import('./docker.js');
    return startDockerPostgres(options);
  }
  return startLocalPostgres(options);
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Shared by the local, Docker and reuse variants: creates databases through a superuser URL. */
export function databaseManager(url: string) {
  return {
    async create(name = `ns_${randomSuffix()}`): Promise<string> {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
      } finally {
        await client.end();
      }
      return withDatabase(url, name);
    },
  };
}

function reusePostgres(url: string): PostgresService {
  const parsed = new URL(url);
  const databases = databaseManager(url);
  const refuse = async () => {
    throw new Error(
      `this PostgreSQL is reused from ${ENV_PG_URL} and not owned by the test: use startPostgres({ fresh: true }) to stop or restart a server`,
    );
  };
  return {
    url,
    host: parsed.hostname,
    port: Number(parsed.port || 5432),
    user: decodeURIComponent(parsed.username || 'postgres'),
    database: decodeURIComponent(parsed.pathname.slice(1) || 'postgres'),
    owned: false,
    createDatabase: (name) => databases.create(name),
    stop: refuse,
    start: refuse,
    restart: refuse,
    // The shared server is removed as a whole at the end of the run; databases stay until then.
    async [Symbol.asyncDispose]() {},
  };
}

// ---------------------------------------------------------------------------------------------
// Local server from the machine's binaries

interface PgBinaries {
  bindir: string;
  version: string;
}

let binariesPromise: Promise<PgBinaries> | undefined;

function findBinDir(): string | undefined {
  if (process.env.NANOSYNC_PG_BINDIR) return process.env.NANOSYNC_PG_BINDIR;
  const debianRoot = '/usr/lib/postgresql';
  if (existsSync(debianRoot)) {
    const versions = readdirSync(debianRoot)
      .filter((entry) => existsSync(join(debianRoot, entry, 'bin', 'postgres')))
      .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
    if (versions[0]) return join(debianRoot, versions[0], 'bin');
  }
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'postgres')) && existsSync(join(dir, 'initdb'))) return dir;
  }
  return undefined;
}

async function installDebianPostgres(): Promise<void> {
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    throw new ServiceStartError(
      'PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH). Install them (Debian/Ubuntu: `apt-get install postgresql`), set NANOSYNC_PG_BINDIR, or set NANOSYNC_TEST_PG_URL to reuse a server.',
    );
  }
  log('PostgreSQL server binaries not found: installing Debian package postgresql (no default cluster)');
  // Keep the package from creating and starting its own cluster: we start our own servers.
  await mkdir('/etc/postgresql-common', { recursive: true });
  if (!existsSync('/etc/postgresql-common/createcluster.conf')) {
    await appendFile('/etc/postgresql-common/createcluster.conf', 'create_main_cluster = false\n');
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  await run('apt-get', ['update', '-qq'], { env });
  await run('apt-get', ['install', '-y', '-qq', '-o', 'Dpkg::Options::=--force-confold', 'postgresql'], { env });
}

function pgBinaries(): Promise<PgBinaries> {
  binariesPromise ??= (async () => {
    let bindir = findBinDir();
    if (!bindir) {
      await installDebianPostgres();
      bindir = findBinDir();
      if (!bindir)
        throw new ServiceStartError(
          'installed postgresql but still found no server binaries under /usr/lib/postgresql',
        );
    }
    const versionOutput = await run(join(bindir, 'postgres'), ['--version']);
    const version = /(\d+(?:\.\d+)?)/.exec(versionOutput)?.[1] ?? 'unknown';
    return { bindir, version };
  })();
  binariesPromise.catch(() => {
    binariesPromise = undefined;
  });
  return binariesPromise;
}

/** The account the server runs as: `postgres` when we are root (the server refuses root). */
interface RunAs {
  uid?: number;
  gid?: number;
  name: string;
}

function serverAccount(): RunAs {
  if (process.getuid?.() !== 0) return { name: userInfo().username };
  const passwd = readFileSync('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith('postgres:'));
  if (!line)
    throw new ServiceStartError(
      'running as root but there is no `postgres` user to run the server as (install the postgresql package, or run the tests as a normal user)',
    );
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid), name: 'postgres' };
}

async function chownTree(path: string, account: RunAs): Promise<void> {
  if (account.uid === undefined) return;
  await run('chown', ['-R', `${account.uid}:${account.gid}`, path]);
}

/**
 * initdb once per server version into the cache, then copy for each server: a copy takes a
 * fraction of initdb's time. Concurrent first runs each build a candidate; the first rename wins.
 */
async function templateDir(binaries: PgBinaries, account: RunAs): Promise<string> {
  const dir = join(cacheRoot(), `pg-template-${binaries.version}`);
  if (existsSync(join(dir, 'PG_VERSION'))) return dir;
  const started = Date.now();
  const work = await mkdtemp(join(tmpdir(), 'nanosync-initdb-'));
  try {
    await chownTree(work, account);
    await run(
      join(binaries.bindir, 'initdb'),
      ['-D', join(work, 'data'), '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-instructions'],
      { uid: account.uid, gid: account.gid, cwd: work },
    );
    await mkdir(dirname(dir), { recursive: true });
    const candidate = `${dir}.tmp-${process.pid}-${randomSuffix(4)}`;
    await run('cp', ['-a', join(work, 'data'), candidate]);
    try {
      await rename(candidate, dir);
    } catch {
      await rm(candidate, { recursive: true, force: true });
    }
    log(
      `postgres ${binaries.version}: initdb template created in ${dir} (${Date.now() - started} ms, reused from now on)`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return dir;
}

function confValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

async function startLocalPostgres(options: StartPostgresOptions): Promise<PostgresService> {
  const started = Date.now();
  const binaries = await pgBinaries();
  const account = serverAccount();
  const template = await templateDir(binaries, account);
  const root = await mkdtemp(join(tmpdir(), 'nanosync-pg-'));
  const data = join(root, 'data');
  const logFile = join(root, 'postgres.log');
  try {
    await run('cp', ['-a', template, data]);
    if (account.uid !== undefined) {
      await chown(root, account.uid, account.gid ?? account.uid);
      if (statSync(data).uid !== account.uid) await chownTree(data, account);
    }
    let process_: ServiceProcess | undefined;
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const settings: Record<string, string> = {
        ...DEFAULT_PG_SETTINGS,
        ...options.settings,
        port: String(port),
        unix_socket_directories: root,
      };
      const conf = Object.entries(settings)
        .map(([key, value]) => `${key} = ${confValue(value)}`)
        .join('\n');
      await appendFile(join(data, 'postgresql.conf'), `\n# nanosync test settings (attempt ${attempt})\n${conf}\n`);
      if (account.uid !== undefined) await chown(logFile, account.uid, account.gid ?? account.uid).catch(() => {});
      try {
        process_ = await launchPostmaster(binaries, account, data, root, logFile);
        break;
      } catch (error) {
        const logText = await readFile(logFile, 'utf8').catch(() => '');
        if (attempt < 4 && /could not bind|Address already in use/i.test(logText)) continue;
        throw error;
      }
    }
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    log(`postgres ${binaries.version} ready at 127.0.0.1:${port} in ${Date.now() - started} ms (local, data ${data})`);
    return localPostgresService({ binaries, account, data, root, logFile, port, url, process: process_ });
  } catch (error) {
    await rm(root, { recursive: true, force: true }).catch(() => {});
    throw error;
  }
}

async function launchPostmaster(
  binaries: PgBinaries,
  account: RunAs,
  data: string,
  root: string,
  logFile: string,
): Promise<ServiceProcess> {
  const service = spawnService({
    command: join(binaries.bindir, 'postgres'),
    args: ['-D', data],
    cwd: root,
    env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
    logFile,
    uid: account.uid,
    gid: account.gid,
    emergencySignal: 'SIGQUIT',
    removeDirOnOrphan: root,
  });
  let exitedWith: number | string | undefined;
  void service.exited.then((code) => {
    exitedWith = code;
  });
  const deadline = Date.now() + 60_000;
  const pidFile = join(data, 'postmaster.pid');
  while (Date.now() < deadline) {
    if (exitedWith !== undefined) {
      service.dismissWatchdog();
      const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
      throw new ServiceStartError(`postgres exited during startup (${exitedWith}); log ${logFile}:\n${tail}`);
    }
    // Line 8 of postmaster.pid turns to "ready" once connections are accepted.
    const status = (await readFile(pidFile, 'utf8').catch(() => '')).split('\n')[7]?.trim();
    if (status === 'ready') return service;
    await sleep(25);
  }
  service.child.kill('SIGQUIT');
  await service.waitForExit();
  service.dismissWatchdog();
  throw new ServiceStartError(`postgres did not become ready within 60 s; see ${logFile}`);
}

function localPostgresService(state: {
  binaries: PgBinaries;
  account: RunAs;
  data: string;
  root: string;
  logFile: string;
  port: number;
  url: string;
  process: ServiceProcess | undefined;
}): PostgresService {
  const databases = databaseManager(state.url);
  let running: ServiceProcess | undefined = state.process;
  /** The latest process; its watchdog guards the folder even while the server is stopped. */
  let latest: ServiceProcess | undefined = state.process;
  let disposed = false;

  const pgCtlStop = async (mode: 'fast' | 'immediate') => {
    const current = running;
    if (!current) return;
    await run(join(state.binaries.bindir, 'pg_ctl'), ['stop', '-D', state.data, '-m', mode, '-w', '-t', '60'], {
      uid: state.account.uid,
      gid: state.account.gid,
      cwd: state.root,
    }).catch(async (error) => {
      // pg_ctl fails when the server is already gone; anything else: make sure it is.
      current.child.kill('SIGQUIT');
      if (!/server is not running|PID file .* does not exist/i.test(String(error))) throw error;
    });
    await current.waitForExit();
    running = undefined;
  };

  const start = async () => {
    if (disposed) throw new Error('this PostgreSQL server has been disposed');
    if (running) return;
    const started = Date.now();
    running = await launchPostmaster(state.binaries, state.account, state.data, state.root, state.logFile);
    latest?.dismissWatchdog();
    latest = running;
    log(`postgres restarted at 127.0.0.1:${state.port} in ${Date.now() - started} ms`);
  };

  return {
    url: state.url,
    host: '127.0.0.1',
    port: state.port,
    user: 'postgres',
    database: 'postgres',
    owned: true,
    createDatabase: (name) => databases.create(name),
    stop: () => pgCtlStop('fast'),
    start,
    async restart() {
      await pgCtlStop('fast');
      await start();
    },
    async [Symbol.asyncDispose]() {
      if (disposed) return;
      disposed = true;
      await pgCtlStop('immediate').catch(() => {});
      await rm(state.root, { recursive: true, force: true });
      latest?.dismissWatchdog();
    },
  };
}
