/**
 * @nanosync/state-postgres — nanosync's state store in PostgreSQL: pipelines, snapshot
 * partitions, checkpoints and leases in one schema, for servers that share a store.
 */
export { DEFAULT_SCHEMA, openPostgresStateStore, type PostgresStateStoreOptions, SCHEMA_VERSION } from './store.js';
