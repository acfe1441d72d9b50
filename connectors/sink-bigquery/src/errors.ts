import { defineErrorArea, NanosyncError } from '@nanosync/core';

/** The BigQuery sink's error codes (block NS_B7000–NS_B7999). */
export const bigQueryErrors = defineErrorArea({
  area: 'BigQuery sink',
  letter: 'B',
  range: [7000, 7999],
  codes: {
    BigQueryWrite: {
      code: 'NS_B7001',
      meaning: 'An append or MERGE failed with an error retrying will not change, or retries ran out.',
      fix: "Read BigQuery's reason in the message, fix the table or quota it names, then resume the pipeline; it replays from its checkpoint.",
    },
    BigQueryAuth: {
      code: 'NS_B7002',
      meaning:
        'The credentials are missing, unreadable or refused, or the project or dataset cannot be reached with them.',
      fix: 'Check `credentials_file` / `credentials_json` and grant the service account the roles the message names on the dataset.',
    },
    BigQuerySchema: {
      code: 'NS_B7003',
      meaning:
        "A source table's schema cannot be mapped onto, or evolved into, its BigQuery table (no key for upserts, a column type change, a name clash, a missing table).",
      fix: 'Apply the fix the message prints: add a key, use `write_mode: append`, create or recreate the table, or rename the column.',
    },
    BigQueryValue: {
      code: 'NS_B7004',
      meaning:
        'BigQuery cannot hold a value (an out-of-range date, NaN in NUMERIC, a row too large); the message names the table, column and key.',
      fix: 'Correct the row at the source, or leave the column out with `target_mappings`.',
    },
    BigQueryUnsupported: {
      code: 'NS_B7005',
      meaning:
        'An event the chosen write method cannot apply (unchanged columns on a CDC table, a TRUNCATE with `on_truncate: fail`, a position without a change sequence number).',
      fix: 'Apply the fix the message prints, usually another `upsert_method` or `on_truncate` setting, then resume.',
    },
  },
});
export const BigQueryErrorCode = bigQueryErrors.code;

/**
 * What a failure from Google's clients means for the sink. The Storage Write API speaks
 * gRPC (numeric `code`), the REST API (jobs, tables, datasets) HTTP (`code` 4xx/5xx plus
 * `errors[].reason`); both are read here, through `cause` chains, never by message text
 * except for BigQuery's concurrent-DML conflict, which has no code of its own.
 */
export type FailureKind = 'retriable' | 'auth' | 'not-found' | 'invalid' | 'fatal';

// gRPC status codes
const CANCELLED = 1;
const INVALID_ARGUMENT = 3;
const DEADLINE_EXCEEDED = 4;
const NOT_FOUND = 5;
const PERMISSION_DENIED = 7;
const RESOURCE_EXHAUSTED = 8;
const ABORTED = 10;
const INTERNAL = 13;
const UNAVAILABLE = 14;
const UNAUTHENTICATED = 16;

const RETRIABLE_GRPC = new Set([CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE]);
const RETRIABLE_HTTP = new Set([408, 429, 500, 502, 503, 504]);
const RETRIABLE_REASONS = new Set([
  'rateLimitExceeded',
  'backendError',
  'internalError',
  'jobRateLimitExceeded',
  'quotaExceeded',
  'jobBackendError',
]);
const NETWORK_CODES =
  /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|ERR_STREAM_PREMATURE_CLOSE)$/;

interface GoogleLikeError {
  code?: number | string;
  message?: string;
  reason?: string;
  errors?: { reason?: string; message?: string }[];
  cause?: unknown;
  retriable?: boolean;
}

function chain(err: unknown): GoogleLikeError[] {
  const out: GoogleLikeError[] = [];
  const seen = new Set<unknown>();
  for (
    let e: unknown = err;
    e && typeof e === 'object' && !seen.has(e) && out.length < 8;
    e = (e as GoogleLikeError).cause
  ) {
    seen.add(e);
    out.push(e as GoogleLikeError);
  }
  return out;
}

