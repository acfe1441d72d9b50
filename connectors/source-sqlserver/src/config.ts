import { existsSync } from 'node:fs';
import { z } from 'zod';
import { type DsnError, type DsnParams, parseDsn } from './dsn.js';

export const AUTHENTICATIONS = [
  'sql',
  'entra_access_token',
  'entra_service_principal',
  'entra_managed_identity',
  'entra_default',
] as const;
export type Authentication = (typeof AUTHENTICATIONS)[number];

/** How change rows are read: through the CDC table-valued function, or from the change table itself. */
export const CHANGE_READ_PATHS = ['function', 'change_table'] as const;
export type ChangeReadPath = (typeof CHANGE_READ_PATHS)[number];

/**
 * The connector's config after validation: the DSN (if any) merged with the discrete
 * properties (discrete ones win), plus the pipeline-level source properties.
 */
export interface SqlServerSourceConfig {
  host: string;
  port: number;
  database: string;
  user?: string;
  password?: string;
  authentication: Authentication;
  accessToken?: string;
  clientId?: string;
  clientSecret?: string;
  tenantId?: string;
  /** TLS: `true` (verify the certificate unless `trustServerCertificate`), `strict` (TDS 8), or `false`. */
  encrypt: boolean | 'strict';
  trustServerCertificate: boolean;
  caFile?: string;
  tlsServerName?: string;
  applicationName: string;
  connectTimeoutSeconds: number;
  /** Idle poll interval (ms); polls run back to back while there is a backlog. */
  pollIntervalMs: number;
  /** Upper bound of change rows read per poll (all tables together). */
  maxPollRows: number;
  /** Upper bound of change-row bytes (estimated) per poll. */
  maxPollBytes: number;
  /** `all update old`: updates carry the old row image as `before`. */
  beforeImages: boolean;
  manageCdc: boolean;
  /** Gating role for capture instances nanosync creates (`manage_cdc`); null = no role, absent = `nanosync_<pipeline>`. */
  cdcRole?: string | null;
  onRetentionGap: 'error' | 'resnapshot';
  changeReadPath: ChangeReadPath;
  /** `exact` keeps the 7th fractional digit of datetime2(7)/time(7)/datetimeoffset(7) as text. */
  timePrecision: 'exact' | 'microseconds';
}

const nonEmpty = z.string().min(1, 'must not be empty');

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/;

/** `500`, `"500ms"`, `"2s"`, `"1m"` → milliseconds. */
export function parseDuration(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = DURATION.exec(value.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  return Math.round(unit === 'ms' ? n : unit === 's' ? n * 1000 : n * 60_000);
}

const booleanLike = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);

const rawSchema = z
  .object({
    dsn: nonEmpty.optional(),
    host: nonEmpty.optional(),
    port: z.coerce.number().int().min(1).max(65535).optional(),
    user: nonEmpty.optional(),
    password: z.string().optional(),
    database: nonEmpty.optional(),
    authentication: z.enum(AUTHENTICATIONS).optional(),
    access_token: nonEmpty.optional(),
    client_id: nonEmpty.optional(),
    client_secret: nonEmpty.optional(),
    tenant_id: nonEmpty.optional(),
    encrypt: z.union([z.boolean(), z.enum(['true', 'false', 'strict'])]).optional(),
    trust_server_certificate: booleanLike.optional(),
    ca_file: nonEmpty.optional(),
    tls_server_name: nonEmpty.optional(),
    application_name: nonEmpty.optional(),
    connect_timeout_seconds: z.coerce.number().int().min(1).max(3600).optional(),
    poll_interval: z.union([z.number(), z.string()]).optional(),
    max_poll_rows: z.coerce.number().int().min(1).max(10_000_000).optional(),
    max_poll_bytes: z.coerce.number().int().min(65_536).optional(),
    before_images: booleanLike.optional(),
    manage_cdc: booleanLike.optional(),
    cdc_role: z.union([nonEmpty, z.null()]).optional(),
    on_retention_gap: z.enum(['error', 'resnapshot']).optional(),
    change_read_path: z.enum(CHANGE_READ_PATHS).optional(),
    time_precision: z.enum(['exact', 'microseconds']).optional(),
  })
  .strict();

type Issue = { path: (string | number)[]; message: string };

/**
 * Properties: either `dsn`, or `host`/`port`/`user`/`password`/`database`, or both (the
 * discrete ones override the DSN). TLS is on by default and verifies the server
 * certificate; `trust_server_certificate: true` turns verification off and must be asked
 * for. The CA file must exist when the config is validated.
 */
