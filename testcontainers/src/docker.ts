import pg from 'pg';
import type { StartedTestContainer } from 'testcontainers';
import { freePort, log, sleep } from './env.js';
import { ServiceStartError } from './errors.js';
import {
  clusterId,
  defaultKafkaProperties,
  KAFKA_VERSION,
  type KafkaService,
  propertiesText,
  type StartKafkaOptions,
  waitForKafka,
} from './kafka.js';
import { DEFAULT_PG_SETTINGS, databaseManager, type PostgresService, type StartPostgresOptions } from './postgres.js';

/**
 * The Docker variants, used when a Docker engine answers. Host ports are fixed (a free host
 * port mapped to the same number inside the container) so that `docker stop`/`docker start`
 * keep the address, as the local variants do. Ryuk (the Testcontainers reaper) removes the
 * containers if this process dies.
 */

async function runtime() {
  const testcontainers = await import('testcontainers');
  const client = await testcontainers.getContainerRuntimeClient();
  return { ...testcontainers, client, host: client.info.containerRuntime.host };
}

async function stopContainer(container: StartedTestContainer): Promise<void> {
  const { client } = await runtime();
  await client.container.stop(client.container.getById(container.getId()), { timeout: 10 });
}

/** SIGKILL the container's main process (a crash); `startContainer` brings it back on the same data. */
async function killContainer(container: StartedTestContainer): Promise<void> {
  const { client } = await runtime();
  await client.container.getById(container.getId()).kill({ signal: 'SIGKILL' });
}

async function startContainer(container: StartedTestContainer): Promise<void> {
  const { client } = await runtime();
  await client.container.start(client.container.getById(container.getId()));
}

export async function startDockerPostgres(options: StartPostgresOptions): Promise<PostgresService> {
  const started = Date.now();
  const { GenericContainer, Wait, host } = await runtime();
  const port = await freePort();
  const settings: Record<string, string> = {
    ...DEFAULT_PG_SETTINGS,
    listen_addresses: '*',
    ...options.settings,
    port: String(port),
  };
  const image = process.env.NANOSYNC_TEST_PG_IMAGE ?? 'postgres:17';
  const container = await new GenericContainer(image)
    .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust', PGPORT: String(port) })
    .withCommand(['postgres', ...Object.entries(settings).flatMap(([key, value]) => ['-c', `${key}=${value}`])])
    .withExposedPorts({ container: port, host: port })
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .withStartupTimeout(180_000)
    .start();
  const url = `postgres://postgres@${host}:${port}/postgres`;
  const waitConnectable = async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
      try {
        await client.connect();
        await client.query('SELECT 1');
        return;
      } catch (error) {
        if (Date.now() > deadline)
          throw new ServiceStartError(`postgres container did not accept connections again: ${String(error)}`);
        await sleep(200);
      } finally {
        await client.end().catch(() => {});
      }
    }
  };
  await waitConnectable();
  log(`postgres (${image}) ready at ${host}:${port} in ${Date.now() - started} ms (docker)`);
  const databases = databaseManager(url);
  let disposed = false;
  const stop = () => stopContainer(container);
  const start = async () => {
    await startContainer(container);
    await waitConnectable();
  };
  return {
    url,
    host,
    port,
    user: 'postgres',
    database: 'postgres',
    owned: true,
    createDatabase: (name) => databases.create(name),
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async [Symbol.asyncDispose]() {
      if (disposed) return;
      disposed = true;
      await container.stop({ timeout: 1 }).catch(() => {});
    },
  };
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export async function startDockerKafka(options: StartKafkaOptions): Promise<KafkaService> {
  const started = Date.now();
  const { GenericContainer, host } = await runtime();
  const ports = {
    plaintext: await freePort(),
    controller: await freePort(),
    ...(options.extraListener ? { extra: await freePort() } : {}),
  };
  const properties: Record<string, string> = {
    ...defaultKafkaProperties(ports, '/var/lib/kafka/data'),
    ...options.serverProperties?.(ports),
  };
  // Inside the container the listeners must accept connections from the port mapping.
  properties.listeners = (properties.listeners ?? '').replace(/\/\/127\.0\.0\.1:/g, '//0.0.0.0:');
  properties['advertised.listeners'] = (properties['advertised.listeners'] ?? '').replace(
    /\/\/127\.0\.0\.1:/g,
    `//${host}:`,
  );
  properties['controller.quorum.voters'] = `1@localhost:${ports.controller}`;
  const image = process.env.NANOSYNC_TEST_KAFKA_IMAGE ?? `apache/kafka:${KAFKA_VERSION}`;
  const format = [
    '/opt/kafka/bin/kafka-storage.sh',
    'format',
    '--ignore-formatted',
    '-t',
    clusterId(),
    '-c',
    '/tmp/nanosync/server.properties',
    ...(options.formatArgs ?? []),
  ];
  const script = `${format.map(shellQuote).join(' ')} >/dev/null && exec /opt/kafka/bin/kafka-server-start.sh /tmp/nanosync/server.properties`;
  const exposed = [ports.plaintext, ...(ports.extra !== undefined ? [ports.extra] : [])].map((port) => ({
    container: port,
    host: port,
  }));
  const container = await new GenericContainer(image)
    .withUser('root')
    .withEnvironment({ KAFKA_HEAP_OPTS: '-Xms256m -Xmx1g', KAFKA_OPTS: (options.jvmArgs ?? []).join(' ') })
    .withCopyContentToContainer([{ content: propertiesText(properties), target: '/tmp/nanosync/server.properties' }])
    .withEntrypoint(['sh', '-c', script])
    .withExposedPorts(...exposed)
    .withStartupTimeout(180_000)
    .start();
  const brokers = [`${host}:${ports.plaintext}`];
  const waitReady = async () => {
    if (!(await waitForKafka(brokers, 120_000, async () => undefined)))
      throw new ServiceStartError(`kafka container did not answer at ${brokers[0]}`);
  };
  await waitReady();
  log(`kafka (${image}) ready at ${brokers[0]} in ${Date.now() - started} ms (docker)`);
  let disposed = false;
  return {
    brokers,
    owned: true,
    ...(ports.extra !== undefined ? { extraPort: ports.extra } : {}),
    stop: () => stopContainer(container),
    kill: () => killContainer(container),
    async start() {
      await startContainer(container);
      await waitReady();
    },
    async [Symbol.asyncDispose]() {
      if (disposed) return;
      disposed = true;
      await container.stop({ timeout: 1 }).catch(() => {});
    },
  };
}

