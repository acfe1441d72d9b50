/**
 * Adaptive polling: back to back while a poll stopped at its row/byte bound (a backlog),
 * a short pause after a poll that found changes, then doubling while idle up to
 * `poll_interval` — so a busy pipeline keeps up and an idle one costs a couple of small
 * queries per interval.
 */
export const FIRST_IDLE_DELAY_MS = 25;

export interface PollOutcome {
  /** Events (not keepalives) were delivered. */
  changes: number;
  /** The poll stopped at its bound with more changes waiting. */
  backlog: boolean;
}

export function nextPollDelay(previousMs: number, outcome: PollOutcome, pollIntervalMs: number): number {
  if (outcome.backlog) return 0;
  if (outcome.changes > 0) return Math.min(FIRST_IDLE_DELAY_MS, pollIntervalMs);
  return Math.min(pollIntervalMs, Math.max(FIRST_IDLE_DELAY_MS, previousMs * 2));
}
