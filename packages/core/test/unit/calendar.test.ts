import { describe, expect, it } from 'vitest';
import { civilFromDays, daysFromCivil, formatYear } from '../../src/index.js';

describe('calendar math', () => {
  it('numbers days from 1970-01-01 across eras, leap days and year 0', () => {
    expect(daysFromCivil(1970, 1, 1)).toBe(0);
    expect(daysFromCivil(2000, 3, 1)).toBe(11017);
    expect(daysFromCivil(1969, 12, 31)).toBe(-1);
    expect(daysFromCivil(0, 1, 1)).toBe(-719528);
    expect(daysFromCivil(2024, 2, 29) + 1).toBe(daysFromCivil(2024, 3, 1));
  });

  it('turns every day of four centuries back into the date it came from', () => {
    const wrong: number[] = [];
    for (let days = daysFromCivil(1600, 1, 1); days < daysFromCivil(2001, 1, 1); days++) {
      const [y, m, d] = civilFromDays(days);
      if (daysFromCivil(y, m, d) !== days) wrong.push(days);
    }
    expect(wrong).toEqual([]);
    expect(civilFromDays(-719529)).toEqual([-1, 12, 31]);
  });

  it('writes years as the event model does', () => {
    expect([formatYear(1), formatYear(2024), formatYear(0), formatYear(-43), formatYear(10000)]).toEqual([
      '0001',
      '2024',
      '+0000',
      '-0043',
      '+10000',
    ]);
  });
});
