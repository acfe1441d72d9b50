/**
 * A Ctrl-C in a terminal reaches every process of the foreground group, and wrappers such as
 * `pnpm run` or `tsx` relay it to their child as well, so one key press can arrive twice
 * within milliseconds. A repeat this soon after the first is the same request; only a
 * later one means "stop now".
 */
export const REPEATED_SIGNAL_GRACE_MS = 1500;

export type SignalName = 'SIGINT' | 'SIGTERM';

/**
 * Call `onFirst` for the first SIGINT/SIGTERM and `onForce` for a later one (outside the
 * grace window). Returns a function that removes the listeners.
 */
export function onStopSignals(
  onFirst: (signal: SignalName) => void,
  onForce: (signal: SignalName) => void,
): () => void {
  let firstAt: number | undefined;
  const listener = (signal: SignalName) => {
    const now = Date.now();
    if (firstAt === undefined) {
      firstAt = now;
      onFirst(signal);
    } else if (now - firstAt > REPEATED_SIGNAL_GRACE_MS) {
      onForce(signal);
    }
  };
  process.on('SIGINT', listener);
  process.on('SIGTERM', listener);
  return () => {
    process.off('SIGINT', listener);
    process.off('SIGTERM', listener);
  };
}
