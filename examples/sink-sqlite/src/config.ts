import type { PropertySchema } from '@nanosync/core';

/** The sink's properties: the SQLite database file to keep the tables in. */
export interface SqliteSinkConfig {
  /** Path of the database file; created when missing. Relative paths start at the server's working directory. */
  path: string;
}

type Issue = { path: PropertyKey[]; message: string };

/**
 * Core accepts any object with zod's `safeParse` shape, so a connector with one property
 * needs no schema library. Issue paths are relative to the properties; core turns them
 * into YAML paths (`pipelines[0].sink.properties.path`).
 */
export const sqliteSinkConfigSchema: PropertySchema<SqliteSinkConfig> = {
  safeParse(input) {
    const issues: Issue[] = [];
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      return { success: false, error: { issues: [{ path: [], message: 'expected an object of properties' }] } };
    }
    const { path, dsn: _dsn, ...rest } = input as Record<string, unknown>;
    if (path === undefined) issues.push({ path: ['path'], message: 'required: the SQLite database file to write to' });
    else if (typeof path !== 'string' || path.length === 0)
      issues.push({ path: ['path'], message: 'must be a non-empty string' });
    for (const key of Object.keys(rest))
      issues.push({ path: [key], message: `unknown property "${key}" (known: path)` });
    if (issues.length > 0) return { success: false, error: { issues } };
    return { success: true, data: { path: path as string } };
  },
};
