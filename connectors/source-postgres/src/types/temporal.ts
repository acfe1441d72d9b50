/**
 * Date/time text (DateStyle=ISO, any TimeZone) → the canonical strings of the event model.
 *
 * Server grammar with DateStyle=ISO:
 *   date         YYYY-MM-DD[ BC]             (year has 4 or more digits)
 *   time         HH:MM:SS[.f{1,6}]           (24:00:00 is a valid value)
 *   timetz       time followed by ±HH[:MM[:SS]]
 *   timestamp    date-part SP time-part[ BC]
 *   timestamptz  date-part SP time-part ±HH[:MM[:SS]][ BC]
 *   plus the words `infinity` and `-infinity` for date, timestamp and timestamptz.
 *
 * Output years use astronomical numbering (1 BC is year 0, 44 BC is year -43); years in
 * 0001–9999 are four digits, anything else gets a sign (`-0043`, `+0000`, `+10000`).
 */

import { civilFromDays, daysFromCivil, formatYear } from '@nanosync/core';

const DATE = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/;
const TIME = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/;
const TIMETZ = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?$/;
const TIMESTAMP = /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?( BC)?$/;
const TIMESTAMPTZ =
  /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?|(Z))( BC)?$/;

const FRACTION_PAD = '000000';

function fraction(f: string | undefined): string {
  return f === undefined ? FRACTION_PAD : f + FRACTION_PAD.slice(f.length);
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function astronomicalYear(digits: string, bc: string | undefined): number {
  const year = Number(digits);
  return bc ? 1 - year : year;
}

export class TemporalFormatError extends Error {}

function fail(kind: string, text: string): never {
  throw new TemporalFormatError(`not a ${kind} in ISO DateStyle: ${JSON.stringify(text.slice(0, 64))}`);
}

/** `YYYY-MM-DD` with a year in 1000–9999: already canonical. */
function isPlainDate(text: string): boolean {
  return (
    text.length === 10 && text.charCodeAt(4) === 0x2d && text.charCodeAt(7) === 0x2d && text.charCodeAt(0) !== 0x30
  );
}

/** `YYYY-MM-DD HH:MM:SS` + optional fraction, year 1000–9999, no BC: the common case, sliced instead of matched. */
function plainDateTimeLength(text: string): number {
  if (
    text.length < 19 ||
    text.charCodeAt(10) !== 0x20 ||
    !isPlainDate(text.slice(0, 10)) ||
    text.charCodeAt(13) !== 0x3a
  )
    return -1;
  let end = 19;
  if (text.charCodeAt(19) === 0x2e) {
    end = 20;
    while (end < text.length && end < 26 && text.charCodeAt(end) >= 0x30 && text.charCodeAt(end) <= 0x39) end++;
  }
  return end;
}

export function decodeDate(text: string): string {
  if (isPlainDate(text)) return text;
  if (text === 'infinity' || text === '-infinity') return text;
  const m = DATE.exec(text);
  if (!m) fail('date', text);
  return `${formatYear(astronomicalYear(m[1]!, m[4]))}-${m[2]}-${m[3]}`;
}

export function decodeTime(text: string): string {
  const m = TIME.exec(text);
  if (!m) fail('time', text);
  return `${m[1]}:${m[2]}:${m[3]}.${fraction(m[4])}`;
}

function formatOffset(sign: string, hh: string, mm: string | undefined, ss: string | undefined): string {
  const base = `${sign}${hh}:${mm ?? '00'}`;
  return ss && ss !== '00' ? `${base}:${ss}` : base;
}

export function decodeTimetz(text: string): string {
  const m = TIMETZ.exec(text);
  if (!m) fail('timetz', text);
  return `${m[1]}:${m[2]}:${m[3]}.${fraction(m[4])}${formatOffset(m[5]!, m[6]!, m[7], m[8])}`;
}

export function decodeTimestamp(text: string): string {
  const end = plainDateTimeLength(text);
  if (end === text.length)
    return `${text.slice(0, 10)}T${text.slice(11, 19)}.${fraction(end > 20 ? text.slice(20, end) : undefined)}`;
  if (text === 'infinity' || text === '-infinity') return text;
  const m = TIMESTAMP.exec(text);
  if (!m) fail('timestamp', text);
  return `${formatYear(astronomicalYear(m[1]!, m[8]))}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${fraction(m[7])}`;
}

/**
 * With TimeZone=UTC pinned on every connection the offset is always `+00` and this is a
 * reformat. Any other offset is converted to UTC, so a connection that missed the pin
 * still yields the same instant.
 */
export function decodeTimestamptz(text: string): string {
  const end = plainDateTimeLength(text);
  if (end > 0 && end + 3 === text.length && text.endsWith('+00')) {
    return `${text.slice(0, 10)}T${text.slice(11, 19)}.${fraction(end > 20 ? text.slice(20, end) : undefined)}Z`;
  }
  if (text === 'infinity' || text === '-infinity') return text;
  const m = TIMESTAMPTZ.exec(text);
  if (!m) fail('timestamptz', text);
  let year = astronomicalYear(m[1]!, m[13]);
  let month = Number(m[2]);
  let day = Number(m[3]);
  let hour = Number(m[4]);
  let minute = Number(m[5]);
  let second = Number(m[6]);
  const offsetSeconds =
    m[12] === 'Z' || m[8] === undefined
      ? 0
      : (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0));
  if (offsetSeconds !== 0) {
    const days = daysFromCivil(year, month, day);
    const total = days * 86400 + hour * 3600 + minute * 60 + second - offsetSeconds;
    const utcDays = Math.floor(total / 86400);
    let rest = total - utcDays * 86400;
    [year, month, day] = civilFromDays(utcDays);
    hour = Math.floor(rest / 3600);
    rest -= hour * 3600;
    minute = Math.floor(rest / 60);
    second = rest - minute * 60;
  }
  return `${formatYear(year)}-${pad2(month)}-${pad2(day)}T${pad2(hour)}:${pad2(minute)}:${pad2(second)}.${fraction(m[7])}Z`;
}
