import { defineSink } from '@nanosync/core';
import { type SqliteSinkConfig, sqliteSinkConfigSchema } from './config.js';
import { SqliteSink } from './sqlite-sink.js';

/**
 * `type: sqlite` sinks. Installed as `nanosync-sink-sqlite`, it is found by name: a
 * connection `type: sqlite` used as a sink resolves this package.
 */
export default defineSink<SqliteSinkConfig>({
  type: 'sqlite',
  configSchema: sqliteSinkConfigSchema,
  create: (config) => new SqliteSink(config),
});

export { type SqliteSinkConfig, sqliteSinkConfigSchema } from './config.js';
export { SqliteSink, targetTable } from './sqlite-sink.js';
