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

function formatYear(year: number): string {
  if (year >= 1 && year <= 9999) return String(year).padStart(4, '0');
  return (year < 0 ? '-' : '+') + String(Math.abs(year)).padStart(4, '0');
}

/** Days since 1970-01-01, proleptic Gregorian. */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

export function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d];
}
