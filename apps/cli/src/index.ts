/**
 * The `nanosync` CLI as a library: what `bin.ts` runs, for embedding and tests.
 */
export { commands, main, overview, version } from './cli.js';
export type { Command } from './commands/command.js';
export { builtinConnectors, connectorResolver } from './connectors.js';
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
