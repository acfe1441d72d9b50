import { existsSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Environment variables that make the helpers reuse a running service instead of starting one. */
export const ENV_PG_URL = 'NANOSYNC_TEST_PG_URL';
export const ENV_KAFKA_BROKERS = 'NANOSYNC_TEST_KAFKA_BROKERS';
export const ENV_MSSQL_URL = 'NANOSYNC_TEST_MSSQL_URL';

/** Cache root shared with scripts/node-env.sh: jars, initdb templates, CLI state. */
export function cacheRoot(): string {
  const base = process.env.NANOSYNC_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'nanosync');
  return base;
}

/** One stderr line per notable event, so test output shows what was started and how long it took. */
export function log(message: string): void {
  process.stderr.write(`[nanosync-testenv] ${message}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A loopback port that was free a moment ago. Another process may still grab it before the
 * service binds it, so callers retry with a new port when the service fails to listen.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(target: { path: string } | { host: string; port: number }, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(target as never);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

let dockerProbe: Promise<boolean> | undefined;

/**
 * Whether a Docker engine answers, decided in well under a second: DOCKER_HOST (unix or tcp)
 * or the usual socket paths. NANOSYNC_TEST_DOCKER=0 forces local processes, =1 forces Docker.
 */
export function dockerAvailable(): Promise<boolean> {
  dockerProbe ??= (async () => {
    const forced = process.env.NANOSYNC_TEST_DOCKER;
    if (forced === '0' || forced === 'false') return false;
    if (forced === '1' || forced === 'true') return true;
    const dockerHost = process.env.DOCKER_HOST;
    if (dockerHost) {
      if (dockerHost.startsWith('unix://')) return canConnect({ path: dockerHost.slice('unix://'.length) }, 500);
      try {
        const url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
        return canConnect({ host: url.hostname, port: Number(url.port || 2375) }, 500);
      } catch {
        return false;
      }
    }
    const candidates = [
      '/var/run/docker.sock',
      join(homedir(), '.docker/run/docker.sock'),
      join(homedir(), '.docker/desktop/docker.sock'),
    ];
    if (process.env.XDG_RUNTIME_DIR) candidates.push(join(process.env.XDG_RUNTIME_DIR, 'docker.sock'));
    for (const path of candidates) {
      if (existsSync(path) && (await canConnect({ path }, 500))) return true;
    }
    return false;
  })();
  return dockerProbe;
}

/** Short random suffix for names (databases, temp folders) that must not collide between workers. */
export function randomSuffix(length = 10): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(Math.random() * alphabet.length)];
  return out;
}
