import { afterEach, describe, expect, it, vi } from 'vitest';
import { onStopSignals, REPEATED_SIGNAL_GRACE_MS } from '../../src/signals.js';

let remove: (() => void) | undefined;
afterEach(() => {
  remove?.();
  vi.useRealTimers();
});

describe('onStopSignals', () => {
  it('treats a relayed duplicate as the same request and a later signal as "stop now"', () => {
    vi.useFakeTimers();
    const calls: string[] = [];
    remove = onStopSignals(
      (s) => calls.push(`first ${s}`),
      (s) => calls.push(`force ${s}`),
    );
    process.emit('SIGINT', 'SIGINT');
    process.emit('SIGINT', 'SIGINT');
    expect(calls).toEqual(['first SIGINT']);
    vi.advanceTimersByTime(REPEATED_SIGNAL_GRACE_MS + 1);
    process.emit('SIGTERM', 'SIGTERM');
    expect(calls).toEqual(['first SIGINT', 'force SIGTERM']);
  });
});
