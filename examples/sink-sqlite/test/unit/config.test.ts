import { describe, expect, it } from 'vitest';
import { sqliteSinkConfigSchema } from '../../src/index.js';

describe('sqlite sink properties', () => {
  it('accepts a path (and ignores a connection dsn)', () => {
    expect(sqliteSinkConfigSchema.safeParse({ path: 'out.db', dsn: 'x' })).toEqual({
      success: true,
      data: { path: 'out.db' },
    });
  });

  it('names a missing path and an unknown property by their paths', () => {
    const result = sqliteSinkConfigSchema.safeParse({ pth: 'out.db' });
    expect(result.success).toBe(false);
    if (!result.success)
      expect(result.error.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
        ['path', 'required: the SQLite database file to write to'],
        ['pth', 'unknown property "pth" (known: path)'],
      ]);
  });
});
