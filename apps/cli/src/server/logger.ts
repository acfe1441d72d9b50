import type { Logger } from '@nanosync/core';
import { createLogger } from '@nanosync/core/host';
import { UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import { createJsonLogger } from './json-logger.js';

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
type Level = (typeof LEVELS)[number];
const FORMATS = ['text', 'json'] as const;

export const logLevelOption = { 'log-level': { type: 'string' }, 'log-format': { type: 'string' } } as const;
export const LOG_LEVEL_HELP = [
  '      --log-level L       debug | info | warn | error (default: NANOSYNC_LOG_LEVEL or info)',
  '      --log-format F      text (a timestamp, then `INF message key=value…`) or json (one',
  '                          object per line) (default: NANOSYNC_LOG_FORMAT or text)',
].join('\n');

/**
 * The server's logger on stderr: one line per event at `--log-level` / `NANOSYNC_LOG_LEVEL`,
 * as timestamped text or, with `--log-format json` / `NANOSYNC_LOG_FORMAT=json`, as JSON.
 */
export function serverLogger(option: string | undefined, io: CliIo, command: string, format?: string): Logger {
  const level = (option || io.env.NANOSYNC_LOG_LEVEL || 'info').toLowerCase();
  if (!(LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')} (got '${level}')`, command);
  }
  const chosen = (format || io.env.NANOSYNC_LOG_FORMAT || 'text').toLowerCase();
  if (!(FORMATS as readonly string[]).includes(chosen)) {
    throw new UsageError(`--log-format must be text or json (got '${chosen}')`, command);
  }
  const write = (line: string) => io.err(line);
  if (chosen === 'json') return createJsonLogger({ level: level as Level, write });
  return createLogger({ level: level as Level, write, timestamps: true });
}
