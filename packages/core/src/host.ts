/**
 * The host: what runs connectors — config loading and validation, connector discovery,
 * the state store, secrets, logging, metrics and the pipeline runtime. Used by the CLI
 * and by tests that run whole pipelines; a connector imports `@nanosync/core` instead.
 */
export type * from './state/store.js';
export { ConfigError, formatPath } from './config/issues.js';
export type { ConfigIssue, PathSegment } from './config/issues.js';
export { loadConfigFile, parseConfig } from './config/load.js';
export type { LoadedConfig, ParseConfigOptions } from './config/load.js';
export { resolveConfig, resolvePipelines, validateConnectors } from './config/connectors.js';
export type { ResolvedConfig } from './config/connectors.js';
export {
  decryptTree,
  materializePipeline,
  toStoredDefinitions,
  secretNamesOfDefinition,
  stableStringify,
} from './config/stored-definition.js';
export type { MaterializedPipeline, StoredPipeline } from './config/stored-definition.js';
export { parseSchedule } from './config/schedule.js';
export { substituteEnv } from './config/env.js';
export { REPLICATION_TYPES, FILTER_OPS, DEFAULT_WORKERS, MAX_WORKERS } from './config/types.js';
export { resolveWorkerCount } from './config/read-pipelines.js';
export type {
  ConnectionConfig,
  FilterOp,
  NanosyncConfig,
  PipelineConfig,
  ReplicationType,
  SinkConfig,
  StoredPipelineDefinition,
  TargetMapping,
  TargetMappingFilter,
  WorkersSetting,
} from './config/types.js';
export { connectorCandidates } from './discovery/candidates.js';
export type { ConnectorKind } from './discovery/candidates.js';
export { checkDefinition, createConnectorResolver } from './discovery/resolver.js';
export { findWorkspaceRoot, readWorkspace, type Workspace } from './discovery/workspace.js';
export type { ConnectorResolver, ConnectorResolverOptions } from './discovery/resolver.js';
export { decryptSecret, encryptSecret, isEncryptedSecret } from './secrets/cipher.js';
export { loadOrCreateSecretKey, parseSecretKey } from './secrets/secret-key.js';
export { DEFAULT_SECRET_NAMES, isSecretName, literalSecretPaths, redactConfig } from './secrets/secret-fields.js';
export { openSqliteStateStore } from './state/sqlite.js';
export { connectorMemoryKey, createConnectorMemory, type ConnectorMemoryOptions } from './runtime/connector-memory.js';
export { fenceHolds, leaseFenceError } from './state/fence.js';
export { createLogger, describeError, errorFields } from './log/logger.js';
export type { LoggerOptions, LogLevel } from './log/logger.js';
export { type AppliedPipeline, type ApplyEffects, applyEffects } from './runtime/apply-effects.js';
export { Engine } from './runtime/engine.js';
export type {
  DeleteResult,
  EngineOptions,
  StoredDefinitionInfo,
  EngineStateEvent,
  EngineWarningEvent,
} from './runtime/engine.js';
export { DEFAULT_RUNTIME_OPTIONS } from './runtime/types.js';
export { PreflightError } from './runtime/preflight.js';
export type { PreflightFailure } from './runtime/preflight.js';
export type { MaterializedSink, RuntimeOptions, RuntimeOverrides } from './runtime/types.js';
export { WRITE_LATENCY_BUCKETS } from './runtime/stats.js';
export { OrderedWorkerPool } from './runtime/worker-pool.js';
export type { OrderedWorkerPoolOptions, PoolTask } from './runtime/worker-pool.js';
export type {
  LatencyHistogram,
  PipelineStatus,
  RetryStatus,
  SinkStatus,
  SnapshotProgress,
  WorkersStatus,
  SourceStatus,
  TableStatus,
} from './runtime/stats.js';
export { METRIC_NAMES, PIPELINE_STATES, PrometheusExporter } from './metrics/prometheus.js';
