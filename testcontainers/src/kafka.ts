import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { cacheRoot, dockerAvailable, ENV_KAFKA_BROKERS, freePort, log, sleep } from './env.js';
import { ServiceStartError, ServiceUnavailableError } from './errors.js';
import { isAlive, run, type ServiceProcess, spawnService } from './processes.js';

/** Pinned Kafka version of the local (and Docker) broker; keep in sync with kafka/pom.xml. */
export const KAFKA_VERSION = '3.9.2';

/** Set by the global setup next to the brokers so reused services can still offer `libDir`. */
export const ENV_KAFKA_LIBDIR = 'NANOSYNC_TEST_KAFKA_LIBDIR';
/** Set by the global setup when the shared broker could not start: the reason, for a clear failure. */
export const ENV_KAFKA_UNAVAILABLE = 'NANOSYNC_TEST_KAFKA_UNAVAILABLE';

export interface KafkaService extends AsyncDisposable {
  /** Bootstrap servers, e.g. ['127.0.0.1:39092']. */
  brokers: string[];
  /** False when reusing NANOSYNC_TEST_KAFKA_BROKERS: stop/start are then refused. */
  owned: boolean;
  /** Folder with the Kafka jars (classpath `<libDir>/*`), for tools such as ProducerPerformance. */
  libDir?: string;
  /** Port of the additional listener, when `extraListener` was asked for. */
  extraPort?: number;
  /** Folder of the broker's own log (`server.log`), for a broker started locally by this process. */
  logDir?: string;
  /** Stops the broker (controlled shutdown); clients see an outage. */
  stop(): Promise<void>;
  /** Starts it again on the same ports with the same data. */
  start(): Promise<void>;
  /** SIGKILLs the broker (a crash, no controlled shutdown); `start()` brings it back on the same data. */
  kill(): Promise<void>;
}

export interface KafkaPorts {
  plaintext: number;
  controller: number;
  extra?: number;
}

export interface StartKafkaOptions {
  /** Always start a new broker owned by the caller, ignoring NANOSYNC_TEST_KAFKA_BROKERS. */
  fresh?: boolean;
  /** Allocate a second port (`extraPort`); by default it is a second PLAINTEXT listener named EXTRA. */
  extraListener?: boolean;
  /** Broker properties merged over the defaults (e.g. a SASL_SSL listener on `ports.extra`). */
  serverProperties?: (ports: KafkaPorts) => Record<string, string>;
  /** Extra arguments for `kafka-storage format`, e.g. ['--add-scram', 'SCRAM-SHA-512=[name=u,password=p]']. */
  formatArgs?: string[];
  /** Extra JVM arguments for the broker. */
  jvmArgs?: string[];
  /**
   * Log4j levels added to the broker's quiet defaults, written to `<logDir>/server.log`, e.g.
   * `{ 'kafka.request.logger': 'DEBUG' }` for the request log (each request with its client id).
   * Honoured by the local broker only.
   */
  logLevels?: Record<string, string>;
}

export async function startKafka(options: StartKafkaOptions = {}): Promise<KafkaService> {
  const customised = Boolean(
    options.extraListener ||
      options.serverProperties ||
      options.formatArgs?.length ||
      options.jvmArgs?.length ||
      Object.keys(options.logLevels ?? {}).length,
  );
  const reuse = process.env[ENV_KAFKA_BROKERS];
  if (reuse && !options.fresh && !customised) return reuseKafka(reuse);
  const unavailable = process.env[ENV_KAFKA_UNAVAILABLE];
  if (unavailable && !options.fresh && !customised) {
    throw new ServiceUnavailableError('kafka', `Kafka could not be started for this run: ${unavailable}`);
  }
  if (await dockerAvailable()) {
    const { startDockerKafka } = await import('./docker.js');
    return startDockerKafka(options);
  }
  return startLocalKafka(options);
}

