import type { ConnectionOptions } from 'node:tls';
import { ErrorCode, NanosyncError, readTlsFile } from '@nanosync/core';
import pg from 'pg';
import type { PostgresSourceConfig, SslMode } from './config.js';
import { connectionError } from './errors.js';

/**
 * Session settings pinned on every connection we open, replication connections included:
 * they fix the text form of values (see types/), so the snapshot (COPY, SELECT) and the
 * stream (pgoutput runs the same output functions in the walsender) print a value the
 * same way whatever the server's or role's defaults are. `lc_monetary=C` keeps `money`
 * text independent of the server locale.
 */
export const SESSION_SETTINGS: Readonly<Record<string, string>> = {
  TimeZone: 'UTC',
  DateStyle: 'ISO',
  IntervalStyle: 'iso_8601',
  extra_float_digits: '3',
  bytea_output: 'hex',
  client_encoding: 'UTF8',
  lc_monetary: 'C',
};

/** The `options` startup parameter carrying {@link SESSION_SETTINGS} after any user options. */
export function sessionOptions(userOptions?: string): string {
  const ours = Object.entries(SESSION_SETTINGS)
    .map(([key, value]) => `-c ${key}=${value}`)
    .join(' ');
  return userOptions ? `${userOptions} ${ours}` : ours;
}

/**
 * A resolved connection: a `pg` ClientConfig (usable as-is with `pg.Client` or
 * the replication session) plus the libpq sslmode it came from. For `allow` and `prefer`
 * `ssl` is the first attempt and `sslFallback` the second; use {@link connectClient} or
 * {@link resolveClientConfig}, which try both in libpq's order.
 */
export interface PgConnectionConfig extends pg.ClientConfig {
  host: string;
  port: number;
  user: string;
  database: string;
  sslmode: SslMode;
  ssl: false | ConnectionOptions;
  sslFallback?: false | ConnectionOptions;
  options: string;
}

/**
 * TLS options for one libpq sslmode.
 *
 * - disable: no TLS. allow: plain first, TLS if the server refuses. prefer: TLS first
 *   (certificate not checked), plain if the server has no TLS.
 * - require: TLS, certificate not checked, except that with `sslrootcert` the chain is
 *   verified (libpq does the same: a root certificate turns require into verify-ca).
 * - verify-ca: the chain must lead to `sslrootcert` (or the system CAs for `system`),
 *   host name not checked. verify-full: chain and host name (Node's default identity check
 *   against the host, which pg passes along).
 * `sslcert`/`sslkey` add a client certificate in every TLS mode.
 */
export function tlsOptions(
  config: Pick<PostgresSourceConfig, 'host' | 'sslmode' | 'sslrootcert' | 'sslcert' | 'sslkey'>,
): {
  ssl: false | ConnectionOptions;
  sslFallback?: false | ConnectionOptions;
} {
  const mode = config.sslmode;
  if (mode === 'disable') return { ssl: false };
  const base: ConnectionOptions = {};
  if (config.sslcert) base.cert = readTlsFile('sslcert', config.sslcert);
  if (config.sslkey) base.key = readTlsFile('sslkey', config.sslkey);
  const systemRoots = config.sslrootcert === 'system';
  const ca = config.sslrootcert && !systemRoots ? readTlsFile('sslrootcert', config.sslrootcert) : undefined;
  const unverified: ConnectionOptions = { ...base, rejectUnauthorized: false };
  const verifyCa: ConnectionOptions = {
    ...base,
    rejectUnauthorized: true,
    checkServerIdentity: () => undefined,
    ...(ca ? { ca } : {}),
  };
  // pg sets SNI to the host name itself (and checks IP hosts against the certificate's IP names).
  const verifyFull: ConnectionOptions = { ...base, rejectUnauthorized: true, ...(ca ? { ca } : {}) };
  switch (mode) {
    case 'allow':
      return { ssl: false, sslFallback: unverified };
    case 'prefer':
      return { ssl: unverified, sslFallback: false };
    case 'require':
      return { ssl: ca || systemRoots ? verifyCa : unverified };
    case 'verify-ca':
      if (!ca && !systemRoots) throw missingRootCert(mode);
      return { ssl: verifyCa };
    case 'verify-full':
      if (!ca && !systemRoots) throw missingRootCert(mode);
      return { ssl: verifyFull };
  }
}

