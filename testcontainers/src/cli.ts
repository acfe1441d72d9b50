#!/usr/bin/env node
/**
 * nanosync-testenv: local PostgreSQL and Kafka for development, in the background.
 *
 *   eval "$(nanosync-testenv up)"          # both; or `up postgres`, `up kafka`
 *   nanosync-testenv status                # prints the variables again
 *   nanosync-testenv down                  # stops what `up` started, nothing else
 *
 * `up` starts a detached keeper process (this file, command `__keeper`) that owns the services
 * through the same code the tests use, records itself in a state file and prints the
 * variables on stdout; everything else goes to stderr. `down` asks the keeper to stop, waits,
 * and kills leftovers by their recorded pids.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot, ENV_KAFKA_BROKERS, ENV_PG_URL, log, sleep } from './env.js';
import { ENV_KAFKA_LIBDIR, type KafkaService, startKafka } from './kafka.js';
import { type PostgresService, startPostgres } from './postgres.js';
import { isAlive, trackedPids } from './processes.js';

type ServiceName = 'postgres' | 'kafka';

/** How messages spell this command: `nanosync-testenv`, or what scripts/ns says it is called. */
const self = process.env.NANOSYNC_TESTENV_COMMAND?.trim() || 'nanosync-testenv';

interface TestenvState {
  keeperPid: number;
  startedAt: string;
  services: ServiceName[];
  /** Service process pids (postmaster, JVM), for `down` to verify nothing is left. */
  pids: number[];
  env: Record<string, string>;
  logFile: string;
}

/** NANOSYNC_TESTENV_DIR moves the state file (and the keeper's log), e.g. for the package's own tests. */
const stateDir = () => process.env.NANOSYNC_TESTENV_DIR ?? join(cacheRoot(), 'testenv');
const stateFile = () => join(stateDir(), 'state.json');

function readState(): TestenvState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(), 'utf8')) as TestenvState;
  } catch {
    return undefined;
  }
}

function shellLine(name: string, value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]*$/.test(value) ? `${name}=${value}` : `${name}='${value.replace(/'/g, `'\\''`)}'`;
}

function printEnv(env: Record<string, string>): void {
  const names = Object.keys(env);
  for (const name of names) process.stdout.write(`${shellLine(name, env[name] ?? '')}\n`);
  if (names.length > 0) process.stdout.write(`export ${names.join(' ')}\n`);
}

function parseServices(args: string[]): ServiceName[] {
  const services = args.length === 0 ? ['postgres', 'kafka'] : args;
  for (const service of services) {
    if (service !== 'postgres' && service !== 'kafka')
      throw new Error(`unknown service "${service}" (expected postgres and/or kafka)`);
  }
  return [...new Set(services)] as ServiceName[];
}

async function up(args: string[]): Promise<number> {
  const services = parseServices(args);
  const existing = readState();
  if (existing && isAlive(existing.keeperPid)) {
    const missing = services.filter((s) => !existing.services.includes(s));
    if (missing.length > 0) {
      log(
        `already running (${existing.services.join(', ')}, keeper pid ${existing.keeperPid}); run \`${self} down\` first to add ${missing.join(', ')}`,
      );
      return 1;
    }
    log(`already running (keeper pid ${existing.keeperPid})`);
    printEnv(existing.env);
    return 0;
  }
  await mkdir(stateDir(), { recursive: true });
  await rm(stateFile(), { force: true });
  const logFile = join(stateDir(), 'testenv.log');
  const logFd = openSync(logFile, 'a');
  const keeper = spawn(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), '__keeper', ...services],
    {
      detached: true,
      stdio: ['ignore', logFd, logFd, 'ipc'],
      env: process.env,
    },
  );
  closeSync(logFd);
  const outcome = await new Promise<{ ok: true; state: TestenvState } | { ok: false; error: string }>((resolve) => {
    keeper.once('message', (message) => resolve(message as never));
    keeper.once('exit', (code, signal) =>
      resolve({ ok: false, error: `keeper exited (${code ?? signal}); see ${logFile}` }),
    );
    keeper.once('error', (error) => resolve({ ok: false, error: error.message }));
  });
  keeper.removeAllListeners();
  if (keeper.connected) keeper.disconnect();
  keeper.unref();
  if (!outcome.ok) {
    log(`up failed: ${outcome.error}`);
    return 1;
  }
  log(
    `started ${services.join(' + ')} (keeper pid ${outcome.state.keeperPid}, log ${logFile}); stop with \`${self} down\``,
  );
  printEnv(outcome.state.env);
  return 0;
}

