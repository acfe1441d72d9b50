import { configErrors, ErrorCode, NanosyncError } from '@nanosync/core';

/** Exit codes of every command. */
export const ExitCode = {
  Ok: 0,
  /** Something failed while doing the work (server unreachable, pipeline not found, runtime error). */
  Failure: 1,
  /** The request itself is wrong: bad arguments, invalid config, wrong token, port in use, unusable state folder. */
  Usage: 2,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A command was called wrongly. The message is printed with a pointer to `--help`. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

const USAGE_CODES = new Set<string>([
  ErrorCode.CliUsage,
  ErrorCode.ServerAuth,
  ErrorCode.PortInUse,
  ErrorCode.StateUnavailable,
  ErrorCode.SecretKey,
]);

/** Errors that mean "fix your input and try again" exit 2; everything else exits 1. */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof UsageError) return ExitCode.Usage;
  if (err instanceof NanosyncError) {
    if (configErrors.has(err.code) || USAGE_CODES.has(err.code)) return ExitCode.Usage;
  }
  return ExitCode.Failure;
}
