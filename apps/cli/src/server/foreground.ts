import type { Logger } from '@nanosync/core';
import type { CliIo } from '../io.js';
import type { RunningServer } from './start.js';

/** How long a clean stop may take before the process exits anyway. */
export const STOP_DEADLINE_MS = 10_000;

export const SERVING_BANNER = 'nanosync serving — Ctrl-C to stop';

/**
 * Keep the server running until SIGINT or SIGTERM, then stop it cleanly (checkpoint,
 * release leases). If that takes longer than {@link STOP_DEADLINE_MS}, or a second signal
 * arrives, the process exits at once with code 1.
 */
export async function serveUntilSignal(
  server: RunningServer,
  io: CliIo,
  logger: Logger,
  options: { banner?: boolean; onStopping?: () => Promise<void> | void } = {},
): Promise<number> {
  if (options.banner !== false) io.out(SERVING_BANNER);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (name: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(name);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  logger.info('shutting down', { signal });
  const forceExit = (why: string) => {
    io.err(`nanosync: ${why}; exiting without a clean stop`);
    process.exit(1);
  };
  const deadline = setTimeout(() => forceExit(`could not stop within ${STOP_DEADLINE_MS / 1000} s`), STOP_DEADLINE_MS);
  const again = () => forceExit('second signal');
  process.once('SIGINT', again);
  process.once('SIGTERM', again);
  try {
    await options.onStopping?.();
    await server.stop();
    logger.info('stopped cleanly');
    return 0;
  } finally {
    clearTimeout(deadline);
    process.off('SIGINT', again);
    process.off('SIGTERM', again);
  }
}
