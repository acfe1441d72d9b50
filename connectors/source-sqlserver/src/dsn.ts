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
  const scheme = /^(sqlserver|mssql):\/\//i.exec(text);
  if (!scheme) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) throw new DsnError('the URL scheme must be sqlserver:// (or mssql://)');
    throw new DsnError('expected a URL like sqlserver://user@host:1433/database');
  }
  const rest = text.slice(scheme[0].length);
  const slash = rest.search(/[/?]/);
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const pathAndQuery = slash < 0 ? '' : rest.slice(slash);
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? '' : authority.slice(0, at);
  const hostport = at < 0 ? authority : authority.slice(at + 1);
  const out: DsnParams = { params: {} };
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    out.user = decode(colon < 0 ? userinfo : userinfo.slice(0, colon));
    if (colon >= 0) out.password = decode(userinfo.slice(colon + 1));
  }
  if (hostport.includes(',')) throw new DsnError('several hosts in one DSN are not supported');
  if (hostport.includes('\\')) throw new DsnError('named instances (host\\instance) are not supported: give the port');
  if (hostport) {
    const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(hostport);
    if (!m) throw new DsnError('cannot read host and port');
    const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : decode(m[1]!);
    if (host) out.host = host;
    if (m[2]) out.port = m[2];
  }
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q < 0 ? '' : pathAndQuery.slice(q + 1);
  if (path.length > 1) out.database = decode(path.slice(1));
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const key = decode(eq < 0 ? pair : pair.slice(0, eq));
    if (eq < 0) throw new DsnError(`parameter "${key}" has no value`);
    const name = ALIASES[key.toLowerCase()];
    if (!name) throw new DsnError(`unsupported parameter "${key}" (supported: ${DSN_PARAMETERS.join(', ')})`);
    out.params[name] = decode(pair.slice(eq + 1));
  }
  return out;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, '%20'));
  } catch {
    throw new DsnError('invalid percent-encoding');
  }
}
