/**
 * The connector API: what a source or sink needs to be written against nanosync — the
 * contract, the event model, errors, and value helpers shared by connectors. It loads
 * nothing heavy (no SQLite, Prometheus or YAML); the runtime that hosts connectors is
 * `@nanosync/core/host`. A test checks that importing this entry stays that light.
 */
export * from './model.js';
export * from './errors.js';
export * from './contract/connector.js';
export type * from './contract/logger.js';
export { parseTableName, formatTableName } from './config/table-name.js';
export { DEFAULT_RETRY_POLICY, backoffDelay, sleep, within } from './runtime/backoff.js';
export { deadLetterJson } from './runtime/dead-letters.js';
export type { RetryPolicy } from './runtime/backoff.js';
export { serveTasks } from './runtime/worker-task.js';
export type { TaskHandler, TaskResult, WorkerSetup } from './runtime/worker-task.js';
export { civilFromDays, daysFromCivil, formatYear } from './values/calendar.js';
export { ConnectionUrlError, hasUrlScheme, parseConnectionUrl } from './values/connection-url.js';
export type { ConnectionUrl } from './values/connection-url.js';
export { readTlsFile } from './values/tls-file.js';
export { keyString, rowIdentity } from './values/key-string.js';
export { copyRange, hasNegativeZero, jsonValueText, putBytes } from './values/json-text.js';
export { keyMaker, rowMaker, setRowField } from './values/row-maker.js';
export type { RowMaker } from './values/row-maker.js';
