const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;
const MAX_INTERVAL_SECONDS = 366 * 86_400;

/**
 * A `query` pipeline's schedule: a whole number and a unit, `30s`, `5m`, `1h`, `1d`.
 * Returns the interval in seconds, or a message saying what is wrong.
 */
export function parseSchedule(value: unknown): number | string {
  const expected = 'schedule must be a whole number followed by s, m, h or d, e.g. "30s", "5m", "1h", "1d"';
  if (typeof value !== 'string')
    return `${expected}; found ${typeof value === 'number' ? `the number ${value}` : typeof value}`;
  const match = /^\s*(\d+)\s*([smhd])\s*$/.exec(value);
  if (match === null) return `${expected}; found "${value}"`;
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2] as keyof typeof UNIT_SECONDS];
  if (seconds < 1) return `schedule must be at least 1s; found "${value}"`;
  if (seconds > MAX_INTERVAL_SECONDS) return `schedule must be at most 366d; found "${value}"`;
  return seconds;
}