export const configSchema = rawSchema.transform((raw, ctx): SqlServerSourceConfig => {
  const issues: Issue[] = [];
  let fromDsn: DsnParams = { params: {} };
  if (raw.dsn !== undefined) {
    try {
      fromDsn = parseDsn(raw.dsn);
    } catch (err) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['dsn'],
        message: `invalid DSN: ${(err as DsnError).message}`,
      });
      return z.NEVER;
    }
  }
  const p = fromDsn.params;
  const where = (key: string, dsnHas: boolean) =>
    dsnHas && (raw as Record<string, unknown>)[key] === undefined ? ['dsn'] : [key];
  const host = raw.host ?? fromDsn.host;
  if (!host) issues.push({ path: raw.dsn ? ['dsn'] : ['host'], message: 'a host is required: set `dsn` or `host`' });
  const database = raw.database ?? fromDsn.database;
  if (!database)
    issues.push({
      path: raw.dsn ? ['dsn'] : ['database'],
      message: 'a database is required (CDC is enabled per database): set it in `dsn` or as `database`',
    });
  let port = raw.port;
  if (port === undefined && fromDsn.port !== undefined) {
    port = Number(fromDsn.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      issues.push({ path: ['dsn'], message: `invalid port "${fromDsn.port}"` });
  }
  let authentication = raw.authentication;
  if (authentication === undefined && p.authentication !== undefined) {
    if ((AUTHENTICATIONS as readonly string[]).includes(p.authentication))
      authentication = p.authentication as Authentication;
    else
      issues.push({
        path: ['dsn'],
        message: `invalid authentication "${p.authentication}" (one of ${AUTHENTICATIONS.join(', ')})`,
      });
  }
  authentication ??= 'sql';
  const user = raw.user ?? fromDsn.user;
  const password = raw.password ?? fromDsn.password;
  const clientId = raw.client_id ?? p.client_id;
  const tenantId = raw.tenant_id ?? p.tenant_id;
  if (authentication === 'sql' && !user)
    issues.push({ path: raw.dsn ? ['dsn'] : ['user'], message: 'a user is required for SQL authentication' });
  if (authentication === 'entra_access_token' && !raw.access_token)
    issues.push({ path: ['access_token'], message: 'authentication entra_access_token needs `access_token`' });
  if (authentication === 'entra_service_principal') {
    if (!clientId) issues.push({ path: ['client_id'], message: 'entra_service_principal needs `client_id`' });
    if (!raw.client_secret)
      issues.push({ path: ['client_secret'], message: 'entra_service_principal needs `client_secret`' });
    if (!tenantId) issues.push({ path: ['tenant_id'], message: 'entra_service_principal needs `tenant_id`' });
  }
  let encrypt: boolean | 'strict' = true;
  const encryptRaw = raw.encrypt ?? p.encrypt;
  if (encryptRaw !== undefined) {
    if (encryptRaw === true || encryptRaw === 'true') encrypt = true;
    else if (encryptRaw === false || encryptRaw === 'false') encrypt = false;
    else if (encryptRaw === 'strict') encrypt = 'strict';
    else
      issues.push({ path: where('encrypt', true), message: `invalid encrypt "${encryptRaw}" (true, false or strict)` });
  }
  let trustServerCertificate = raw.trust_server_certificate ?? false;
  if (raw.trust_server_certificate === undefined && p.trust_server_certificate !== undefined) {
    const v = p.trust_server_certificate.toLowerCase();
    if (v === 'true' || v === 'false') trustServerCertificate = v === 'true';
    else issues.push({ path: ['dsn'], message: `invalid trust_server_certificate "${p.trust_server_certificate}"` });
  }
  const caFile = raw.ca_file ?? p.ca_file;
  if (caFile !== undefined && !existsSync(caFile))
    issues.push({ path: where('ca_file', p.ca_file !== undefined), message: `ca_file "${caFile}" does not exist` });
  if (caFile !== undefined && trustServerCertificate)
    issues.push({
      path: ['trust_server_certificate'],
      message: 'trust_server_certificate turns certificate verification off; it cannot be combined with ca_file',
    });
  let connectTimeoutSeconds = raw.connect_timeout_seconds ?? 30;
  if (raw.connect_timeout_seconds === undefined && p.connect_timeout_seconds !== undefined) {
    const t = Number(p.connect_timeout_seconds);
    if (Number.isInteger(t) && t > 0) connectTimeoutSeconds = t;
    else issues.push({ path: ['dsn'], message: `invalid connect_timeout_seconds "${p.connect_timeout_seconds}"` });
  }
  let pollIntervalMs = 500;
  if (raw.poll_interval !== undefined) {
    const ms = parseDuration(raw.poll_interval);
    if (ms === undefined || ms < 10 || ms > 3_600_000)
      issues.push({
        path: ['poll_interval'],
        message: 'poll_interval must be a duration between 10ms and 1h (e.g. 500ms, 2s)',
      });
    else pollIntervalMs = ms;
  }
  for (const issue of issues) ctx.addIssue({ code: z.ZodIssueCode.custom, ...issue });
  if (issues.length > 0 || !host || !database) return z.NEVER;

  const config: SqlServerSourceConfig = {
    host,
    port: port ?? 1433,
    database,
    authentication,
    encrypt,
    trustServerCertificate,
    applicationName: raw.application_name ?? p.application_name ?? 'nanosync',
    connectTimeoutSeconds,
    pollIntervalMs,
    maxPollRows: raw.max_poll_rows ?? 10_000,
    maxPollBytes: raw.max_poll_bytes ?? 16 * 1024 * 1024,
    beforeImages: raw.before_images ?? true,
    manageCdc: raw.manage_cdc ?? false,
    onRetentionGap: raw.on_retention_gap ?? 'error',
    changeReadPath: raw.change_read_path ?? 'function',
    timePrecision: raw.time_precision ?? 'exact',
  };
  if (raw.cdc_role !== undefined) config.cdcRole = raw.cdc_role;
  if (user !== undefined) config.user = user;
  if (password !== undefined) config.password = password;
  if (raw.access_token !== undefined) config.accessToken = raw.access_token;
  if (clientId !== undefined) config.clientId = clientId;
  if (raw.client_secret !== undefined) config.clientSecret = raw.client_secret;
  if (tenantId !== undefined) config.tenantId = tenantId;
  if (caFile !== undefined) config.caFile = caFile;
  const tlsServerName = raw.tls_server_name ?? p.tls_server_name;
  if (tlsServerName !== undefined) config.tlsServerName = tlsServerName;
  return config;
});

export const secretProperties = ['password', 'access_token', 'client_secret'] as const;
