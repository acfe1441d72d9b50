import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema, parseDuration, type SqlServerSourceConfig } from '../../src/config.js';
import { buildMssqlConfig } from '../../src/connection.js';
import { parseDsn } from '../../src/dsn.js';

const dir = mkdtempSync(join(tmpdir(), 'ns-mssql-tls-'));
const ca = join(dir, 'ca.pem');
writeFileSync(ca, 'CA-PEM');

function parse(input: unknown): SqlServerSourceConfig {
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
  it('reads user, password, host, port, database and parameters (percent-decoded)', () => {
    expect(
      parseDsn('sqlserver://app%40corp:p%40ss%2Fw@db.example:1444/my%20db?encrypt=strict&trustServerCertificate=false'),
    ).toEqual({
      user: 'app@corp',
      password: 'p@ss/w',
      host: 'db.example',
      port: '1444',
      database: 'my db',
      params: { encrypt: 'strict', trust_server_certificate: 'false' },
    });
  });
  it('accepts mssql:// and IPv6 hosts', () => {
    expect(parseDsn('mssql://[::1]:1433/db')).toMatchObject({ host: '::1', port: '1433', database: 'db' });
  });
  it('names unknown parameters, other schemes and named instances', () => {
    expect(() => parseDsn('sqlserver://h/db?multiSubnetFailover=true')).toThrow(
      /unsupported parameter "multiSubnetFailover"/,
    );
    expect(() => parseDsn('postgres://h/db')).toThrow(/sqlserver:\/\//);
    expect(() => parseDsn('sqlserver://h\\SQLEXPRESS/db')).toThrow(/named instances/);
  });
});

describe('connection config', () => {
  it('merges DSN and properties, discrete properties winning; TLS on and verified by default', () => {
    const config = parse({ dsn: 'sqlserver://sa:from-dsn@db:1433/shop', password: 'from-env' });
    expect(config).toMatchObject({
      host: 'db',
      port: 1433,
      database: 'shop',
      user: 'sa',
      password: 'from-env',
      encrypt: true,
      trustServerCertificate: false,
      authentication: 'sql',
      pollIntervalMs: 500,
      onRetentionGap: 'error',
      manageCdc: false,
      beforeImages: true,
    });
  });
  it('defaults the port to 1433 and requires a database', () => {
    expect(parse({ host: 'h', user: 'u', database: 'd' }).port).toBe(1433);
    expect(issues({ host: 'h', user: 'u' })).toEqual([
      { path: ['database'], message: expect.stringMatching(/database is required/) },
    ]);
  });
  it('turns certificate verification off only when asked, never together with a CA file', () => {
    expect(parse({ host: 'h', user: 'u', database: 'd', trust_server_certificate: true }).trustServerCertificate).toBe(
      true,
    );
    expect(parse({ host: 'h', user: 'u', database: 'd', ca_file: ca }).caFile).toBe(ca);
    expect(
      issues({ host: 'h', user: 'u', database: 'd', ca_file: ca, trust_server_certificate: true })[0]!.path,
    ).toEqual(['trust_server_certificate']);
    expect(issues({ host: 'h', user: 'u', database: 'd', ca_file: join(dir, 'missing.pem') })).toEqual([
      { path: ['ca_file'], message: expect.stringMatching(/does not exist/) },
    ]);
  });
  it('reports an invalid setting inside the DSN at the dsn path', () => {
    expect(issues({ dsn: 'sqlserver://u@h/d?encrypt=maybe' })).toEqual([
      { path: ['dsn'], message: expect.stringMatching(/invalid encrypt "maybe"/) },
    ]);
  });
  it('never echoes the password in an issue', () => {
    const found = issues({ dsn: 'sqlserver://u:S3cret-Pw@h:99999/d' });
    expect(JSON.stringify(found)).not.toContain('S3cret-Pw');
  });
  it('rejects unknown keys (strict)', () => {
    expect(issues({ host: 'h', user: 'u', database: 'd', sslmode: 'require' })[0]!.message).toMatch(/Unrecognized key/);
  });
  it('validates Entra authentication settings', () => {
    expect(issues({ host: 'h', database: 'd', authentication: 'entra_service_principal', client_id: 'c' })).toEqual([
      { path: ['client_secret'], message: expect.any(String) },
      { path: ['tenant_id'], message: expect.any(String) },
    ]);
    const token = parse({ host: 'h', database: 'd', authentication: 'entra_access_token', access_token: 'tok' });
    expect(buildMssqlConfig(token, { poolMax: 1, requestTimeoutMs: 0 }).authentication).toEqual({
      type: 'azure-active-directory-access-token',
      options: { token: 'tok' },
    });
  });
  it('tells an explicit cdc_role: null (no gating role) from an absent one (the default role)', () => {
    expect(parse({ host: 'h', user: 'u', database: 'd', manage_cdc: true, cdc_role: null }).cdcRole).toBeNull();
    expect(parse({ host: 'h', user: 'u', database: 'd', manage_cdc: true }).cdcRole).toBeUndefined();
    expect(parse({ host: 'h', user: 'u', database: 'd', cdc_role: 'cdc_reader' }).cdcRole).toBe('cdc_reader');
  });
  it('reads poll_interval as a duration', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2s')).toBe(2000);
    expect(parseDuration(250)).toBe(250);
    expect(parse({ host: 'h', user: 'u', database: 'd', poll_interval: '1s' }).pollIntervalMs).toBe(1000);
    expect(issues({ host: 'h', user: 'u', database: 'd', poll_interval: 'soon' })[0]!.path).toEqual(['poll_interval']);
  });
});

describe('mssql driver config', () => {
  it('verifies the certificate with the custom CA and replaces the 15 s request timeout', () => {
    const config = parse({
      host: 'h',
      user: 'u',
      password: 'p',
      database: 'd',
      ca_file: ca,
      tls_server_name: 'db.internal',
    });
    const built = buildMssqlConfig(config, { poolMax: 4, requestTimeoutMs: 0 });
    expect(built).toMatchObject({
      server: 'h',
      port: 1433,
      database: 'd',
      user: 'u',
      password: 'p',
      requestTimeout: 0,
    });
    expect(built.options).toMatchObject({ encrypt: true, trustServerCertificate: false, serverName: 'db.internal' });
    expect(String((built.options as { cryptoCredentialsDetails: { ca: Buffer } }).cryptoCredentialsDetails.ca)).toBe(
      'CA-PEM',
    );
  });
  it('passes encrypt=strict (TDS 8) through', () => {
    const config = parse({ host: 'h', user: 'u', database: 'd', encrypt: 'strict' });
    expect(buildMssqlConfig(config, { poolMax: 1, requestTimeoutMs: 1000 }).options).toMatchObject({
      encrypt: 'strict',
    });
  });
});
