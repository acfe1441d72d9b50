import { describe } from 'vitest';

/**
 * A `describe` that can be skipped by name: with a reason, every test is registered and
 * reported as skipped under a title that says why (`… — skipped: needs SQL Server: …`),
 * and no hook runs, so the suite's factory is never called.
 */
export function suite(title: string, skip: string | false | undefined, body: () => void): void {
  if (skip) describe.skip(`${title} — skipped: ${skip}`, body);
  else describe(title, body);
}
