/**
 * Canonical temporal strings of the event model ⇄ the numbers the binary formats carry.
 *
 * Avro and Protobuf messages carry dates as days since 1970-01-01 (int32) and times and
 * timestamps as microseconds (int64), the same units PostgreSQL stores. The infinities
 * map to the extreme values of those integers, again as PostgreSQL does internally, so
 * every canonical value has exactly one number and every number decodes to one string.
 *
 * Canonical grammar (see `LogicalType` in @nanosync/core):
 *   date        YYYY-MM-DD, years outside 0001–9999 signed (`-0043`, `+0000`, `+10000`)
 *   time        HH:MM:SS.ffffff (24:00:00 allowed)
 *   timestamp   date `T` time;  timestamptz the same with a trailing `Z`
 *   infinity    `infinity` / `-infinity` for date, timestamp and timestamptz
 */

import { civilFromDays, daysFromCivil, formatYear } from '@nanosync/core';

export const DATE_POS_INFINITY = 2147483647;
export const DATE_NEG_INFINITY = -2147483648;
export const TIMESTAMP_POS_INFINITY = 9223372036854775807n;
export const TIMESTAMP_NEG_INFINITY = -9223372036854775808n;

const DATE = /^([+-]?)(\d{4,})-(\d\d)-(\d\d)$/;
const TIME = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/;
const TIMESTAMP = /^([+-]?)(\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(Z?)$/;

const MICROS_PER_SECOND = 1_000_000n;
const MICROS_PER_DAY = 86_400_000_000n;

export class TemporalValueError extends Error {}

function fail(kind: string, value: unknown): never {
  throw new TemporalValueError(`not a canonical ${kind}: ${JSON.stringify(String(value).slice(0, 64))}`);
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function parseYear(sign: string, digits: string): number {
  const year = Number(digits);
  return sign === '-' ? -year : year;
}

function checkCalendar(kind: string, value: string, month: number, day: number): void {
  if (month < 1 || month > 12 || day < 1 || day > 31) fail(kind, value);
}

export function dateToDays(value: string): number {
  if (value === 'infinity') return DATE_POS_INFINITY;
  if (value === '-infinity') return DATE_NEG_INFINITY;
  const m = DATE.exec(value);
  if (!m) fail('date', value);
  const month = Number(m[3]);
  const day = Number(m[4]);
  checkCalendar('date', value, month, day);
  return daysFromCivil(parseYear(m[1]!, m[2]!), month, day);
}

export function daysToDate(days: number): string {
  if (days === DATE_POS_INFINITY) return 'infinity';
  if (days === DATE_NEG_INFINITY) return '-infinity';
  const [y, m, d] = civilFromDays(days);
  return `${formatYear(y)}-${pad2(m)}-${pad2(d)}`;
}

function fractionMicros(fraction: string | undefined): bigint {
  return fraction === undefined ? 0n : BigInt(fraction.padEnd(6, '0'));
}

export function timeToMicros(value: string): bigint {
  const m = TIME.exec(value);
  if (!m) fail('time', value);
  const seconds = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  if (Number(m[2]) > 59 || Number(m[3]) > 60 || seconds > 86400) fail('time', value);
  return BigInt(seconds) * MICROS_PER_SECOND + fractionMicros(m[4]);
}

function formatClock(micros: bigint): string {
  const seconds = Number(micros / MICROS_PER_SECOND);
  const fraction = String(micros % MICROS_PER_SECOND).padStart(6, '0');
  const h = Math.floor(seconds / 3600);
  const min = Math.floor((seconds % 3600) / 60);
  return `${pad2(h)}:${pad2(min)}:${pad2(seconds % 60)}.${fraction}`;
}

export function microsToTime(micros: bigint): string {
  if (micros < 0n || micros > MICROS_PER_DAY) fail('time', micros);
  return formatClock(micros);
}

/** `withZone` selects timestamptz (a trailing `Z` is required) over timestamp (none allowed). */
export function timestampToMicros(value: string, withZone: boolean): bigint {
  if (value === 'infinity') return TIMESTAMP_POS_INFINITY;
  if (value === '-infinity') return TIMESTAMP_NEG_INFINITY;
  const m = TIMESTAMP.exec(value);
  if (!m || (m[9] === 'Z') !== withZone) fail(withZone ? 'timestamptz' : 'timestamp', value);
  const month = Number(m[3]);
  const day = Number(m[4]);
  checkCalendar('timestamp', value, month, day);
  const days = daysFromCivil(parseYear(m[1]!, m[2]!), month, day);
  const seconds = Number(m[5]) * 3600 + Number(m[6]) * 60 + Number(m[7]);
  return BigInt(days) * MICROS_PER_DAY + BigInt(seconds) * MICROS_PER_SECOND + fractionMicros(m[8]);
}

export function microsToTimestamp(micros: bigint, withZone: boolean): string {
  if (micros === TIMESTAMP_POS_INFINITY) return 'infinity';
  if (micros === TIMESTAMP_NEG_INFINITY) return '-infinity';
  let days = micros / MICROS_PER_DAY;
  let rest = micros % MICROS_PER_DAY;
  if (rest < 0n) {
    rest += MICROS_PER_DAY;
    days -= 1n;
  }
  const [y, m, d] = civilFromDays(Number(days));
  return `${formatYear(y)}-${pad2(m)}-${pad2(d)}T${formatClock(rest)}${withZone ? 'Z' : ''}`;
}

/**
 * A commit time (ISO 8601 UTC, fraction of up to six digits, `Z` or `+00:00`) as
 * microseconds since the epoch. Returns undefined when the text is not in that form.
 */
export function commitTimeToMicros(value: string): bigint | undefined {
  const normalised = value.replace(/\+00(?::?00)?$/, 'Z');
  try {
    return timestampToMicros(normalised, true);
  } catch {
    return undefined;
  }
}
