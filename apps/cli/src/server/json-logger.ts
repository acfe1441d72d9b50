import { type LogFields, type Logger, redact } from '@nanosync/core';

export type JsonLogLevel = 'debug' | 'info' | 'warn' | 'error';

const RANK: Record<JsonLogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
/** Field names whose values are never printed (the same rule as the text logger). */
const SECRET_FIELD = /pass(word|wd)?|secret|token|credential|api[_-]?key|private[_-]?key/i;

/**
 * One JSON object per line for log shippers:
 * `{"time":"2026-12-04T15:04:05.123Z","level":"info","msg":"pipeline created","name":"orders"}`.
 * Messages and string values are redacted like the text logger's; secret-named fields print `***`.
 */
export function createJsonLogger(options: {
  level: JsonLogLevel;
  write: (line: string) => void;
  now?: () => Date;
}): Logger {
  return new JsonLogger(RANK[options.level], options.write, options.now ?? (() => new Date()), {});
}

class JsonLogger implements Logger {
  constructor(
    private readonly min: number,
    private readonly write: (line: string) => void,
    private readonly now: () => Date,
    private readonly bound: Record<string, unknown>,
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
    return new JsonLogger(this.min, this.write, this.now, { ...this.bound, ...clean(fields) });
  }

  private log(level: JsonLogLevel, message: string, fields: LogFields | undefined): void {
    if (RANK[level] < this.min) return;
    const record = { time: this.now().toISOString(), level, msg: redact(message), ...this.bound, ...clean(fields) };
    this.write(JSON.stringify(record));
  }
}

function clean(fields: LogFields | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key in fields) {
    const value = fields[key];
    if (value === undefined) continue;
    if (SECRET_FIELD.test(key) && value !== null) out[key] = '***';
    else if (typeof value === 'string') out[key] = redact(value);
    else if (typeof value === 'bigint') out[key] = value.toString();
    else out[key] = value;
  }
  return out;
}
