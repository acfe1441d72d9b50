/**
 * Proleptic Gregorian calendar arithmetic on day numbers (days since 1970-01-01), for
 * any astronomical year (year 0 is 1 BC). Connectors use it to turn a source's date
 * representation into the event model's canonical text and back, without `Date`, whose
 * range ends at ±275,760 years and which knows nothing of PostgreSQL's year 0.
 * The algorithm is Howard Hinnant's `days_from_civil` / `civil_from_days`.
 */

/** Days since 1970-01-01 of a calendar date. */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

/** The calendar date of a day number: `[year, month 1–12, day 1–31]`. */
export function civilFromDays(days: number): [year: number, month: number, day: number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const dayOfEra = z - era * 146097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36524) - Math.floor(dayOfEra / 146096)) / 365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const mp = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [era * 400 + yearOfEra + (month <= 2 ? 1 : 0), month, day];
}

/**
 * An astronomical year as the event model writes it: `YYYY` inside 1–9999, otherwise
 * signed with at least four digits (`-0043`, `+0000`, `+10000`).
 */
export function formatYear(year: number): string {
  if (year >= 1 && year <= 9999) return String(year).padStart(4, '0');
  return (year < 0 ? '-' : '+') + String(Math.abs(year)).padStart(4, '0');
}
