import { readTlsFile } from '@nanosync/core';
import sql from 'mssql';
import type { SqlServerSourceConfig } from './config.js';
import { connectionError } from './errors.js';

export type MssqlConfig = sql.config;

/**
 * The `mssql` (tedious) configuration for the connector's config. TLS is on and verified
 * unless the config says otherwise; a custom CA replaces the system store for verification.
 * The default request timeout of the driver (15 s) is replaced: `requestTimeoutMs` is 0
 * (none) for snapshot readers and the stream, which are cancelled through their abort signal.
 */
export function buildMssqlConfig(
  config: SqlServerSourceConfig,
  options: { poolMax: number; requestTimeoutMs: number; readFile?: (path: string) => Buffer },
): MssqlConfig {
  const readFile = options.readFile ?? ((path: string) => readTlsFile('ca_file', path));
  const tls: sql.IOptions = {
    encrypt: config.encrypt === 'strict' ? 'strict' : config.encrypt,
    trustServerCertificate: config.trustServerCertificate,
    appName: config.applicationName,
    useUTC: true,
    enableArithAbort: true,
    abortTransactionOnError: true,
    // Pinned so values convert the same whatever the login's defaults are.
    dateFormat: 'ymd',
    language: 'us_english',
    textsize: 2147483647,
    enableAnsiWarnings: true,
  } as sql.IOptions;
  if (config.caFile) (tls as Record<string, unknown>).cryptoCredentialsDetails = { ca: readFile(config.caFile) };
  if (config.tlsServerName) (tls as Record<string, unknown>).serverName = config.tlsServerName;
  const out: MssqlConfig = {
    server: config.host,
    port: config.port,
    database: config.database,
    connectionTimeout: config.connectTimeoutSeconds * 1000,
    requestTimeout: options.requestTimeoutMs,
    options: tls,
    pool: { max: options.poolMax, min: 0, idleTimeoutMillis: 60_000 },
  };
  switch (config.authentication) {
    case 'sql':
      out.user = config.user;
      out.password = config.password;
      break;
    case 'entra_access_token':
      out.authentication = { type: 'azure-active-directory-access-token', options: { token: config.accessToken! } };
      break;
    case 'entra_service_principal':
      out.authentication = {
        type: 'azure-active-directory-service-principal-secret',
        options: { clientId: config.clientId!, clientSecret: config.clientSecret!, tenantId: config.tenantId! },
      };
      break;
    case 'entra_managed_identity':
      out.authentication = {
        type: 'azure-active-directory-msi-vm',
        options: config.clientId ? { clientId: config.clientId } : {},
      } as sql.config['authentication'];
      break;
    case 'entra_default':
      out.authentication = {
        type: 'azure-active-directory-default',
        options: config.clientId ? { clientId: config.clientId } : {},
      } as sql.config['authentication'];
      break;
  }
  return out;
}

/** A connected pool; a failure to connect is a {@link connectionError} (redacted, retriable when transient). */
export async function connectPool(
  config: SqlServerSourceConfig,
  mssqlConfig: MssqlConfig,
): Promise<sql.ConnectionPool> {
  const pool = new sql.ConnectionPool(mssqlConfig);
  // A broken idle connection is dropped by the pool; it must not crash the process.
  pool.on('error', () => {});
  try {
    await pool.connect();
  } catch (err) {
    await pool.close().catch(() => {});
    throw connectionError(err, config, 'connecting');
  }
  return pool;
}
