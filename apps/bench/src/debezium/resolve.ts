import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { log, run, sleep } from '../util.js';

export const DEBEZIUM_VERSION = '3.2.3.Final';
export const FALLBACK_KAFKA_VERSION = '3.9.2';

const POM = join(dirname(fileURLToPath(import.meta.url)), '../../debezium/pom.xml');

export interface DebeziumJars {
  debeziumVersion: string;
  kafkaVersion: string;
  /** Kafka Connect worker classpath: `<libDir>/*`. */
  libDir: string;
  /** plugin.path: holds debezium-connector-postgres/ with the connector and its dependencies. */
  pluginDir: string;
}

export function cacheRoot(): string {
  return process.env.NANOSYNC_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'nanosync');
}

/** The Kafka version of a jars folder, read off its kafka-clients jar. */
export async function kafkaVersionOf(libDir: string | undefined): Promise<string | undefined> {
  if (!libDir) return undefined;
  try {
    for (const name of await readdir(libDir)) {
      const match = /^kafka-clients-(\d+\.\d+\.\d+)\.jar$/.exec(name);
      if (match) return match[1];
    }
  } catch {
    // not there
  }
  return undefined;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** An exclusive lock folder next to the cache entry; a lock whose owner died is taken over. */
async function withLock<T>(lockDir: string, timeoutMs: number, body: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  await mkdir(dirname(lockDir), { recursive: true });
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number(await readFile(join(lockDir, 'pid'), 'utf8').catch(() => ''));
      if (owner && !pidAlive(owner)) {
        await rm(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`another process holds ${lockDir} (pid ${owner || '?'})`);
      await sleep(500);
    }
  }
  try {
    return await body();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

/**
 * Resolves Kafka Connect (at the broker's Kafka version) and Debezium's PostgreSQL connector
 * from Maven Central into ~/.cache/nanosync/debezium-<ver>-connect-<kafka ver>/, once.
 * Concurrent callers wait on a lock; a half-finished resolution never becomes visible because
 * it is built in a temporary folder and renamed into place.
 */
export async function resolveDebezium(
  kafkaVersion: string = FALLBACK_KAFKA_VERSION,
  debeziumVersion: string = DEBEZIUM_VERSION,
): Promise<DebeziumJars> {
  const dir = join(cacheRoot(), `debezium-${debeziumVersion}-connect-${kafkaVersion}`);
  const jars: DebeziumJars = {
    debeziumVersion,
    kafkaVersion,
    libDir: join(dir, 'lib'),
    pluginDir: join(dir, 'plugin'),
  };
  if (existsSync(join(dir, '.complete'))) return jars;
  return withLock(`${dir}.lock`, 15 * 60_000, async () => {
    if (existsSync(join(dir, '.complete'))) return jars;
    const tmp = `${dir}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    await copyFile(POM, join(tmp, 'pom.xml'));
    log(`resolving Kafka Connect ${kafkaVersion} + Debezium ${debeziumVersion} from Maven Central into ${dir} (once)`);
    const started = Date.now();
    const common = [
      '-q',
      '-B',
      '-f',
      join(tmp, 'pom.xml'),
      `-Dkafka.version=${kafkaVersion}`,
      `-Ddebezium.version=${debeziumVersion}`,
    ];
    try {
      await run(
        'mvn',
        [
          ...common,
          'dependency:copy-dependencies',
          `-DoutputDirectory=${join(tmp, 'lib')}`,
          '-DincludeScope=runtime',
          '-DexcludeTypes=tar.gz',
        ],
        {
          cwd: tmp,
          timeoutMs: 15 * 60_000,
        },
      );
      await run(
        'mvn',
        [
          ...common,
          'dependency:unpack-dependencies',
          `-DoutputDirectory=${join(tmp, 'plugin')}`,
          '-DincludeTypes=tar.gz',
        ],
        {
          cwd: tmp,
          timeoutMs: 15 * 60_000,
        },
      );
    } catch (error) {
      await rm(tmp, { recursive: true, force: true });
      if ((error as NodeJS.ErrnoException).code === 'ENOENT')
        throw new Error('mvn not found on PATH (Maven resolves the Debezium jars)');
      throw error;
    }
    if (!existsSync(join(tmp, 'plugin', 'debezium-connector-postgres'))) {
      await rm(tmp, { recursive: true, force: true });
      throw new Error('the Debezium plugin archive did not unpack to plugin/debezium-connector-postgres');
    }
    await rm(join(tmp, 'target'), { recursive: true, force: true });
    await writeFile(
      join(tmp, '.complete'),
      JSON.stringify({ debeziumVersion, kafkaVersion, resolvedAt: new Date().toISOString() }),
    );
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    log(`resolved in ${Math.round((Date.now() - started) / 1000)} s`);
    return jars;
  });
}
