export { ENV_KAFKA_BROKERS, ENV_MSSQL_URL, ENV_PG_URL, dockerAvailable } from './env.js';
export { NanosyncTestUnavailable, ServiceStartError, ServiceUnavailableError } from './errors.js';
export { DEFAULT_PG_SETTINGS, type PostgresService, type StartPostgresOptions, startPostgres } from './postgres.js';
export {
  ENV_KAFKA_LIBDIR,
  KAFKA_VERSION,
  type KafkaPorts,
  type KafkaService,
  type StartKafkaOptions,
  defaultKafkaProperties,
  kafkaLibDir,
  startKafka,
} from './kafka.js';
export {
  SQLSERVER_UNAVAILABLE,
  type SqlServerService,
  sqlServerUnavailableReason,
  startSqlServer,
} from './sqlserver.js';
