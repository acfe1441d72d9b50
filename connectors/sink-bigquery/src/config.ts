import { statSync } from 'node:fs';
import { z } from 'zod';

/**
 * Properties of a `type: bigquery` sink. Core merges the connection's properties and the
 * pipeline's sink properties into one object with `${env:…}` resolved; YAML quoting means
 * booleans and numbers may arrive as strings, so both forms are accepted.
 */

export const WRITE_MODES = ['upsert', 'append'] as const;
export type WriteMode = (typeof WRITE_MODES)[number];
export const UPSERT_METHODS = ['cdc', 'merge'] as const;
export type UpsertMethod = (typeof UPSERT_METHODS)[number];
export const TRUNCATE_POLICIES = ['delete', 'fail'] as const;
export type TruncatePolicy = (typeof TRUNCATE_POLICIES)[number];
export const INVALID_ROW_POLICIES = ['fail', 'skip'] as const;
export type InvalidRowPolicy = (typeof INVALID_ROW_POLICIES)[number];

/** BigQuery refuses an AppendRows request above 10 MB; the default leaves room for the request envelope. */
export const APPEND_REQUEST_LIMIT_BYTES = 10 * 1024 * 1024;
export const DEFAULT_MAX_REQUEST_BYTES = 9 * 1024 * 1024;

export interface BigQuerySinkConfig {
  projectId: string;
  datasetId: string;
  /** Service-account JSON key file; read when connecting, its content never logged. */
  credentialsFile?: string;
  /** Service-account JSON given inline (a secret: encrypted at rest by core). */
  credentialsJson?: string;
  /** Expected dataset location (`US`, `EU`, `europe-west1`); undefined = whatever the dataset has. */
  location?: string;
  /** The BigQuery table of a single-table pipeline. */
  tableId?: string;
  /** Otherwise `<tablePrefix><schema>_<table>`. */
  tablePrefix: string;
  /** Explicit names per source table (`schema.table` → BigQuery table), winning over both. */
  tableNames: Record<string, string>;
  writeMode: WriteMode;
  upsertMethod: UpsertMethod;
  /** Source tables (`schema.table`) applied with staging + MERGE even when `upsertMethod` is `cdc`. */
  mergeTables: string[];
  /** `max_staleness` of CDC tables in seconds; 0 = no option (queries always see every applied change). */
  maxStalenessSeconds: number;
  onTruncate: TruncatePolicy;
  /** A row BigQuery cannot hold: stop the pipeline (`fail`), or leave it out and log it (`skip`). */
  invalidRows: InvalidRowPolicy;
  /** Minimum time between two MERGE statements on one table (DML budget guard). */
  mergeIntervalMs: number;
  /** Stop (rather than exceed) after this many MERGE statements per table in 24 hours. */
  mergeDailyBudget: number;
  autoCreateTables: boolean;
  maxRequestBytes: number;
  maxRetries: number;
  /** How long one AppendRows request may wait for its acknowledgement before it counts as failed (and is retried). */
  requestTimeoutMs: number;
  retryBackoffMs: number;
  retryBackoffMaxMs: number;
}

const bool = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);
const int = z.union([
  z.number().int(),
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, 'expected an integer')
    .transform(Number),
]);
const commaList = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter((s) => s.length > 0));