async function keeperMain(args: string[]): Promise<void> {
  const services = parseServices(args);
  const owned: (PostgresService | KafkaService)[] = [];
  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await Promise.allSettled(owned.map((service) => service[Symbol.asyncDispose]()));
    const state = readState();
    if (state?.keeperPid === process.pid) await rm(stateFile(), { force: true });
    log('testenv stopped');
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown(0));
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGHUP', () => {});
  try {
    const env: Record<string, string> = {};
    await Promise.all([
      services.includes('postgres')
        ? startPostgres({ fresh: true }).then((pg) => {
            owned.push(pg);
            env[ENV_PG_URL] = pg.url;
          })
        : undefined,
      services.includes('kafka')
        ? startKafka({ fresh: true }).then((kafka) => {
            owned.push(kafka);
            env[ENV_KAFKA_BROKERS] = kafka.brokers.join(',');
            if (kafka.libDir) env[ENV_KAFKA_LIBDIR] = kafka.libDir;
          })
        : undefined,
    ]);
    const ordered = Object.fromEntries(
      [ENV_PG_URL, ENV_KAFKA_BROKERS, ENV_KAFKA_LIBDIR].filter((k) => env[k]).map((k) => [k, env[k] as string]),
    );
    const state: TestenvState = {
      keeperPid: process.pid,
      startedAt: new Date().toISOString(),
      services,
      pids: trackedPids(),
      env: ordered,
      logFile: join(stateDir(), 'testenv.log'),
    };
    await writeFile(stateFile(), `${JSON.stringify(state, null, 2)}\n`);
    process.send?.({ ok: true, state });
    process.disconnect?.();
    setInterval(() => {}, 1 << 30);
  } catch (error) {
    process.send?.({ ok: false, error: error instanceof Error ? error.message : String(error) });
    await shutdown(1);
  }
}

async function down(): Promise<number> {
  const state = readState();
  if (!state) {
    log('nothing to stop (no state file)');
    return 0;
  }
  if (isAlive(state.keeperPid)) {
    process.kill(state.keeperPid, 'SIGTERM');
    const deadline = Date.now() + 30_000;
    while (isAlive(state.keeperPid) && Date.now() < deadline) await sleep(100);
    if (isAlive(state.keeperPid)) process.kill(state.keeperPid, 'SIGKILL');
  }
  // Whatever the keeper could not stop: only pids we recorded, and only if they still are our services.
  for (const pid of state.pids) {
    const cmdline = (() => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        return '';
      }
    })();
    if (/postgres|kafka/.test(cmdline)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  }
  const deadline = Date.now() + 10_000;
  while (state.pids.some(isAlive) && Date.now() < deadline) await sleep(100);
  if (existsSync(stateFile())) await rm(stateFile(), { force: true });
  log(`stopped ${state.services.join(' + ')} (keeper pid ${state.keeperPid})`);
  return 0;
}

function status(): number {
  const state = readState();
  if (!state || !isAlive(state.keeperPid)) {
    log('not running');
    return 1;
  }
  log(`running since ${state.startedAt}: ${state.services.join(' + ')} (keeper pid ${state.keeperPid})`);
  printEnv(state.env);
  return 0;
}

const usage = `usage: ${self} up [postgres] [kafka]   start in the background, print variables for eval
       ${self} status                    print the variables of the running services
       ${self} down                      stop what up started`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'up':
      return up(rest);
    case 'down':
      return down();
    case 'status':
      return status();
    case '__keeper':
      await keeperMain(rest);
      return -1;
    default:
      process.stderr.write(`${usage}\n`);
      return command === undefined || command === 'help' || command === '--help' ? 0 : 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    log(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  },
);