export function classifyBigQueryError(err: unknown): FailureKind {
  const errors = chain(err);
  for (const e of errors) {
    if (e instanceof NanosyncError) return e.retriable ? 'retriable' : 'fatal';
    const reasons = [e.reason, ...(e.errors ?? []).map((x) => x.reason)].filter(
      (r): r is string => typeof r === 'string',
    );
    if (reasons.some((r) => RETRIABLE_REASONS.has(r))) return 'retriable';
    // Two mutating DML statements on one table: "Could not serialize access to table … due to concurrent update".
    if (/could not serialize access/i.test(e.message ?? '')) return 'retriable';
    if (typeof e.code === 'string' && NETWORK_CODES.test(e.code)) return 'retriable';
    if (typeof e.code !== 'number') continue;
    if (e.code >= 100) {
      if (RETRIABLE_HTTP.has(e.code)) return 'retriable';
      if (e.code === 401 || e.code === 403) return 'auth';
      if (e.code === 404) return 'not-found';
      if (e.code === 400) return 'invalid';
      return 'fatal';
    }
    if (RETRIABLE_GRPC.has(e.code)) return 'retriable';
    if (e.code === PERMISSION_DENIED || e.code === UNAUTHENTICATED) return 'auth';
    if (e.code === NOT_FOUND) return 'not-found';
    if (e.code === INVALID_ARGUMENT) return 'invalid';
    return 'fatal';
  }
  return errors.some((e) => e.retriable === true) ? 'retriable' : 'fatal';
}

/** The most useful message of a Google error, without anything that could be a credential. */
export function googleMessage(err: unknown): string {
  const errors = chain(err);
  const first = errors.find((e) => e.errors?.[0]?.message) ?? errors.find((e) => e.message) ?? errors[0];
  const text = first?.errors?.[0]?.message ?? first?.message ?? String(err);
  return scrubCredentials(text.replace(/\s+/g, ' ').trim());
}

/** Removes anything shaped like a private key or an access token from a message. */
export function scrubCredentials(text: string): string {
  return text
    .replace(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g, '[private key]')
    .replace(/"private_key"\s*:\s*"[^"]*"?/g, '"private_key":"***"')
    .replace(/\bya29\.[A-Za-z0-9_.-]+/g, 'ya29.***')
    .replace(/\b(Bearer)\s+[A-Za-z0-9_.-]+/gi, '$1 ***');
}

export function authFix(projectId: string, datasetId: string): string {
  return (
    `grant the service account roles/bigquery.dataEditor on dataset ${projectId}:${datasetId} and roles/bigquery.jobUser on project ${projectId}: ` +
    `gcloud projects add-iam-policy-binding ${projectId} --member=serviceAccount:SA_EMAIL --role=roles/bigquery.jobUser; ` +
    `bq add-iam-policy-binding --member=serviceAccount:SA_EMAIL --role=roles/bigquery.dataEditor ${projectId}:${datasetId}`
  );
}

/** A failure of `what` as the sink reports it: code by kind, the Google message, the fix. */
export function bigQueryFailure(
  err: unknown,
  what: string,
  context: { projectId: string; datasetId: string; table?: string },
): NanosyncError {
  if (err instanceof NanosyncError) return err;
  const kind = classifyBigQueryError(err);
  const where = context.table ? ` (table ${context.table})` : '';
  const message = `${what}${where} failed: ${googleMessage(err)}`;
  const details = context.table ? { table: context.table } : {};
  switch (kind) {
    case 'auth':
      return new NanosyncError(
        BigQueryErrorCode.BigQueryAuth,
        `${message}. Fix: ${authFix(context.projectId, context.datasetId)}`,
        { cause: err, retriable: false, details },
      );
    case 'retriable':
      return new NanosyncError(BigQueryErrorCode.BigQueryWrite, message, { cause: err, retriable: true, details });
    default:
      return new NanosyncError(BigQueryErrorCode.BigQueryWrite, message, { cause: err, retriable: false, details });
  }
}
