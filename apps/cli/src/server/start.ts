import { access, constants, mkdir, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { ErrorCode, type Logger, NanosyncError, redact } from '@nanosync/core';
import { Engine, materializePipeline, openSqliteStateStore, type StateStore } from '@nanosync/core/host';
import { connectorResolver } from '../connectors.js';
import type { CliIo } from '../io.js';
import { serverSecretKey } from '../secret-key.js';
import { errnoText, loadOrCreateServerToken, type StatePaths } from '../state-paths.js';
import { type AdminServer, createAdminHandler, listenAdmin } from './http.js';
import { adminRoutes } from './routes/index.js';
import { releaseLeasesOfDeadProcesses } from './stale-leases.js';

export interface StartServerOptions {
  paths: StatePaths;
  listen: { host: string; port: number };
  io: CliIo;
  logger: Logger;
  /** Who holds the pipelines' leases; shown to a second server that finds them taken. */
  holderId?: string;
  /** Lease lifetime (default 30 s): how long a killed server's pipelines wait before another server takes them. */
  leaseTtlMs?: number;
  /** Most pipelines this server runs at once (default: no limit). */
  maxPipelines?: number;
}

export interface RunningServer {
  engine: Engine;
  store: StateStore;
  admin: AdminServer;
  secretKey: Buffer;
  /** Base URL of the admin API. */
  url: string;
  holderId: string;
  /** Stop the API, checkpoint and stop every pipeline, release leases, close the store. Idempotent. */
  stop(): Promise<void>;
}

/**
 * `--state postgres://…`: @nanosync/state-postgres, loaded only then, so a server on SQLite
 * does not load it.
 */
async function openPostgresStore(url: string): Promise<StateStore> {
  const { openPostgresStateStore } = await import('@nanosync/state-postgres');
  return openPostgresStateStore(url);
}

/** `host/pid-N`: unique per process, and tells an operator where to look. */
export function defaultHolderId(): string {
  return `${hostname()}/pid-${process.pid}`;
}

/**
 * Bring the server up in an order that leaves nothing half-made on a bad start: bind the
 * port first (a port in use stops here, before any file exists), then the state folder
 * and database, the secret key and the token, then the engine, and only then start
 * answering API requests.
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { paths, io, logger } = options;
  const holderId = options.holderId ?? defaultHolderId();
  const admin = await listenAdmin(options.listen.host, options.listen.port);
  const cleanups: (() => Promise<unknown>)[] = [() => admin.close()];
  const undo = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };

  let store: StateStore;
  let secretKey: Buffer;
  let token: string;
  let engine: Engine;
  try {
    let createdDir: string | undefined;
    try {
      createdDir = await mkdir(paths.dir, { recursive: true });
      await access(paths.dir, constants.W_OK);
    } catch (err) {
      throw new NanosyncError(
        ErrorCode.StateUnavailable,
        `cannot use the state folder ${paths.dir}: ${errnoText(err)} (choose another with --state)`,
        {
          cause: err,
        },
      );
    }
    if (createdDir !== undefined) cleanups.push(() => rm(createdDir, { recursive: true, force: true }));
    try {
      store = paths.stateUrl ? await openPostgresStore(paths.stateUrl) : await openSqliteStateStore(paths.stateFile);
    } catch (err) {
      if (NanosyncError.is(err)) throw err;
      throw new NanosyncError(
        ErrorCode.StateUnavailable,
        `cannot open the state database ${paths.stateFile}: ${errnoText(err)}`,
        { cause: err },
      );
    }
    cleanups.push(() => store.close());
    secretKey = await serverSecretKey(paths, io.env, (message) => logger.warn(message));
    token = await loadOrCreateServerToken(paths, io.env);
    await releaseLeasesOfDeadProcesses(store, logger);
    engine = new Engine({
      store,
      logger,
      holderId,
      ...(options.leaseTtlMs !== undefined ? { leaseTtlMs: options.leaseTtlMs } : {}),
      ...(options.maxPipelines !== undefined ? { maxPipelines: options.maxPipelines } : {}),
      serverDetails: { url: admin.url, host: hostname(), pid: process.pid },
      runtime: { dataDir: paths.dir },
      materialize: (definition) =>
        materializePipeline(definition, { env: io.env, secretKey, resolve: connectorResolver() }),
    });
    await engine.start();
  } catch (err) {
    await undo();
    throw err;
  }

  admin.setHandler(createAdminHandler({ engine, token, routes: adminRoutes, logger }));
  logger.info('admin api listening', {
    url: admin.url,
    state: paths.stateUrl ? redact(paths.stateUrl) : paths.stateFile,
  });

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await admin.close().catch(() => undefined);
      try {
        await engine.stop();
      } finally {
        await store.close().catch((err) => logger.warn('closing the state store failed', { error: String(err) }));
      }
    })();
    return stopping;
  };
  return { engine, store, admin, secretKey, url: admin.url, holderId, stop };
}
