import type { Logger } from '@nanosync/core';
import { createLogger } from '@nanosync/core/host';
import { UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
type Level = (typeof LEVELS)[number];

export const logLevelOption = { 'log-level': { type: 'string' } } as const;
export const LOG_LEVEL_HELP =
  '      --log-level L       debug | info | warn | error (default: NANOSYNC_LOG_LEVEL or info)';

/** The server's logger: structured lines on stderr, at `--log-level` / `NANOSYNC_LOG_LEVEL`. */
export function serverLogger(option: string | undefined, io: CliIo, command: string): Logger {
  const level = (option || io.env.NANOSYNC_LOG_LEVEL || 'info').toLowerCase();
  if (!(LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')} (got '${level}')`, command);
  }
  return createLogger({ level: level as Level, write: (line) => io.err(line) });
}
