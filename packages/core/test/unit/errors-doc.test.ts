import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defineErrorArea, formatError, NanosyncError } from '../../src/index.js';
import { collectErrorAreas, ERRORS_DOC, REPO_ROOT, renderErrorsDoc } from '../../scripts/errors-doc.js';

/** Every `'NS_X1234'` literal in the non-test TypeScript sources, with the file it is in. */
function codeLiterals(): { code: string; file: string }[] {
  const found: { code: string; file: string }[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      if (name === 'node_modules' || name === 'dist' || name === 'test') continue;
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.tsx?$/.test(name)) {
        for (const m of readFileSync(path, 'utf8').matchAll(/['"](NS_[A-Z]\d{4})['"]/g)) {
          found.push({ code: m[1]!, file: relative(REPO_ROOT, path) });
        }
      }
    }
  };
  for (const root of ['packages', 'connectors', 'apps', 'examples']) {
    try {
      walk(join(REPO_ROOT, root));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return found;
}

describe('error codes', async () => {
  const areas = await collectErrorAreas();

  it('docs/errors.md is the one generated from the code tables (regenerate it with packages/core/scripts/errors-doc.ts)', () => {
    expect(readFileSync(ERRORS_DOC, 'utf8')).toBe(renderErrorsDoc(areas));
  });

  it('covers core and every first-party connector', () => {
    const owners = areas.map((a) => a.owner);
    expect(owners).toEqual(
      expect.arrayContaining([
        '@nanosync/core',
        '@nanosync/source-postgres',
        '@nanosync/sink-kafka',
        '@nanosync/sink-file',
      ]),
    );
  });

  it('no two areas share a block, and no code is declared twice', () => {
    const clashes: string[] = [];
    for (const [i, { area: a }] of areas.entries()) {
      for (const { area: b } of areas.slice(i + 1)) {
        if (a.letter === b.letter && a.range[0] <= b.range[1] && b.range[0] <= a.range[1])
          clashes.push(`${a.area} / ${b.area}`);
      }
    }
    expect(clashes).toEqual([]);
    const codes = areas.flatMap(({ area }) => area.entries.map((e) => e.code));
    expect(codes.length).toBe(new Set(codes).size);
  });

  it('every code used in the sources has an entry (meaning and fix)', () => {
    const known = new Set(areas.flatMap(({ area }) => area.entries.map((e) => e.code)));
    const missing = codeLiterals().filter((literal) => !known.has(literal.code));
    expect(missing).toEqual([]);
  });
});

describe('defineErrorArea', () => {
  it('refuses a code outside its block, a repeated code, and an entry without a fix', () => {
    const entry = (code: string, fix = 'do this') => ({ code, meaning: 'that happened', fix });
    expect(() =>
      defineErrorArea({ area: 'x', letter: 'Q', range: [4000, 4999], codes: { A: entry('NS_Q5000') } }),
    ).toThrow(/outside its block/);
    expect(() =>
      defineErrorArea({ area: 'x', letter: 'Q', range: [4000, 4999], codes: { A: entry('NS_P4001') } }),
    ).toThrow(/outside its block/);
    expect(() =>
      defineErrorArea({
        area: 'x',
        letter: 'Q',
        range: [4000, 4999],
        codes: { A: entry('NS_Q4001'), B: entry('NS_Q4001') },
      }),
    ).toThrow(/declared twice/);
    expect(() =>
      defineErrorArea({ area: 'x', letter: 'Q', range: [4000, 4999], codes: { A: entry('NS_Q4001', ' ') } }),
    ).toThrow(/meaning and a fix/);
    const area = defineErrorArea({ area: 'x', letter: 'Q', range: [4000, 4999], codes: { A: entry('NS_Q4001') } });
    expect([area.code.A, area.has('NS_Q4001'), area.has('NS_Q4002')]).toEqual(['NS_Q4001', true, false]);
  });

  it('keeps the code out of the message and prints it in front', () => {
    const err = new NanosyncError('NS_Q4001', 'table "t" is gone');
    expect(err.message).toBe('table "t" is gone');
    expect(formatError(err)).toBe('[NS_Q4001] table "t" is gone');
    expect(formatError(new Error('plain'))).toBe('plain');
  });
});
