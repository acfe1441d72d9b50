import { existsSync } from 'node:fs';
import { z } from 'zod';
import { type DsnError, type DsnParams, parseDsn } from './dsn.js';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/**
 * The connector's config after validation: the DSN (if any) merged with the discrete
 * properties, discrete properties winning. Defaults follow libpq: port 5432,
 * sslmode `prefer`, database = user.
 */
export interface PostgresSourceConfig {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  sslmode: SslMode;
  sslrootcert?: string;
  sslcert?: string;
  sslkey?: string;
  applicationName: string;
  /** Extra `options` from the DSN (`-c work_mem=64MB`); our session settings are appended after them. */
  options?: string;
  connectTimeoutSeconds?: number;
}

const nonEmpty = z.string().min(1, 'must not be empty');

const rawSchema = z
  .object({
    dsn: nonEmpty.optional(),
    host: nonEmpty.optional(),
    port: z.coerce.number().int().min(1).max(65535).optional(),
    user: nonEmpty.optional(),
    password: z.string().optional(),
    database: nonEmpty.optional(),
    sslmode: z.enum(SSL_MODES).optional(),
    sslrootcert: nonEmpty.optional(),
    sslcert: nonEmpty.optional(),
    sslkey: nonEmpty.optional(),
    application_name: nonEmpty.optional(),
    connect_timeout_seconds: z.coerce.number().int().min(1).max(3600).optional(),
  })
  .strict();

type RawConfig = z.infer<typeof rawSchema>;

/**
 * Properties (YAML `connections[].properties` + `dsn`, plus the pipeline's source
 * properties): either `dsn`, or `host`/`port`/`user`/`password`/`database`/`sslmode`/
 * `sslrootcert`/`sslcert`/`sslkey`, or both (the discrete ones override the DSN). TLS files
 * must exist when the config is validated, so a typo is reported before anything is created.
 */
export const configSchema = rawSchema.transform((raw, ctx): PostgresSourceConfig => {
  let fromDsn: DsnParams = {};
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
  const host = raw.host ?? fromDsn.host ?? fromDsn.hostaddr;
  const user = raw.user ?? fromDsn.user;
  if (!host)
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      path: raw.dsn ? ['dsn'] : ['host'],
      message: 'a host is required: set `dsn` or `host`',
    });
  if (!user)
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      path: raw.dsn ? ['dsn'] : ['user'],
      message: 'a user is required: set it in `dsn` or as `user`',
    });
  let port = raw.port;
  if (port === undefined && fromDsn.port !== undefined) {
    port = Number(fromDsn.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['dsn'], message: `invalid port "${fromDsn.port}"` });
  }
  let sslmode: SslMode | undefined = raw.sslmode;
  if (sslmode === undefined && fromDsn.sslmode !== undefined) {
    if ((SSL_MODES as readonly string[]).includes(fromDsn.sslmode)) sslmode = fromDsn.sslmode as SslMode;
    else
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['dsn'],
        message: `invalid sslmode "${fromDsn.sslmode}" (one of ${SSL_MODES.join(', ')})`,
      });
  }
  const files: Record<'sslrootcert' | 'sslcert' | 'sslkey', string | undefined> = {
    sslrootcert: raw.sslrootcert ?? fromDsn.sslrootcert,
    sslcert: raw.sslcert ?? fromDsn.sslcert,
    sslkey: raw.sslkey ?? fromDsn.sslkey,
  };
  for (const [name, file] of Object.entries(files)) {
    if (file === undefined || (name === 'sslrootcert' && file === 'system')) continue;
    if (!existsSync(file)) {
      const inDsn = raw[name as keyof RawConfig] === undefined;
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: inDsn ? ['dsn'] : [name],
        message: `${name} file "${file}" does not exist`,
      });
    }
  }
  if ((files.sslcert === undefined) !== (files.sslkey === undefined)) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      path: [files.sslcert ? 'sslkey' : 'sslcert'],
      message: 'sslcert and sslkey must be given together',
    });
  }
  let connectTimeoutSeconds = raw.connect_timeout_seconds;
  if (connectTimeoutSeconds === undefined && fromDsn.connect_timeout !== undefined) {
    const t = Number(fromDsn.connect_timeout);
    if (Number.isInteger(t) && t > 0) connectTimeoutSeconds = t;
  }
  if (!host || !user) return z.NEVER;
  const config: PostgresSourceConfig = {
    host,
    port: port ?? 5432,
    user,
    database: raw.database ?? fromDsn.dbname ?? user,
    sslmode: sslmode ?? 'prefer',
    applicationName: raw.application_name ?? fromDsn.application_name ?? 'nanosync',
  };
  const password = raw.password ?? fromDsn.password;
  if (password !== undefined) config.password = password;
  if (files.sslrootcert) config.sslrootcert = files.sslrootcert;
  if (files.sslcert) config.sslcert = files.sslcert;
  if (files.sslkey) config.sslkey = files.sslkey;
  if (fromDsn.options) config.options = fromDsn.options;
  if (connectTimeoutSeconds !== undefined) config.connectTimeoutSeconds = connectTimeoutSeconds;
  return config;
});

export const secretProperties = ['password'] as const;
