import { dockerAvailable, ENV_MSSQL_URL } from './env.js';
import { ServiceUnavailableError } from './errors.js';

export interface SqlServerService extends AsyncDisposable {
  /** `mssql://user:password@host:port/database` */
  url: string;
  host: string;
  port: number;
  user: string;
  password: string;
  /** A database with CDC enabled (`nanosync` in the Docker variant). */
  database: string;
  owned: boolean;
}

export const SQLSERVER_UNAVAILABLE = 'SQL Server unavailable here: needs a Docker engine or NANOSYNC_TEST_MSSQL_URL';

/**
 * Why SQL Server cannot be provided on this machine, or undefined when it can. Cheap and
 * synchronous enough for `describe.skipIf` at collection time (await it at module top level).
 */
export async function sqlServerUnavailableReason(): Promise<string | undefined> {
  if (process.env[ENV_MSSQL_URL]) return undefined;
  if (await dockerAvailable()) return undefined;
  return SQLSERVER_UNAVAILABLE;
}

/**
 * A SQL Server with the Agent running and CDC enabled on `database`: reused from
 * NANOSYNC_TEST_MSSQL_URL, else a Docker container. There is no local fallback; without either
 * it throws {@link ServiceUnavailableError}, which tests turn into a named skip.
 */
export async function startSqlServer(): Promise<SqlServerService> {
  const reuse = process.env[ENV_MSSQL_URL];
  if (reuse) {
    const parsed = new URL(reuse);
    return {
      url: reuse,
      host: parsed.hostname,
      port: Number(parsed.port || 1433),
      user: decodeURIComponent(parsed.username),
      password: decodeURIComponent(parsed.password),
      database: decodeURIComponent(parsed.pathname.slice(1) || 'master'),
      owned: false,
      async [Symbol.asyncDispose]() {},
    };
  }
  if (!(await dockerAvailable())) throw new ServiceUnavailableError('sqlserver', SQLSERVER_UNAVAILABLE);
  const { startDockerSqlServer, MSSQL_DOCKER_PASSWORD } = await import('./docker.js');
  const { host, port, container } = await startDockerSqlServer();
  return {
    url: `mssql://sa:${encodeURIComponent(MSSQL_DOCKER_PASSWORD)}@${host}:${port}/nanosync`,
    host,
    port,
    user: 'sa',
    password: MSSQL_DOCKER_PASSWORD,
    database: 'nanosync',
    owned: true,
    async [Symbol.asyncDispose]() {
      await container.stop({ timeout: 1 }).catch(() => {});
    },
  };
}