/** Project ids: 6–30 characters, lowercase letters, digits and hyphens; a legacy `domain:` prefix is allowed. */
const PROJECT_ID = /^([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$/;
/** Dataset ids: letters, digits and underscores, at most 1,024. */
const DATASET_ID = /^[A-Za-z0-9_]{1,1024}$/;
/** Table ids: letters, marks, digits, connectors, dashes and spaces, at most 1,024 UTF-8 bytes. */
const TABLE_ID = /^[\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]+$/u;

/** `90`, `90s`, `15m`, `2h`, `1d` → seconds. */
export function parseDurationSeconds(text: string): number | undefined {
  const match = /^(\d+)\s*(s|m|h|d)?$/.exec(text.trim());
  if (!match) return undefined;
  const n = Number(match[1]);
  const unit = match[2] ?? 's';
  return n * { s: 1, m: 60, h: 3600, d: 86_400 }[unit as 's' | 'm' | 'h' | 'd'];
}

export const bigQuerySinkPropertiesSchema = z
  .object({
    dsn: z.string().optional(),
    project_id: z.string().trim().optional(),
    dataset_id: z.string().trim().optional(),
    credentials_file: z.string().trim().optional(),
    credentials_json: z.string().optional(),
    location: z.string().trim().optional(),

    table_id: z.string().trim().optional(),
    table_prefix: z.string().default(''),
    table_names: z.record(z.string()).default({}),
    write_mode: z.enum(WRITE_MODES).default('upsert'),
    upsert_method: z.enum(UPSERT_METHODS).default('cdc'),
    merge_tables: commaList.default([]),
    max_staleness: z.union([z.number().int(), z.string()]).default('0'),
    on_truncate: z.enum(TRUNCATE_POLICIES).default('delete'),
    invalid_rows: z.enum(INVALID_ROW_POLICIES).default('fail'),
    merge_interval_ms: int.refine((n) => n >= 0, 'merge_interval_ms must be 0 or more').default(60_000),
    merge_daily_budget: int.refine((n) => n >= 1, 'merge_daily_budget must be at least 1').default(1_400),
    auto_create_tables: bool.default(true),
    max_request_bytes: int
      .refine(
        (n) => n >= 64 * 1024 && n <= APPEND_REQUEST_LIMIT_BYTES,
        `max_request_bytes must be between 65536 and ${APPEND_REQUEST_LIMIT_BYTES} (BigQuery's AppendRows limit)`,
      )
      .default(DEFAULT_MAX_REQUEST_BYTES),
    max_retries: int.refine((n) => n >= 0, 'max_retries must be 0 or more').default(8),
    request_timeout_ms: int.refine((n) => n >= 1000, 'request_timeout_ms must be at least 1000').default(120_000),
    retry_backoff_ms: int.refine((n) => n >= 1, 'retry_backoff_ms must be at least 1').default(1000),
    retry_backoff_max_ms: int.refine((n) => n >= 1, 'retry_backoff_max_ms must be at least 1').default(60_000),
  })
  .strict()
  .superRefine((p, ctx) => {
    const issue = (path: string, message: string) =>
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: [path], message });
    const fromDsn = parseBigQueryDsn(p.dsn);
    const project = p.project_id ?? fromDsn?.projectId;
    const dataset = p.dataset_id ?? fromDsn?.datasetId;
    if (!project) issue('project_id', 'project_id is required (the Google Cloud project that holds the dataset)');
    else if (!PROJECT_ID.test(project))
      issue('project_id', `"${project}" is not a Google Cloud project id (6–30 lowercase letters, digits and hyphens)`);
    if (!dataset) issue('dataset_id', 'dataset_id is required');
    else if (!DATASET_ID.test(dataset))
      issue('dataset_id', `"${dataset}" is not a dataset id (letters, digits and underscores only)`);

    if (p.credentials_file !== undefined && p.credentials_json !== undefined) {
      issue('credentials_json', 'credentials_file and credentials_json are mutually exclusive');
    }
    if (p.credentials_file !== undefined && !isFile(p.credentials_file))
      issue('credentials_file', `file not found: ${p.credentials_file}`);
    if (p.credentials_json !== undefined && !looksLikeJsonObject(p.credentials_json)) {
      // Never echo the value: it is a private key.
      issue(
        'credentials_json',
        'credentials_json is not a JSON object (expected the content of a service-account key file)',
      );
    }

    if (p.table_id !== undefined && p.table_prefix !== '') {
      issue(
        'table_id',
        'table_id and table_prefix are mutually exclusive: table_id names the table of a one-table pipeline',
      );
    }
    if (p.table_id !== undefined && !validTableId(p.table_id)) issue('table_id', tableIdMessage(p.table_id));
    if (p.table_prefix !== '' && !TABLE_ID.test(p.table_prefix))
      issue('table_prefix', 'a table prefix may use only letters, digits, "_", "-" and spaces');
    for (const [source, target] of Object.entries(p.table_names)) {
      if (!validTableId(target))
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['table_names', source], message: tableIdMessage(target) });
    }
    if (p.write_mode === 'append' && (p.upsert_method !== 'cdc' || p.merge_tables.length > 0)) {
      issue(
        p.merge_tables.length > 0 ? 'merge_tables' : 'upsert_method',
        'upsert_method and merge_tables apply to write_mode: upsert only',
      );
    }
    const staleness = typeof p.max_staleness === 'number' ? p.max_staleness : parseDurationSeconds(p.max_staleness);
    if (staleness === undefined || staleness < 0 || staleness > 86_400) {
      issue('max_staleness', 'max_staleness is a duration like 0, 90s, 15m or 1h, at most 1d');
    }
    if (p.retry_backoff_max_ms < p.retry_backoff_ms)
      issue('retry_backoff_max_ms', 'retry_backoff_max_ms must not be below retry_backoff_ms');
  })
  .transform((p): BigQuerySinkConfig => {
    const fromDsn = parseBigQueryDsn(p.dsn);
    const config: BigQuerySinkConfig = {
      projectId: p.project_id ?? fromDsn?.projectId ?? '',
      datasetId: p.dataset_id ?? fromDsn?.datasetId ?? '',
      tablePrefix: p.table_prefix,
      tableNames: p.table_names,
      writeMode: p.write_mode,
      upsertMethod: p.upsert_method,
      mergeTables: p.merge_tables,
      maxStalenessSeconds:
        typeof p.max_staleness === 'number' ? p.max_staleness : (parseDurationSeconds(p.max_staleness) ?? 0),
      onTruncate: p.on_truncate,
      invalidRows: p.invalid_rows,
      mergeIntervalMs: p.merge_interval_ms,
      mergeDailyBudget: p.merge_daily_budget,
      autoCreateTables: p.auto_create_tables,
      maxRequestBytes: p.max_request_bytes,
      maxRetries: p.max_retries,
      requestTimeoutMs: p.request_timeout_ms,
      retryBackoffMs: p.retry_backoff_ms,
      retryBackoffMaxMs: p.retry_backoff_max_ms,
    };
    if (p.credentials_file !== undefined) config.credentialsFile = p.credentials_file;
    if (p.credentials_json !== undefined) config.credentialsJson = p.credentials_json;
    if (p.location) config.location = p.location;
    if (p.table_id !== undefined) config.tableId = p.table_id;
    return config;
  });

/** `bigquery://project/dataset`, for connections that prefer one string. */
function parseBigQueryDsn(dsn: string | undefined): { projectId: string; datasetId?: string } | undefined {
  if (!dsn) return undefined;
  const match = /^bigquery:\/\/([^/?#]+)(?:\/([^/?#]+))?\/?$/.exec(dsn.trim());
  if (!match) return undefined;
  return match[2] ? { projectId: match[1] as string, datasetId: match[2] } : { projectId: match[1] as string };
}

export function validTableId(id: string): boolean {
  return TABLE_ID.test(id) && Buffer.byteLength(id, 'utf8') <= 1024;
}

function tableIdMessage(id: string): string {
  return `"${id}" is not a BigQuery table name (letters, digits, "_", "-" and spaces, at most 1,024 bytes)`;
}

function looksLikeJsonObject(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export function parseBigQuerySinkConfig(input: unknown): BigQuerySinkConfig {
  return bigQuerySinkPropertiesSchema.parse(input);
}
