import type { Logger } from '@nanosync/core';
import type { CliIo } from '../io.js';
import { onStopSignals, type SignalName } from '../signals.js';
import type { RunningServer } from './start.js';

/** How long a clean stop may take before the process exits anyway. */
export const STOP_DEADLINE_MS = 10_000;

export const SERVING_BANNER = 'nanosync serving — Ctrl-C to stop';

/**
 * Keep the server running until SIGINT or SIGTERM, then stop it cleanly (checkpoint,
 * release leases). If that takes longer than {@link STOP_DEADLINE_MS}, or the user signals
 * again (see {@link onStopSignals}), the process exits at once with code 1.
 */
export async function serveUntilSignal(
  server: RunningServer,
  io: CliIo,
  logger: Logger,
  options: {
    banner?: boolean;
    onStopping?: () => Promise<void> | void;
    /** Resolves with a reason to stop without a signal (`nanosync run`: its pipelines all ended). */
    until?: Promise<string>;
    /** The exit code of a clean stop (`nanosync run`: 1 when one of its pipelines is ERRORED). */
    exitCode?: () => number;
  } = {},
): Promise<number> {
  if (options.banner !== false) io.out(SERVING_BANNER);
  const forceExit = (why: string) => {
    io.err(`nanosync: ${why}; exiting without a clean stop`);
    process.exit(1);
  };
  // The listeners stay installed until the process exits: a relayed duplicate of the
  // signal arriving after the stop must not fall back to the default (kill) action.
  const signal = await new Promise<SignalName | string>((resolve) => {
    onStopSignals(resolve, () => forceExit('second signal'));
    void options.until?.then(resolve);
  });
  logger.info('shutting down', { signal });
  const deadline = setTimeout(() => forceExit(`could not stop within ${STOP_DEADLINE_MS / 1000} s`), STOP_DEADLINE_MS);
  try {
    await options.onStopping?.();
    await server.stop();
    logger.info('stopped cleanly');
    return options.exitCode?.() ?? 0;
  } finally {
    clearTimeout(deadline);
  }
}
