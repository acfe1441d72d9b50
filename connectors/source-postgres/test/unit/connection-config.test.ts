import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema, type PostgresSourceConfig } from '../../src/config.js';
import { buildConnectionConfig, SESSION_SETTINGS, sessionOptions, tlsOptions } from '../../src/connection.js';
import { DsnError, parseDsn } from '../../src/dsn.js';

const dir = mkdtempSync(join(tmpdir(), 'ns-pg-tls-'));
const ca = join(dir, 'ca.pem');
const cert = join(dir, 'client.pem');
const key = join(dir, 'client.key');
writeFileSync(ca, 'CA-PEM');
writeFileSync(cert, 'CERT-PEM');
writeFileSync(key, 'KEY-PEM');

function parse(input: unknown): PostgresSourceConfig {
  const result = configSchema.safeParse(input);
  if (!result.success) throw new Error(JSON.stringify(result.error.issues));
  return result.data;
}

function issues(input: unknown): { path: (string | number)[]; message: string }[] {
  const result = configSchema.safeParse(input);
  if (result.success) throw new Error('expected a validation failure');
  return result.error.issues.map((i) => ({ path: i.path as (string | number)[], message: i.message }));
}

describe('DSN parsing', () => {
  it('reads a URI with percent-encoding and query parameters', () => {
    expect(
      parseDsn('postgresql://app%40corp:p%40ss%2Fw@db.example:6543/my%20db?sslmode=verify-full&application_name=x'),
    ).toEqual({
      user: 'app@corp',
      password: 'p@ss/w',
      host: 'db.example',
      port: '6543',
      dbname: 'my db',
      sslmode: 'verify-full',
      application_name: 'x',
    });
  });
  it('reads IPv6 hosts and URIs without user or database', () => {
    expect(parseDsn('postgres://[::1]:5433')).toEqual({ host: '::1', port: '5433' });
    expect(parseDsn('postgres://h')).toEqual({ host: 'h' });
  });
  it('reads the keyword/value form with quoted values', () => {
    expect(parseDsn("host=h port=1 dbname='my \\'db\\'' user=u password = 'a b' sslmode=require")).toEqual({
      host: 'h',
      port: '1',
      dbname: "my 'db'",
      user: 'u',
      password: 'a b',
      sslmode: 'require',
    });
  });
  it('names unknown parameters and several hosts', () => {
    expect(() => parseDsn('postgres://h/db?gssencmode=disable')).toThrow(
      /unsupported connection parameter "gssencmode"/,
    );
    expect(() => parseDsn('postgres://h1,h2/db')).toThrow(/several hosts/);
    expect(() => parseDsn('mysql://h/db')).toThrow(/the URL scheme must be postgres:\/\/ or postgresql:\/\//);
    expect(() => parseDsn('mysql://h/db')).toThrow(DsnError);
    // One scheme check (core's URL parser), case-insensitive like libpq.
    expect(parseDsn('PostgreSQL://h:1/d')).toEqual({ host: 'h', port: '1', dbname: 'd' });
  });
});

describe('config schema', () => {
  it('takes a DSN alone, with libpq defaults', () => {
    expect(parse({ dsn: 'postgres://u:pw@h/db' })).toEqual({
      host: 'h',
      port: 5432,
      user: 'u',
      password: 'pw',
      database: 'db',
      sslmode: 'prefer',
      applicationName: 'nanosync',
    });
  });
  it('takes discrete properties alone; database defaults to the user', () => {
    expect(parse({ host: 'h', port: '6000', user: 'u', password: 'x', sslmode: 'disable' })).toMatchObject({
      host: 'h',
      port: 6000,
      user: 'u',
      database: 'u',
      sslmode: 'disable',
    });
  });
  it('lets discrete properties override the DSN (a password from an environment reference next to a DSN)', () => {
    expect(
      parse({
        dsn: 'postgres://u@h/db?sslmode=require',
        password: 'from-env',
        sslmode: 'verify-full',
        sslrootcert: ca,
      }),
    ).toMatchObject({
      password: 'from-env',
      sslmode: 'verify-full',
      sslrootcert: ca,
    });
  });
  it('rejects unknown keys, bad sslmodes and missing host/user with the property path', () => {
    expect(issues({ host: 'h', user: 'u', hostname: 'x' })[0]!.message).toMatch(/hostname/);
    expect(issues({ host: 'h', user: 'u', sslmode: 'verify' })[0]!.path).toEqual(['sslmode']);
    expect(issues({ dsn: 'postgres://u@h/db?sslmode=maybe' })[0]).toMatchObject({
      path: ['dsn'],
      message: expect.stringMatching(/invalid sslmode "maybe"/),
    });
    expect(issues({ user: 'u' })[0]).toMatchObject({ path: ['host'] });
    expect(issues({ host: 'h' })[0]).toMatchObject({ path: ['user'] });
    expect(issues({ dsn: 'host=h user' })[0]!.message).toMatch(/invalid DSN/);
  });
  it('rejects a missing TLS file naming the property', () => {
    const missing = join(dir, 'nope.pem');
    expect(issues({ host: 'h', user: 'u', sslmode: 'verify-ca', sslrootcert: missing })[0]).toEqual({
      path: ['sslrootcert'],
      message: `sslrootcert file "${missing}" does not exist`,
    });
    expect(
      issues({ dsn: `postgres://u@h/db?sslcert=${encodeURIComponent(missing)}&sslkey=${encodeURIComponent(key)}` })[0],
    ).toMatchObject({
      path: ['dsn'],
      message: expect.stringMatching(/sslcert file/),
    });
    expect(issues({ host: 'h', user: 'u', sslcert: cert })[0]!.path).toEqual(['sslkey']);
  });
});

describe('sslmode → TLS options', () => {
  const base = { host: 'db.example' } as const;
  it('disable: no TLS', () => {
    expect(tlsOptions({ ...base, sslmode: 'disable' })).toEqual({ ssl: false });
  });
  it('allow: plain first, TLS without verification second', () => {
    expect(tlsOptions({ ...base, sslmode: 'allow' })).toEqual({
      ssl: false,
      sslFallback: { rejectUnauthorized: false },
    });
  });
  it('prefer: TLS without verification first, plain second', () => {
    expect(tlsOptions({ ...base, sslmode: 'prefer' })).toEqual({
      ssl: { rejectUnauthorized: false },
      sslFallback: false,
    });
  });
  it('require: TLS without verification, unless a root certificate is given (then like verify-ca)', () => {
    expect(tlsOptions({ ...base, sslmode: 'require' })).toEqual({ ssl: { rejectUnauthorized: false } });
    const withCa = tlsOptions({ ...base, sslmode: 'require', sslrootcert: ca }).ssl;
    expect(withCa).toMatchObject({ rejectUnauthorized: true, ca: Buffer.from('CA-PEM') });
    expect(withCa ? withCa.checkServerIdentity?.('other.host', {} as never) : 'no TLS').toBeUndefined();
  });
  it('verify-ca: chain checked against sslrootcert, host name not checked', () => {
    const ssl = tlsOptions({ ...base, sslmode: 'verify-ca', sslrootcert: ca }).ssl;
    expect(ssl).toMatchObject({ rejectUnauthorized: true, ca: Buffer.from('CA-PEM') });
    expect(ssl ? typeof ssl.checkServerIdentity : 'no TLS').toBe('function');
    expect(ssl ? ssl.checkServerIdentity?.('wrong.host', {} as never) : 'no TLS').toBeUndefined();
  });
  it('verify-full: chain and host name checked (the default identity check stays in place)', () => {
    const ssl = tlsOptions({ ...base, sslmode: 'verify-full', sslrootcert: ca }).ssl;
    expect(ssl).toEqual({ rejectUnauthorized: true, ca: Buffer.from('CA-PEM') });
  });
  it('verify modes without a root certificate are refused; "system" uses the system CAs', () => {
    expect(() => tlsOptions({ ...base, sslmode: 'verify-full' })).toThrow(/needs sslrootcert/);
    expect(tlsOptions({ ...base, sslmode: 'verify-full', sslrootcert: 'system' }).ssl).toEqual({
      rejectUnauthorized: true,
    });
  });
  it('client certificate and key in every TLS mode', () => {
    for (const sslmode of ['require', 'verify-ca', 'verify-full'] as const) {
      expect(tlsOptions({ ...base, sslmode, sslrootcert: ca, sslcert: cert, sslkey: key }).ssl).toMatchObject({
        cert: Buffer.from('CERT-PEM'),
        key: Buffer.from('KEY-PEM'),
      });
    }
  });
  it('a TLS file that disappeared after validation is an error naming the property', () => {
    expect(() => tlsOptions({ ...base, sslmode: 'require', sslcert: join(dir, 'gone.pem'), sslkey: key })).toThrow(
      /sslcert file ".*gone.pem" does not exist/,
    );
  });
});

describe('session settings', () => {
  it('pins every setting that shapes value text through the options startup parameter', () => {
    expect(SESSION_SETTINGS).toMatchObject({
      TimeZone: 'UTC',
      DateStyle: 'ISO',
      IntervalStyle: 'iso_8601',
      extra_float_digits: '3',
      bytea_output: 'hex',
      client_encoding: 'UTF8',
    });
    expect(sessionOptions()).toBe(
      '-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex -c client_encoding=UTF8 -c lc_monetary=C',
    );
    expect(sessionOptions('-c work_mem=64MB')).toMatch(/^-c work_mem=64MB -c TimeZone=UTC /);
  });
  it('builds a pg ClientConfig carrying the options and TLS', () => {
    const conn = buildConnectionConfig(
      parse({ dsn: 'postgres://u:pw@h:6000/db?options=-c%20work_mem%3D64MB', sslmode: 'require' }),
    );
    expect(conn).toMatchObject({
      host: 'h',
      port: 6000,
      user: 'u',
      password: 'pw',
      database: 'db',
      ssl: { rejectUnauthorized: false },
      sslmode: 'require',
    });
    expect(conn.options).toBe(`-c work_mem=64MB ${sessionOptions()}`);
  });
});
