import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheRoot, freePort, log, sleep } from './env.js';
import { ServiceStartError } from './errors.js';
import { isAlive, run, spawnService } from './processes.js';

/**
 * Apicurio Registry, whose `/apis/ccompat/v7` API is compatible with Confluent's Schema
 * Registry. 3.0.x is the newest line that runs on Java 17 (3.1+ needs Java 21).
 */
export const APICURIO_VERSION = '3.0.9';

/** Set to a running Confluent-compatible registry's base URL to reuse it instead of starting one. */
export const ENV_SCHEMA_REGISTRY_URL = 'NANOSYNC_TEST_SCHEMA_REGISTRY_URL';

export interface SchemaRegistryService extends AsyncDisposable {
  /** Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:38081/apis/ccompat/v7`. */
  url: string;
  owned: boolean;
}

function javaCommand(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

let distPromise: Promise<string> | undefined;

/**
 * The registry's runnable distribution (the `all` tar.gz Apicurio publishes next to its app
 * jar on Maven Central: a Quarkus application with every dependency), fetched once with mvn
 * into ~/.cache/nanosync/apicurio-<version>.
 */
export function apicurioDir(): Promise<string> {
  distPromise ??= resolveDist();
  distPromise.catch(() => {
    distPromise = undefined;
  });
  return distPromise;
}

async function resolveDist(): Promise<string> {
  const home = join(cacheRoot(), `apicurio-${APICURIO_VERSION}`);
  const app = join(home, 'app');
  const marker = join(home, 'app.complete');
  if (existsSync(marker)) return app;
  await mkdir(home, { recursive: true });
  const lock = join(home, 'resolve.lock');
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      await mkdir(lock);
      await writeFile(join(lock, 'pid'), String(process.pid));
      break;
    } catch {
      if (existsSync(marker)) return app;
      const owner = Number(await readFile(join(lock, 'pid'), 'utf8').catch(() => 'NaN'));
      if (Number.isInteger(owner) && !isAlive(owner)) {
        await rm(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new ServiceStartError(`timed out waiting for another process (lock ${lock})`);
      await sleep(500);
    }
  }
  try {
    if (existsSync(marker)) return app;
    const started = Date.now();
    log(`fetching Apicurio Registry ${APICURIO_VERSION} from Maven Central into ${home} (first run only)`);
    const staging = `${app}.tmp-${process.pid}`;
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true });
    try {
      await run('mvn', [
        '-q',
        '-B',
        'dependency:copy',
        `-Dartifact=io.apicurio:apicurio-registry-app:${APICURIO_VERSION}:tar.gz:all`,
        `-DoutputDirectory=${home}`,
      ]);
      await run('tar', ['xzf', join(home, `apicurio-registry-app-${APICURIO_VERSION}-all.tar.gz`), '-C', staging]);
    } catch (error) {
      throw new ServiceStartError(
        /could not run mvn/.test(String(error))
          ? 'Maven (mvn) is needed once to fetch Apicurio Registry from Maven Central (Debian: apt-get install maven)'
          : `could not fetch Apicurio Registry: ${String(error)}`,
      );
    }
    await rm(join(home, `apicurio-registry-app-${APICURIO_VERSION}-all.tar.gz`), { force: true });
    await rm(app, { recursive: true, force: true });
    await rename(staging, app);
    await writeFile(marker, `${new Date().toISOString()}\n`);
    log(`Apicurio Registry ready to run in ${Date.now() - started} ms`);
    return app;
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** The HTTP status of a GET (0 when nothing answers); over https trusting `ca` when given. */
function get(url: string, ca?: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const options = { timeout: 2000, ...(ca ? { ca } : {}) };
    const req = (url.startsWith('https:') ? https : http).get(url, options, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

export interface SchemaRegistryOptions {
  /** Start a registry of its own even when `NANOSYNC_TEST_SCHEMA_REGISTRY_URL` is set. */
  fresh?: boolean;
  /**
   * Serve HTTPS only (Quarkus `quarkus.http.ssl.*`) with this PEM certificate and key;
   * `caFile` is the CA that signed it (used to wait for the registry to answer).
   */
  tls?: { certFile: string; keyFile: string; caFile: string };
  /**
   * Require HTTP basic authentication on the API (Quarkus's embedded users, each with
   * Apicurio's admin role): user name → password.
   */
  users?: Record<string, string>;
  /**
   * Require a bearer token on the API, checked by Apicurio's OpenID Connect support (Quarkus
   * OIDC): signature from the issuer's JWKS (found through its discovery document), issuer,
   * expiry. `issuer` is e.g. `startOidcProvider()`'s.
   */
  oidc?: { issuer: string };
}

/**
 * A Confluent-compatible Schema Registry for tests: Apicurio Registry on a free loopback
 * port with in-memory (H2) storage, so every start is empty. Java 17 is enough. Reuses
 * `NANOSYNC_TEST_SCHEMA_REGISTRY_URL` when set (not with `tls`, `users` or `oidc`). With
 * `tls` it serves HTTPS only; with `users` or `oidc` it answers 401 to requests without
 * valid credentials (basic, or a bearer token from the OpenID provider).
 */
export async function startSchemaRegistry(options: SchemaRegistryOptions = {}): Promise<SchemaRegistryService> {
  const reuse = process.env[ENV_SCHEMA_REGISTRY_URL];
  if (reuse && !options.fresh && !options.tls && !options.users && !options.oidc)
    return { url: reuse, owned: false, async [Symbol.asyncDispose]() {} };
  const started = Date.now();
  const app = await apicurioDir();
  const root = await mkdtemp(join(tmpdir(), 'nanosync-registry-'));
  const port = await freePort();
  const logFile = join(root, 'registry.out');
  const { tls, users, oidc } = options;
  const security: string[] = [];
  if (tls) {
    security.push(
      '-Dquarkus.http.port=0',
      `-Dquarkus.http.ssl-port=${port}`,
      '-Dquarkus.http.insecure-requests=disabled',
      `-Dquarkus.http.ssl.certificate.files=${tls.certFile}`,
      `-Dquarkus.http.ssl.certificate.key-files=${tls.keyFile}`,
    );
  } else {
    security.push(`-Dquarkus.http.port=${port}`);
  }
  if (users) {
    // The properties-file identity provider is built into Apicurio's Quarkus application
    // (quarkus.security.users.embedded.enabled=true); the users and the rule are runtime settings.
    security.push(
      '-Dquarkus.http.auth.basic=true',
      '-Dquarkus.security.users.embedded.plain-text=true',
      '-Dquarkus.http.auth.permission.registry-api.paths=/apis/*',
      '-Dquarkus.http.auth.permission.registry-api.policy=authenticated',
    );
    for (const [user, password] of Object.entries(users)) {
      security.push(
        `-Dquarkus.security.users.embedded.users.${user}=${password}`,
        `-Dquarkus.security.users.embedded.roles.${user}=sr-admin`,
      );
    }
  }
  if (oidc) {
    // Apicurio's build includes Quarkus OIDC with the default tenant switched off
    // (quarkus.oidc.tenant-enabled=false): on, every API call needs a bearer token that the
    // issuer signed (keys from its JWKS, found through discovery) and that has not expired.
    // Apicurio's own authorization then admits any authenticated caller (role checks off).
    security.push(
      '-Dquarkus.oidc.tenant-enabled=true',
      `-Dquarkus.oidc.auth-server-url=${oidc.issuer}`,
      '-Dquarkus.oidc.discovery-enabled=true',
      '-Dquarkus.oidc.token.lifespan-grace=0',
    );
  }
  const service = spawnService({
    command: javaCommand(),
    args: [
      '-Xms64m',
      '-Xmx384m',
      '-XX:TieredStopAtLevel=1',
      '-XX:+UseSerialGC',
      ...security,
      '-Dquarkus.http.host=127.0.0.1',
      '-Dquarkus.management.enabled=false',
      '-Dquarkus.log.level=WARN',
      '-Dquarkus.otel.enabled=false',
      '-Dapicurio.rest.deletion.artifact.enabled=true',
      '-Dapicurio.rest.deletion.artifact-version.enabled=true',
      '-jar',
      join(app, `apicurio-registry-app-${APICURIO_VERSION}-runner.jar`),
    ],
    cwd: root,
    logFile,
    emergencySignal: 'SIGKILL',
    removeDirOnOrphan: root,
  });
  let exited: number | string | undefined;
  void service.exited.then((code) => {
    exited = code;
  });
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}/apis/ccompat/v7`;
  const ca = tls ? await readFile(tls.caFile) : undefined;
  const deadline = Date.now() + 180_000;
  try {
    for (;;) {
      if (exited !== undefined) {
        const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-20).join('\n');
        throw new ServiceStartError(`Apicurio Registry exited during startup (${exited}):\n${tail}`);
      }
      // 401: up, and asking for the credentials it was told to require.
      const status = await get(`${url}/subjects`, ca);
      if (status === 200 || ((users || oidc) && status === 401)) break;
      if (Date.now() > deadline)
        throw new ServiceStartError(`Apicurio Registry did not answer within 180 s; log ${logFile}`);
      await sleep(300);
    }
  } catch (error) {
    service.child.kill('SIGKILL');
    await service.waitForExit();
    service.dismissWatchdog();
    await rm(root, { recursive: true, force: true });
    throw error;
  }
  log(`apicurio registry ${APICURIO_VERSION} ready at ${url} in ${Date.now() - started} ms`);
  let disposed = false;
  return {
    url,
    owned: true,
    async [Symbol.asyncDispose]() {
      if (disposed) return;
      disposed = true;
      service.child.kill('SIGKILL');
      await service.waitForExit();
      await rm(root, { recursive: true, force: true });
      service.dismissWatchdog();
    },
  };
}
