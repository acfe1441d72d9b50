/**
 * One error type for the whole project, with a closed set of codes ranged by area.
 * Retry loops read `retriable`, never the message. Messages name the pipeline, table,
 * column, key and position that matter, and the fix when there is one. They never
 * contain secrets: pass values through `redact()` before building a message from input.
 */
export const ErrorCode = {
  // 1xxx config
  ConfigInvalid: 'NS_C1001',
  ConfigUnknownKey: 'NS_C1002',
  ConfigMissingEnv: 'NS_C1003',
  ConfigYaml: 'NS_C1004',
  ConnectorNotFound: 'NS_C1101',
  ConnectorInvalid: 'NS_C1102',
  // 2xxx runtime / core
  PipelineNotFound: 'NS_R2001',
  PipelineLeaseHeld: 'NS_R2002',
  PipelineStopped: 'NS_R2003',
  /** The pipeline asks for something its source cannot do (a `query` pipeline on a source without SQL). */
  PipelineUnsupported: 'NS_R2004',
  /** A sink's write failed and was not retriable, or retries ran out. */
  SinkWriteFailed: 'NS_R2005',
  /** A preflight `check()` of the source or a sink failed at start; nothing was created. */
  PreflightFailed: 'NS_R2006',
  Internal: 'NS_R2099',
  // 3xxx state
  StateUnavailable: 'NS_S3001',
  StateCorrupt: 'NS_S3002',
  SecretKey: 'NS_S3003',
  // 4xxx postgres source
  PgConnection: 'NS_P4001',
  PgPermission: 'NS_P4002',
  PgTableNotFound: 'NS_P4003',
  PgNoReplicaIdentity: 'NS_P4004',
  PgSlotMissing: 'NS_P4005',
  PgSlotInvalidated: 'NS_P4006',
  PgWalLevel: 'NS_P4007',
  PgInvalidName: 'NS_P4008',
  PgProtocol: 'NS_P4009',
  PgValue: 'NS_P4010',
  PgCheck: 'NS_P4011',
  // 5xxx sqlserver source
  MssqlConnection: 'NS_M5001',
  MssqlCdcDisabled: 'NS_M5002',
  MssqlChangesLost: 'NS_M5003',
  MssqlPermission: 'NS_M5004',
  MssqlTableNotFound: 'NS_M5005',
  /** A table without primary key and without a usable unique index. */
  MssqlNoKey: 'NS_M5006',
  MssqlValue: 'NS_M5007',
  MssqlCheck: 'NS_M5008',
  /** A stored position or partition bound that is not this source's. */
  MssqlProtocol: 'NS_M5009',
  // 6xxx kafka sink
  KafkaConnection: 'NS_K6001',
  KafkaTopicMissing: 'NS_K6002',
  KafkaMessageTooLarge: 'NS_K6003',
  KafkaProduce: 'NS_K6004',
  KafkaAuth: 'NS_K6005',
  KafkaEncode: 'NS_K6006',
  // 7xxx bigquery sink
  /** An append or MERGE failed permanently, or retries ran out. */
  BigQueryWrite: 'NS_B7001',
  /** Credentials missing, unreadable or refused; project or dataset unreachable. */
  BigQueryAuth: 'NS_B7002',
  /** A source table's schema cannot be mapped onto (or evolved into) its BigQuery table. */
  BigQuerySchema: 'NS_B7003',
  /** A value BigQuery cannot hold (out-of-range date, NaN in NUMERIC…); names table, column, key. */
  BigQueryValue: 'NS_B7004',
  /** An event the chosen write method cannot apply (unchanged columns on a CDC table, TRUNCATE by policy). */
  BigQueryUnsupported: 'NS_B7005',
  // 8xxx file sink
  FileSinkWrite: 'NS_F8001',
  // 9xxx cli / server
  CliUsage: 'NS_X9001',
  ServerUnavailable: 'NS_X9002',
  ServerAuth: 'NS_X9003',
  PortInUse: 'NS_X9004',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface NanosyncErrorOptions {
  retriable?: boolean;
  cause?: unknown;
  /** Structured context (pipeline, table, key, position); printed by the logger, never secrets. */
  details?: Record<string, string | number | boolean | undefined>;
}

export class NanosyncError extends Error {
  override readonly name = 'NanosyncError';
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: Record<string, string | number | boolean | undefined>;

  constructor(code: ErrorCode, message: string, options: NanosyncErrorOptions = {}) {
    super(`[${code}] ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.details = options.details ?? {};
  }

  static is(err: unknown, code?: ErrorCode): err is NanosyncError {
    return err instanceof NanosyncError && (code === undefined || err.code === code);
  }
}

/** True when an error (or its cause chain) says a retry may succeed. Unknown errors are not retriable. */
export function isRetriable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof NanosyncError) return e.retriable;
    if (typeof e === 'object' && e !== null && (e as { retriable?: unknown }).retriable === true) return true;
  }
  return false;
}

/** Replace the password in a URL/DSN (`postgres://u:secret@h/db` → `postgres://u:***@h/db`) and `password=` pairs. */
export function redact(text: string): string {
  return (
    text
      // user:password@ — up to the last `@` of the token, as URL parsers split an unencoded `@` in a password.
      .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)(\S*)(@)/gi, '$1***$3')
      // password=…, ssl_key_password: …, sslpassword=…, "password":"…" (JSON)
      .replace(/\b([a-z0-9_]*(?:password|passwd|pwd|secret))("?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&;,"]+)/gi, '$1$2***')
  );
}
