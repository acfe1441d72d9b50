/**
 * The `nanosync` CLI as a library: what `bin.ts` runs, for embedding and tests.
 */
export { commands, main, overview, version } from './cli.js';
export type { Command } from './commands/command.js';
export { connectorResolver } from './connectors.js';
export { ExitCode, exitCodeFor, UsageError } from './exit-codes.js';
export type { CliIo } from './io.js';
export { processIo } from './io.js';
export type { AdminEngine, ApplyEntry, ApplyResult } from './server/admin-engine.js';
export {
  type AdminServer,
  createAdminHandler,
  listenAdmin,
  type Route,
  type RouteContext,
  type RouteResult,
} from './server/http.js';
export { adminRoutes } from './server/routes/index.js';
export { type RunningServer, type StartServerOptions, startServer } from './server/start.js';
// Building blocks the private quickstart package (apps/quickstart) runs a server with.
export { storedEntries } from './commands/apply.js';
export { type CheckedConfig, checkConfigFile } from './config-check.js';
export { formatLag, formatRate } from './format.js';
export { SERVING_BANNER, STOP_DEADLINE_MS } from './server/foreground.js';
export { serverLogger } from './server/logger.js';
export { onStopSignals } from './signals.js';
export { defaultStateFile, type StatePaths, statePaths } from './state-paths.js';
