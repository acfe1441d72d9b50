export type LogFields = Record<string, string | number | boolean | bigint | null | undefined>;

/**
 * Structured logger. Lines look like `INF pipeline resuming name=orders lsn=0/3A1B2C4D`.
 * Connectors log through the logger they are given, never to the console directly.
 */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}
