import { defineSink } from '@nanosync/core';
import { type BigQuerySinkConfig, bigQuerySinkPropertiesSchema } from './config.js';
import { bigQueryErrors } from './errors.js';
import { BigQuerySink } from './sink.js';

/** `type: bigquery` sinks: tables mirrored (CDC upserts or MERGE) or logged (append) in BigQuery. */
export default defineSink<BigQuerySinkConfig>({
  type: 'bigquery',
  configSchema: bigQuerySinkPropertiesSchema,
  secretProperties: ['credentials_json'],
  errorCodes: bigQueryErrors,
  create: (config, context) => new BigQuerySink(config, context),
});

export { BigQuerySink, eventId, type BigQuerySinkOptions, type TableMethod } from './sink.js';
export {
  type BigQuerySinkConfig,
  type WriteMode,
  type UpsertMethod,
  type TruncatePolicy,
  type InvalidRowPolicy,
  bigQuerySinkPropertiesSchema,
  parseBigQuerySinkConfig,
} from './config.js';
export type { BigQueryPort, TableInfo, DatasetInfo, AppendOutcome, RowError, QueryOptions } from './client/port.js';
export { GoogleBigQuery } from './client/google.js';
export { tableNameFor, columnNameFor, quoteIdentifier } from './naming.js';
export { targetTableFor, createTableSql, planSchemaChange, type TargetTable } from './schema/target-table.js';
export { bigQueryTypeOf, type BigQueryType, type BigQueryField } from './schema/types.js';
export { SequenceNumbers, compareSequenceNumbers } from './write/sequence.js';
export { mergeSql } from './merge/merge-sql.js';
