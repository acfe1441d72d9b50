import type { LogFields, Logger } from '../contract/logger.js';
import { formatError, NanosyncError, redact } from '../errors.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LoggerOptions {
  /** Lowest level written; `info` by default. */
  level?: LogLevel;
  /** Where finished lines go (without the newline); stderr by default. */
  write?: (line: string) => void;
  /** Fields added to every line (after the call's own fields). */
  fields?: LogFields;
  /** Prefix each line with an ISO 8601 UTC timestamp. Off by default (terminals, journald add their own). */
  timestamps?: boolean;
  /** Clock for the timestamp prefix (tests). */
  now?: () => Date;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const TAG: Record<LogLevel, string> = { debug: 'DBG', info: 'INF', warn: 'WRN', error: 'ERR' };

/** Field names whose values are never printed, whatever they contain. */
const SECRET_FIELD = /pass(word|wd)?|secret|token|credential|api[_-]?key|private[_-]?key/i;

/**
 * A line-per-record logger: `INF pipeline resuming name=orders-pipeline lsn=0/3A1B2C4D`.
 *
 * Messages and field values go through `redact()` (passwords in DSNs and `password=`
 * pairs), and fields whose name says they hold a secret print as `***`, so a caller who
 * logs a connection string or an error message cannot leak a password.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const sink: Sink = {
    min: RANK[options.level ?? 'info'],
    write: options.write ?? ((line) => process.stderr.write(`${line}\n`)),
    timestamps: options.timestamps ?? false,
    now: options.now ?? (() => new Date()),
  };
  return new LineLogger(sink, options.fields ? formatFields(options.fields) : '');
}

/** Fields describing an error for a log line, redacted: `{ error, code? }`. */
export function errorFields(err: unknown): LogFields {
  const fields: LogFields = { error: describeError(err) };
  if (err instanceof NanosyncError) fields.code = err.code;
  return fields;
}

/**
 * The error as people read it — `[NS_P4001] message`, with its cause's message when that
 * adds something — redacted, on one line.
 */
export function describeError(err: unknown): string {
  let text = err instanceof Error ? formatError(err) : String(err);
  const cause = err instanceof Error ? (err as { cause?: unknown }).cause : undefined;
  if (cause instanceof Error && cause.message && !text.includes(cause.message)) text += `: ${formatError(cause)}`;
  return redact(text).replace(/\s*\n\s*/g, ' ');
}

interface Sink {
  min: number;
  write: (line: string) => void;
  timestamps: boolean;
  now: () => Date;
}

class LineLogger implements Logger {
  constructor(
    private readonly sink: Sink,
    /** Pre-formatted ` k=v` text of the bound fields. */
    private readonly bound: string,
  ) {}

  debug(message: string, fields?: LogFields): void {
    this.log('debug', message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.log('info', message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    this.log('warn', message, fields);
  }
  error(message: string, fields?: LogFields): void {
    this.log('error', message, fields);
  }

  child(fields: LogFields): Logger {
    return new LineLogger(this.sink, formatFields(fields) + this.bound);
  }

  private log(level: LogLevel, message: string, fields: LogFields | undefined): void {
    if (RANK[level] < this.sink.min) return;
    let line = `${TAG[level]} ${redact(message).replace(/\s*\n\s*/g, ' ')}`;
    if (fields !== undefined) line += formatFields(fields);
    line += this.bound;
    if (this.sink.timestamps) line = `${this.sink.now().toISOString()} ${line}`;
    this.sink.write(line);
  }
}

function formatFields(fields: LogFields): string {
  let out = '';
  for (const key in fields) {
    const value = fields[key];
    if (value === undefined) continue;
    out += ` ${key}=${SECRET_FIELD.test(key) && value !== null ? '***' : formatValue(value)}`;
  }
  return out;
}

function formatValue(value: string | number | boolean | bigint | null): string {
  if (typeof value !== 'string') return String(value);
  const text = redact(value);
  if (text !== '' && !/[\s"=\\]/.test(text)) return text;
  return `"${text.replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')}"`;
}
