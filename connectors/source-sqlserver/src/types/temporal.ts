/**
 * SQL Server's temporal text (what the CONVERT styles in `select-expression.ts` print) to
 * the event model's canonical strings.
 *
 *   date            `YYYY-MM-DD` (style 23)
 *   time(p)         `hh:mm:ss[.f{p}]` (CAST to varchar)
 *   datetime2(p)    `YYYY-MM-DD hh:mm:ss[.f{p}]` (style 121)
 *   datetimeoffset  `YYYY-MM-DD hh:mm:ss[.f{p}] {+|-}hh:mm` (CAST to varchar)
 *
 * SQL Server keeps up to seven fractional digits (100 ns). The event model's `time`,
 * `timestamp` and `timestamptz` carry six; columns that can hold a seventh are carried as
 * text with all seven digits unless the pipeline asks for microseconds (see `mapping.ts`).
 */

import { civilFromDays, daysFromCivil, formatYear } from '@nanosync/core';

const DATE = /^(\d{4})-(\d\d)-(\d\d)$/;
const TIME = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,7}))?$/;
const DATETIME = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,7}))?$/;
const DATETIMEOFFSET = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,7}))? ?(?:([+-])(\d\d):(\d\d)|Z)$/;

export class TemporalTextError extends Error {}

function fail(kind: string, text: string): never {
  throw new TemporalTextError(`unexpected ${kind} text from the server: ${JSON.stringify(text.slice(0, 48))}`);
}

/** Fraction digits padded (or cut) to `digits`. */
function fraction(f: string | undefined, digits: number): string {
  return (f ?? '').padEnd(digits, '0').slice(0, digits);
}

export function canonicalDate(text: string): string {
  if (!DATE.test(text)) fail('date', text);
  return text;
}

/** `digits` = 6 (canonical `time`) or 7 (exact text). */
export function canonicalTime(text: string, digits: 6 | 7): string {
  const m = TIME.exec(text);
  if (!m) fail('time', text);
  return `${m[1]}:${m[2]}:${m[3]}.${fraction(m[4], digits)}`;
}

export function canonicalTimestamp(text: string, digits: 6 | 7): string {
  const m = DATETIME.exec(text);
  if (!m) fail('datetime', text);
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${fraction(m[7], digits)}`;
}

/** A datetimeoffset as the same instant in UTC with `Z` (the offset itself is not kept). */
export function canonicalTimestampUtc(text: string, digits: 6 | 7): string {
  const m = DATETIMEOFFSET.exec(text);
  if (!m) fail('datetimeoffset', text);
  const [year, month, day, hour, minute] = [m[1], m[2], m[3], m[4], m[5]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const offsetMinutes = m[8] ? (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 60 + Number(m[10])) : 0;
  // Minutes since the epoch of the local wall time, minus the offset = UTC minutes.
  const utcMinutes = daysFromCivil(year, month, day) * 1440 + hour * 60 + minute - offsetMinutes;
  const days = Math.floor(utcMinutes / 1440);
  const minuteOfDay = utcMinutes - days * 1440;
  const [y, mo, d] = civilFromDays(days);
  return `${formatYear(y)}-${pad2(mo)}-${pad2(d)}T${pad2(Math.floor(minuteOfDay / 60))}:${pad2(minuteOfDay % 60)}:${m[6]}.${fraction(m[7], digits)}Z`;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}
