import { defineSource } from '@nanosync/core';
import { configSchema, type SqlServerSourceConfig, secretProperties } from './config.js';
import { sqlServerErrors } from './errors.js';
import { SqlServerSource } from './source.js';

/**
 * `type: sqlserver` as a pipeline source: a primary-key-range parallel snapshot, then the
 * CDC change tables of the pipeline's tables, merged into one commit-ordered stream.
 */
export default defineSource<SqlServerSourceConfig>({
  type: 'sqlserver',
  configSchema,
  secretProperties,
  errorCodes: sqlServerErrors,
  create: (config, context) => new SqlServerSource(config, context),
});

export { configSchema, type SqlServerSourceConfig } from './config.js';
export { boundaryPosition, comparePositions, formatPosition } from './position.js';
export { managedInstanceName } from './cdc/manage.js';
export { SqlServerSource } from './source.js';
