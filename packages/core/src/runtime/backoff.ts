/**
 * How often and how patiently a failed step is retried. Only errors that say they are
 * `retriable` (see `isRetriable`) are retried; the rest stop the pipeline at once.
 */
export interface RetryPolicy {
  /** Attempts in total, the first included. `Infinity` retries for as long as the error stays retriable. */
  maxAttempts: number;
  /** Delay before the second attempt; doubles each time. */
  baseDelayMs: number;
  /** Upper bound of a single delay. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 20, baseDelayMs: 500, maxDelayMs: 30_000 };

/**
 * Delay before retry number `retry` (1 = first retry): exponential, capped, with "equal
 * jitter" (between half and all of the step) so processes that failed together do not
 * retry in lockstep.
 */
export function backoffDelay(
  retry: number,
  policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>,
  random: () => number = Math.random,
): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.round(step / 2 + (random() * step) / 2);
}

/** Resolves after `ms` (never, for `Infinity`), or early (without throwing) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    // setTimeout clamps anything past 2^31-1 ms to 1 ms (with a warning): an endless wait has no timer.
    const timer = Number.isFinite(ms) ? setTimeout(done, Math.min(ms, 2 ** 31 - 1)) : undefined;
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** Wait for `promise` at most `ms` (the timer is cleared either way); true when it settled in time, rejected or not. */
export async function within(promise: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (promise === undefined) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