function reuseKafka(brokers: string): KafkaService {
  const refuse = async () => {
    throw new Error(
      `this Kafka is reused from ${ENV_KAFKA_BROKERS} and not owned by the test: use startKafka({ fresh: true }) to stop or start a broker`,
    );
  };
  const libDir = process.env[ENV_KAFKA_LIBDIR];
  return {
    brokers: brokers
      .split(',')
      .map((b) => b.trim())
      .filter(Boolean),
    owned: false,
    ...(libDir ? { libDir } : {}),
    stop: refuse,
    start: refuse,
    kill: refuse,
    async [Symbol.asyncDispose]() {},
  };
}

// ---------------------------------------------------------------------------------------------
// Jars from Maven Central

function pomFile(): string {
  // src/kafka.ts and dist/index.js both sit one level below the package root.
  return fileURLToPath(new URL('../kafka/pom.xml', import.meta.url));
}

function javaCommand(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

let libDirPromise: Promise<string> | undefined;

/**
 * The folder holding the broker and tool jars (classpath `<dir>/*`), resolved from Maven
 * Central on first use into ~/.cache/nanosync/kafka-<version>/lib and reused afterwards.
 * A lock folder keeps parallel workers from resolving at the same time.
 */
export function kafkaLibDir(): Promise<string> {
  libDirPromise ??= resolveLibDir();
  libDirPromise.catch(() => {
    libDirPromise = undefined;
  });
  return libDirPromise;
}

async function resolveLibDir(): Promise<string> {
  const home = join(cacheRoot(), `kafka-${KAFKA_VERSION}`);
  const lib = join(home, 'lib');
  const marker = join(home, 'lib.complete');
  if (existsSync(marker)) return lib;
  await mkdir(home, { recursive: true });
  const lock = join(home, 'resolve.lock');
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      await mkdir(lock);
      await writeFile(join(lock, 'pid'), String(process.pid));
      break;
    } catch {
      if (existsSync(marker)) return lib;
      const owner = Number(await readFile(join(lock, 'pid'), 'utf8').catch(() => 'NaN'));
      if (Number.isInteger(owner) && !isAlive(owner)) {
        await rm(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new ServiceStartError(`timed out waiting for another process to resolve the Kafka jars (lock ${lock})`);
      await sleep(500);
    }
  }
  try {
    if (existsSync(marker)) return lib;
    const started = Date.now();
    log(`resolving Kafka ${KAFKA_VERSION} jars from Maven Central into ${lib} (first run only)`);
    const staging = `${lib}.tmp-${process.pid}`;
    await rm(staging, { recursive: true, force: true });
    try {
      await run('mvn', [
        '-q',
        '-B',
        '-f',
        pomFile(),
        'dependency:copy-dependencies',
        `-DoutputDirectory=${staging}`,
        '-DincludeScope=runtime',
      ]);
    } catch (error) {
      const missing = /could not run mvn/.test(String(error));
      throw new ServiceStartError(
        missing
          ? 'Maven (mvn) is needed once to fetch the Kafka jars from Maven Central: install it (Debian: apt-get install maven), or set NANOSYNC_TEST_KAFKA_BROKERS to reuse a broker'
          : `could not resolve the Kafka jars: ${String(error)}`,
      );
    }
    await rm(lib, { recursive: true, force: true });
    await rename(staging, lib);
    await writeFile(marker, `${new Date().toISOString()}\n`);
    log(`Kafka jars ready in ${Date.now() - started} ms`);
    return lib;
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Local KRaft broker+controller

/** Defaults for a single-node test cluster; `serverProperties` is merged over them. */
export function defaultKafkaProperties(ports: KafkaPorts, logDir: string): Record<string, string> {
  const listeners = [`PLAINTEXT://127.0.0.1:${ports.plaintext}`, `CONTROLLER://127.0.0.1:${ports.controller}`];
  const advertised = [`PLAINTEXT://127.0.0.1:${ports.plaintext}`];
  const protocols = ['CONTROLLER:PLAINTEXT', 'PLAINTEXT:PLAINTEXT'];
  if (ports.extra !== undefined) {
    listeners.push(`EXTRA://127.0.0.1:${ports.extra}`);
    advertised.push(`EXTRA://127.0.0.1:${ports.extra}`);
    protocols.push('EXTRA:PLAINTEXT');
  }
  return {
    'process.roles': 'broker,controller',
    'node.id': '1',
    'controller.quorum.voters': `1@127.0.0.1:${ports.controller}`,
    listeners: listeners.join(','),
    'advertised.listeners': advertised.join(','),
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': protocols.join(','),
    'log.dirs': logDir,
    'auto.create.topics.enable': 'true',
    'num.partitions': '1',
    'default.replication.factor': '1',
    'min.insync.replicas': '1',
    'offsets.topic.replication.factor': '1',
    'offsets.topic.num.partitions': '5',
    'transaction.state.log.replication.factor': '1',
    'transaction.state.log.min.isr': '1',
    'transaction.state.log.num.partitions': '5',
    'group.initial.rebalance.delay.ms': '0',
    'num.network.threads': '2',
    'num.io.threads': '4',
    'num.recovery.threads.per.data.dir': '1',
    'log.retention.check.interval.ms': '300000',
    // A lone voter has nobody to wait for: elect itself quickly after a restart.
    'controller.quorum.election.timeout.ms': '250',
    'controller.quorum.election.backoff.max.ms': '250',
    'controller.quorum.fetch.timeout.ms': '500',
  };
}

const QUIET_LOG4J = `log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=\${kafka.logs.dir}/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=WARN
log4j.logger.org.apache.kafka=WARN
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
`;

/** A Kafka cluster id: 16 random bytes, url-safe base64 without padding, not starting with '-'. */
export function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

export function propertiesText(properties: Record<string, string>): string {
  return `${Object.entries(properties)
    .map(([key, value]) => `${key}=${value.replace(/\\/g, '\\\\')}`)
    .join('\n')}\n`;
}

async function startLocalKafka(options: StartKafkaOptions): Promise<KafkaService> {
  const started = Date.now();
  const lib = await kafkaLibDir();
  const root = await mkdtemp(join(tmpdir(), 'nanosync-kafka-'));
  const dataDir = join(root, 'data');
  const propsFile = join(root, 'server.properties');
  const log4jFile = join(root, 'log4j.properties');
  const outFile = join(root, 'kafka.out');
  const classpath = `${lib}/*`;
  try {
    const levels = Object.entries(options.logLevels ?? {}).map(
      ([logger, level]) => `log4j.logger.${logger}=${level}\n`,
    );
    await writeFile(log4jFile, QUIET_LOG4J + levels.join(''));
    let ports!: KafkaPorts;
    let broker: ServiceProcess | undefined;
    let formatted = false;
    for (let attempt = 1; ; attempt++) {
      ports = {
        plaintext: await freePort(),
        controller: await freePort(),
        ...(options.extraListener ? { extra: await freePort() } : {}),
      };
      const properties = { ...defaultKafkaProperties(ports, dataDir), ...options.serverProperties?.(ports) };
      await writeFile(propsFile, propertiesText(properties));
      if (!formatted) {
        await formatStorage({ classpath, log4jFile, root, properties, formatArgs: options.formatArgs ?? [] });
        formatted = true;
      }
      try {
        broker = await launchBroker({
          classpath,
          propsFile,
          log4jFile,
          root,
          outFile,
          ports,
          jvmArgs: options.jvmArgs ?? [],
        });
        break;
      } catch (error) {
        if (attempt < 4 && /Address already in use|BindException/i.test(String(error))) continue;
        throw error;
      }
    }
    log(
      `kafka ${KAFKA_VERSION} ready at 127.0.0.1:${ports.plaintext} in ${Date.now() - started} ms (local KRaft, data ${dataDir})`,
    );
    return localKafkaService({
      classpath,
      propsFile,
      log4jFile,
      root,
      outFile,
      ports,
      jvmArgs: options.jvmArgs ?? [],
      lib,
      broker,
    });
  } catch (error) {
    await rm(root, { recursive: true, force: true }).catch(() => {});
    throw error;
  }
}

async function runStorageTool(
  classpath: string,
  log4jFile: string,
  root: string,
  propsFile: string,
  formatArgs: string[],
): Promise<void> {
  await run(javaCommand(), [
    '-cp',
    classpath,
    `-Dlog4j.configuration=file:${log4jFile}`,
    `-Dkafka.logs.dir=${root}`,
    'kafka.tools.StorageTool',
    'format',
    '-t',
    clusterId(),
    '-c',
    propsFile,
    ...formatArgs,
  ]).catch((error) => {
    const missing = /could not run java/.test(String(error));
    throw new ServiceStartError(
      missing
        ? 'Java 17+ is needed for the local Kafka broker (Debian: apt-get install openjdk-17-jre-headless), or set NANOSYNC_TEST_KAFKA_BROKERS'
        : String(error),
    );
  });
}

/**
 * Formats the log folder. Formatting needs a JVM start (1–3 s), so its output (meta.properties
 * and bootstrap.checkpoint) is cached per distinct format input and copied: every test broker
 * is its own one-node cluster, so sharing a cluster id between them is harmless. Unusual
 * layouts (several log dirs, a separate metadata dir) are formatted directly.
 */
async function formatStorage(spec: {
  classpath: string;
  log4jFile: string;
  root: string;
  properties: Record<string, string>;
  formatArgs: string[];
}): Promise<void> {
  const logDirs = (spec.properties['log.dirs'] ?? '').split(',').filter(Boolean);
  const propsFile = join(spec.root, 'server.properties');
  if (logDirs.length !== 1 || spec.properties['metadata.log.dir']) {
    await runStorageTool(spec.classpath, spec.log4jFile, spec.root, propsFile, spec.formatArgs);
    return;
  }
  const relevant = [
    'node.id',
    'process.roles',
    'inter.broker.protocol.version',
    'unstable.feature.versions.enable',
    'unstable.metadata.versions.enable',
  ];
  const key = createHash('sha256')
    .update(JSON.stringify([spec.formatArgs, relevant.map((k) => spec.properties[k] ?? null)]))
    .digest('hex')
    .slice(0, 16);
  const cached = join(cacheRoot(), `kafka-${KAFKA_VERSION}`, 'formatted', key);
  if (!existsSync(join(cached, 'meta.properties'))) {
    const work = await mkdtemp(join(tmpdir(), 'nanosync-kafka-format-'));
    try {
      const workData = join(work, 'data');
      await writeFile(join(work, 'server.properties'), propertiesText({ ...spec.properties, 'log.dirs': workData }));
      await runStorageTool(spec.classpath, spec.log4jFile, work, join(work, 'server.properties'), spec.formatArgs);
      await mkdir(dirname(cached), { recursive: true });
      const candidate = `${cached}.tmp-${process.pid}`;
      await cp(workData, candidate, { recursive: true });
      await rename(candidate, cached).catch(() => rm(candidate, { recursive: true, force: true }));
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  await cp(cached, logDirs[0] as string, { recursive: true });
}

interface LaunchSpec {
  classpath: string;
  propsFile: string;
  log4jFile: string;
  root: string;
  outFile: string;
  ports: KafkaPorts;
  jvmArgs: string[];
}

async function launchBroker(spec: LaunchSpec): Promise<ServiceProcess> {
  const broker = spawnService({
    command: javaCommand(),
    args: [
      '-Xms256m',
      '-Xmx1g',
      '-XX:+UseG1GC',
      '-XX:MaxGCPauseMillis=20',
      '-Djava.awt.headless=true',
      `-Dlog4j.configuration=file:${spec.log4jFile}`,
      `-Dkafka.logs.dir=${spec.root}`,
      ...spec.jvmArgs,
      '-cp',
      spec.classpath,
      'kafka.Kafka',
      spec.propsFile,
    ],
    cwd: spec.root,
    logFile: spec.outFile,
    emergencySignal: 'SIGKILL',
    removeDirOnOrphan: spec.root,
  });
  let exitedWith: number | string | undefined;
  void broker.exited.then((code) => {
    exitedWith = code;
  });
  let ready: boolean;
  try {
    ready = await waitForKafka([`127.0.0.1:${spec.ports.plaintext}`], 120_000, async () => {
      if (exitedWith === undefined) return undefined;
      if (/ENOENT/.test(String(exitedWith))) {
        return `could not run ${javaCommand()}: Java 17+ is needed for the local Kafka broker (Debian: apt-get install openjdk-17-jre-headless), or set NANOSYNC_TEST_KAFKA_BROKERS`;
      }
      const tail = async (file: string) =>
        (await readFile(file, 'utf8').catch(() => '')).split('\n').slice(-20).join('\n');
      return `kafka exited during startup (${exitedWith}); logs in ${spec.root}:\n${await tail(spec.outFile)}\n${await tail(join(spec.root, 'server.log'))}`;
    });
  } catch (error) {
    broker.dismissWatchdog();
    throw error;
  }
  if (ready) return broker;
  broker.child.kill('SIGKILL');
  await broker.waitForExit();
  broker.dismissWatchdog();
  throw new ServiceStartError(`kafka did not answer within 120 s; logs in ${spec.root}`);
}

/**
 * Polls until a kafkajs admin can list topics. `failed` reports a reason to give up early
 * (the process died). Resolves false on timeout.
 */
export async function waitForKafka(
  brokers: string[],
  timeoutMs: number,
  failed: () => Promise<string | undefined>,
): Promise<boolean> {
  const kafka = new Kafka({
    clientId: 'nanosync-testenv',
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1000,
    requestTimeout: 5000,
    retry: { retries: 0 },
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const reason = await failed();
    if (reason) throw new ServiceStartError(reason);
    const admin = kafka.admin();
    try {
      await admin.connect();
      await admin.listTopics();
      return true;
    } catch {
      await sleep(250);
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }
  return false;
}

function localKafkaService(state: LaunchSpec & { lib: string; broker: ServiceProcess | undefined }): KafkaService {
  let running = state.broker;
  /** The latest process; its watchdog guards the folder even while the broker is stopped. */
  let latest = state.broker;
  let disposed = false;
  const halt = async (graceful: boolean) => {
    const current = running;
    if (!current) return;
    if (graceful) {
      current.child.kill('SIGTERM');
      const timer = setTimeout(() => current.child.kill('SIGKILL'), 20_000);
      await current.waitForExit();
      clearTimeout(timer);
    } else {
      current.child.kill('SIGKILL');
      await current.waitForExit();
    }
    running = undefined;
  };
  return {
    brokers: [`127.0.0.1:${state.ports.plaintext}`],
    owned: true,
    libDir: state.lib,
    logDir: state.root,
    ...(state.ports.extra !== undefined ? { extraPort: state.ports.extra } : {}),
    stop: () => halt(true),
    kill: () => halt(false),
    async start() {
      if (disposed) throw new Error('this Kafka broker has been disposed');
      if (running) return;
      const started = Date.now();
      running = await launchBroker(state);
      latest?.dismissWatchdog();
      latest = running;
      log(`kafka restarted at 127.0.0.1:${state.ports.plaintext} in ${Date.now() - started} ms`);
    },
    async [Symbol.asyncDispose]() {
      if (disposed) return;
      disposed = true;
      await halt(false);
      await rm(state.root, { recursive: true, force: true });
      latest?.dismissWatchdog();
    },
  };
}
