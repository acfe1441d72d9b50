import { defineSource } from '@nanosync/core';
import { configSchema, type PostgresSourceConfig, secretProperties } from './config.js';
import { PostgresSource } from './source.js';
import { postgresErrors } from './errors.js';

/**
 * `type: postgres` as a pipeline source: a CTID-partitioned snapshot read through the
 * replication slot's exported snapshot, then pgoutput logical replication from the slot's
 * consistent point.
 */
export default defineSource<PostgresSourceConfig>({
  type: 'postgres',
  configSchema,
  secretProperties,
  errorCodes: postgresErrors,
  create: (config, context) => new PostgresSource(config, context),
  // Raw snapshot chunks are decoded in worker threads by ./worker (src/worker.ts under tsx).
  workerModule: new URL('./worker.js', import.meta.url).href,
});

export { configSchema, type PostgresSourceConfig, type SslMode } from './config.js';
export { buildConnectionConfig, type PgConnectionConfig, SESSION_SETTINGS } from './connection.js';
export { publicationNameFor, sanitizeName, slotNameFor } from './slot/names.js';
export { PostgresSource, type PostgresSourceOptions } from './source.js';