function missingRootCert(mode: SslMode): NanosyncError {
  return new NanosyncError(
    ErrorCode.ConfigInvalid,
    `sslmode=${mode} needs sslrootcert: the CA certificate file that signed the server certificate (or "system" for the system CAs)`,
    { details: { property: 'sslrootcert' } },
  );
}

/** Every value comes back as the server's text; decoding is ours (types/). */
const RAW_TEXT_TYPES = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

/** Validated config → connection settings. Reads the TLS files now (missing file → error naming the property). */
export function buildConnectionConfig(config: PostgresSourceConfig): PgConnectionConfig {
  const tls = tlsOptions(config);
  const out: PgConnectionConfig = {
    host: config.host,
    port: config.port,
    user: config.user,
    database: config.database,
    sslmode: config.sslmode,
    ssl: tls.ssl,
    options: sessionOptions(config.options),
    application_name: config.applicationName,
    types: RAW_TEXT_TYPES,
    keepAlive: true,
  };
  if (config.password !== undefined) out.password = config.password;
  if (tls.sslFallback !== undefined) out.sslFallback = tls.sslFallback;
  if (config.connectTimeoutSeconds !== undefined) out.connectionTimeoutMillis = config.connectTimeoutSeconds * 1000;
  return out;
}

/** @types/pg does not know the `replication` startup parameter that pg sends. */
export type ClientConfigWithReplication = pg.ClientConfig & { replication?: 'database' };

function attempts(conn: PgConnectionConfig): pg.ClientConfig[] {
  const { sslmode: _mode, sslFallback, ...first } = conn;
  const list: pg.ClientConfig[] = [first];
  if (sslFallback !== undefined) list.push({ ...first, ssl: sslFallback });
  return list;
}

/**
 * Open a connection, trying libpq's order for `allow`/`prefer`. `replication: true` opens a
 * walsender connection in database mode (CREATE_REPLICATION_SLOT, START_REPLICATION).
 */
export async function connectClient(
  conn: PgConnectionConfig,
  opts: { replication?: boolean } = {},
): Promise<pg.Client> {
  const list = attempts(conn);
  let lastError: unknown;
  for (const attempt of list) {
    const config: ClientConfigWithReplication = opts.replication ? { ...attempt, replication: 'database' } : attempt;
    const client = new pg.Client(config);
    try {
      await client.connect();
      return client;
    } catch (err) {
      lastError = err;
      await client.end().catch(() => {});
    }
  }
  throw connectionError(lastError, conn, opts.replication ? 'opening a replication connection' : 'connecting');
}

/**
 * The one ClientConfig that works for this server (probing `allow`/`prefer` with a short
 * connection when needed), for a client made elsewhere (the replication session's).
 */
export async function resolveClientConfig(
  conn: PgConnectionConfig,
  opts: { replication?: boolean } = {},
): Promise<ClientConfigWithReplication> {
  const list = attempts(conn);
  if (list.length === 1) return opts.replication ? { ...list[0], replication: 'database' } : list[0]!;
  let lastError: unknown;
  for (const attempt of list) {
    const config: ClientConfigWithReplication = opts.replication ? { ...attempt, replication: 'database' } : attempt;
    const client = new pg.Client(config);
    try {
      await client.connect();
      await client.end();
      return config;
    } catch (err) {
      lastError = err;
      await client.end().catch(() => {});
    }
  }
  throw connectionError(lastError, conn, 'connecting');
}