export const MSSQL_DOCKER_PASSWORD = 'Nanosync_Test_1';

/** SQL Server Developer edition with the Agent on (CDC capture jobs need it) and a CDC-enabled database. */
export async function startDockerSqlServer(): Promise<{
  host: string;
  port: number;
  container: StartedTestContainer;
  sqlcmd: (sql: string) => Promise<void>;
}> {
  const started = Date.now();
  const { GenericContainer, Wait, host } = await runtime();
  const port = await freePort();
  const image = process.env.NANOSYNC_TEST_MSSQL_IMAGE ?? 'mcr.microsoft.com/mssql/server:2022-latest';
  const container = await new GenericContainer(image)
    .withEnvironment({
      ACCEPT_EULA: 'Y',
      MSSQL_PID: 'Developer',
      MSSQL_SA_PASSWORD: MSSQL_DOCKER_PASSWORD,
      MSSQL_AGENT_ENABLED: 'true',
      MSSQL_TCP_PORT: String(port),
    })
    .withExposedPorts({ container: port, host: port })
    .withWaitStrategy(Wait.forLogMessage(/SQL Server is now ready for client connections/))
    .withStartupTimeout(300_000)
    .start();
  const sqlcmd = async (sql: string) => {
    for (const tool of ['/opt/mssql-tools18/bin/sqlcmd', '/opt/mssql-tools/bin/sqlcmd']) {
      const result = await container.exec([
        tool,
        '-C',
        '-b',
        '-S',
        `localhost,${port}`,
        '-U',
        'sa',
        '-P',
        MSSQL_DOCKER_PASSWORD,
        '-Q',
        sql,
      ]);
      if (result.exitCode === 0) return;
      if (!/no such file|not found/i.test(result.output))
        throw new ServiceStartError(`sqlcmd failed: ${result.output}`);
    }
    throw new ServiceStartError('sqlcmd not found in the SQL Server image');
  };
  // The server logs "ready" slightly before logins succeed: retry the first statement.
  for (let attempt = 1; ; attempt++) {
    try {
      await sqlcmd('CREATE DATABASE nanosync');
      break;
    } catch (error) {
      if (attempt >= 30) throw error;
      await sleep(1000);
    }
  }
  await sqlcmd('USE nanosync; EXEC sys.sp_cdc_enable_db;');
  log(
    `sqlserver (${image}) ready at ${host}:${port} in ${Date.now() - started} ms (docker, database nanosync with CDC enabled)`,
  );
  return { host, port, container, sqlcmd };
}
