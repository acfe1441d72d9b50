import { type ConnectionUrl, ConnectionUrlError, hasUrlScheme, parseConnectionUrl } from '@nanosync/core';

/**
 * SQL Server connection URLs:
 *
 *   sqlserver://[user[:password]@]host[:port][/database][?key=value&…]
 *
 * `mssql://` is accepted as a synonym (the test helpers print that form). The user and
 * password are percent-decoded; query keys are the connector's own property names
 * (`encrypt`, `trust_server_certificate`, `ca_file`, `application_name`, …), with the
 * common camelCase spellings of other drivers (`trustServerCertificate`) accepted too.
 * An instance name (`host\\SQLEXPRESS`) is not supported: give the port instead.
 */
export const DSN_PARAMETERS = [
  'encrypt',
  'trust_server_certificate',
  'ca_file',
  'tls_server_name',
  'application_name',
  'connect_timeout_seconds',
  'authentication',
  'tenant_id',
  'client_id',
] as const;
export type DsnParameter = (typeof DSN_PARAMETERS)[number];

const ALIASES: Record<string, DsnParameter> = {
  trustservercertificate: 'trust_server_certificate',
  trust_server_certificate: 'trust_server_certificate',
  encrypt: 'encrypt',
  ca_file: 'ca_file',
  cafile: 'ca_file',
  tls_server_name: 'tls_server_name',
  hostnameincertificate: 'tls_server_name',
  application_name: 'application_name',
  applicationname: 'application_name',
  app: 'application_name',
  connect_timeout_seconds: 'connect_timeout_seconds',
  connect_timeout: 'connect_timeout_seconds',
  authentication: 'authentication',
  tenant_id: 'tenant_id',
  client_id: 'client_id',
};

export interface DsnParams {
  host?: string;
  port?: string;
  user?: string;
  password?: string;
  database?: string;
  params: Partial<Record<DsnParameter, string>>;
}

export class DsnError extends Error {}

export function parseDsn(dsn: string): DsnParams {
  const text = dsn.trim();
  if (!/^(sqlserver|mssql):\/\//i.test(text)) {
    if (hasUrlScheme(text)) throw new DsnError('the URL scheme must be sqlserver:// (or mssql://)');
    throw new DsnError('expected a URL like sqlserver://user@host:1433/database');
  }
  let url: ConnectionUrl;
  try {
    url = parseConnectionUrl(text, ['sqlserver', 'mssql']);
  } catch (err) {
    throw err instanceof ConnectionUrlError ? new DsnError(err.message) : err;
  }
  if (url.host?.includes('\\')) {
    throw new DsnError('named instances (host\\instance) are not supported: give the port');
  }
  const out: DsnParams = { params: {} };
  if (url.user !== undefined) out.user = url.user;
  if (url.password !== undefined) out.password = url.password;
  if (url.host !== undefined) out.host = url.host;
  if (url.port !== undefined) out.port = url.port;
  if (url.database !== undefined) out.database = url.database;
  for (const [key, value] of url.params) {
    const name = ALIASES[key.toLowerCase()];
    if (!name) throw new DsnError(`unsupported parameter "${key}" (supported: ${DSN_PARAMETERS.join(', ')})`);
    out.params[name] = value;
  }
  return out;
}
