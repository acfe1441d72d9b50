export { dockerAvailable, ENV_KAFKA_BROKERS, ENV_MSSQL_URL, ENV_PG_URL, freePort } from './env.js';
export { NanosyncTestUnavailable, ServiceStartError, ServiceUnavailableError } from './errors.js';
export {
  defaultKafkaProperties,
  ENV_KAFKA_LIBDIR,
  KAFKA_VERSION,
  type KafkaPorts,
  type KafkaService,
  kafkaLibDir,
  type StartKafkaOptions,
  startKafka,
} from './kafka.js';
export {
  OIDC_AUDIENCE,
  type OidcProviderOptions,
  type OidcProviderService,
  type OidcTokenOptions,
  startOidcProvider,
} from './oidc.js';
export { DEFAULT_PG_SETTINGS, type PostgresService, type StartPostgresOptions, startPostgres } from './postgres.js';
export {
  SQLSERVER_UNAVAILABLE,
  type SqlServerService,
  sqlServerUnavailableReason,
  startSqlServer,
} from './sqlserver.js';
export {
  APICURIO_VERSION,
  apicurioDir,
  ENV_SCHEMA_REGISTRY_URL,
  type SchemaRegistryOptions,
  type SchemaRegistryService,
  startSchemaRegistry,
} from './schema-registry.js';
