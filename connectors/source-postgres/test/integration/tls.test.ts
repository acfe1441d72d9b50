import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NanosyncError } from '@nanosync/core';
import { type PostgresService, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema, type PostgresSourceConfig } from '../../src/config.js';
import { buildConnectionConfig, connectClient, resolveClientConfig } from '../../src/connection.js';
import { createAcknowledger, internalsOf } from '../../src/stream/acknowledger.js';
import type { PgOutputMessage } from '../../src/stream/pgoutput.js';
import type { RawChangeMessage } from '../../src/stream/raw-changes.js';
import { runReplicationSession } from '../../src/stream/replication-session.js';

/**
 * A server with TLS on (certificates made here with openssl) and a pg_hba that forces TLS
 * for some roles and client certificates for another, to exercise every sslmode for real.
 * Server certificate names: DNS localhost and IP 127.0.0.2, not 127.0.0.1, so that
 * verify-full with host 127.0.0.1 must fail while verify-ca passes.
 */
let service: PostgresService;
let dir: string;
let database: string;
let databaseUrl: string;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function makeCertificates(): void {
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=nanosync test CA',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=other CA',
    '-keyout',
    'other-ca.key',
    '-out',
    'other-ca.crt',
  );
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.2\n');
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=localhost',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
  );
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'server.ext',
    '-out',
    'server.crt',
  );
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=certuser',
    '-keyout',
    'client.key',
    '-out',
    'client.csr',
  );
  openssl(
    'x509',
    '-req',
    '-in',
    'client.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    'client.crt',
  );
  writeFileSync(
    join(dir, 'pg_hba.conf'),
    [
      'local all all trust',
      'host all postgres 127.0.0.1/32 trust',
      'hostssl all certuser 127.0.0.1/32 cert',
      'hostnossl all plainuser 127.0.0.1/32 trust',
      'hostssl all all 127.0.0.1/32 trust',
      '',
    ].join('\n'),
  );
  if (process.getuid?.() === 0) {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('postgres:'));
    const [, , uid, gid] = line!.split(':');
    for (const file of ['server.key', 'server.crt', 'ca.crt', 'pg_hba.conf'])
      chownSync(join(dir, file), Number(uid), Number(gid));
    chownSync(dir, Number(uid), Number(gid));
  }
  execFileSync('chmod', ['0600', join(dir, 'server.key')]);
  execFileSync('chmod', ['0755', dir]);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ns-tls-'));
  makeCertificates();
  service = await startPostgres({
    fresh: true,
    settings: {
      ssl: 'on',
      ssl_cert_file: join(dir, 'server.crt'),
      ssl_key_file: join(dir, 'server.key'),
      ssl_ca_file: join(dir, 'ca.crt'),
      hba_file: join(dir, 'pg_hba.conf'),
    },
  });
  database = 'tls_db';
  databaseUrl = await service.createDatabase(database);
  const admin = new pg.Client({ connectionString: service.url });
  await admin.connect();
  for (const role of ['plainuser', 'sslonly', 'certuser']) await admin.query(`CREATE ROLE ${role} LOGIN REPLICATION`);
  await admin.end();
});

afterAll(async () => {
  await service?.[Symbol.asyncDispose]();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function config(props: Record<string, unknown>): PostgresSourceConfig {
  return configSchema.parse({ host: '127.0.0.1', port: service.port, database, ...props });
}

/** Connects like the source does and reports whether the session is encrypted and with which client certificate. */
async function session(
  props: Record<string, unknown>,
  replication = false,
): Promise<{ ssl: boolean; clientDn: string | null }> {
  const client = await connectClient(buildConnectionConfig(config(props)), { replication });
  try {
    if (replication) {
      const { rows } = await client.query('IDENTIFY_SYSTEM');
      expect(rows).toHaveLength(1);
      return {
        ssl:
          (client as unknown as { connection: { stream: { encrypted?: boolean } } }).connection.stream.encrypted ===
          true,
        clientDn: null,
      };
    }
    const { rows } = await client.query(
      'SELECT ssl::text AS ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    return { ssl: rows[0].ssl === 'true', clientDn: rows[0].client_dn };
  } finally {
    await client.end();
  }
}

async function failure(props: Record<string, unknown>): Promise<NanosyncError> {
  const error = await session(props).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(NanosyncError);
  return error as NanosyncError;
}

const ca = () => join(dir, 'ca.crt');

describe('TLS through every libpq sslmode against a real server', () => {
  it('disable: plain', async () => {
    expect(await session({ user: 'plainuser', sslmode: 'disable' })).toEqual({ ssl: false, clientDn: null });
    await failure({ user: 'sslonly', sslmode: 'disable' });
  });

  it('allow: plain when the server accepts it, TLS when it insists', async () => {
    expect((await session({ user: 'plainuser', sslmode: 'allow' })).ssl).toBe(false);
    expect((await session({ user: 'sslonly', sslmode: 'allow' })).ssl).toBe(true);
  });

  it('prefer (the default): TLS when the server has it', async () => {
    expect((await session({ user: 'sslonly' })).ssl).toBe(true);
    expect((await session({ user: 'plainuser', sslmode: 'prefer' })).ssl).toBe(true);
  });

  it('require: TLS without checking the certificate; with sslrootcert the chain is checked', async () => {
    expect((await session({ user: 'sslonly', sslmode: 'require' })).ssl).toBe(true);
    expect((await session({ user: 'sslonly', sslmode: 'require', sslrootcert: ca() })).ssl).toBe(true);
    const error = await failure({ user: 'sslonly', sslmode: 'require', sslrootcert: join(dir, 'other-ca.crt') });
    expect(error.message).toMatch(/certificate/i);
  });

  it('verify-ca: chain checked, host name not', async () => {
    expect((await session({ user: 'sslonly', sslmode: 'verify-ca', sslrootcert: ca() })).ssl).toBe(true);
    const error = await failure({ user: 'sslonly', sslmode: 'verify-ca', sslrootcert: join(dir, 'other-ca.crt') });
    expect(error.message).toMatch(/certificate/i);
  });

  it('verify-full: chain and host name checked', async () => {
    expect((await session({ user: 'sslonly', host: 'localhost', sslmode: 'verify-full', sslrootcert: ca() })).ssl).toBe(
      true,
    );
    const error = await failure({ user: 'sslonly', host: '127.0.0.1', sslmode: 'verify-full', sslrootcert: ca() });
    expect(error.message).toMatch(/127\.0\.0\.1|altnames|host/i);
  });

  it('client certificate and key authenticate a cert-only role', async () => {
    const withCert = await session({
      user: 'certuser',
      host: 'localhost',
      sslmode: 'verify-full',
      sslrootcert: ca(),
      sslcert: join(dir, 'client.crt'),
      sslkey: join(dir, 'client.key'),
    });
    expect(withCert).toEqual({ ssl: true, clientDn: '/CN=certuser' });
    const error = await failure({ user: 'certuser', host: 'localhost', sslmode: 'verify-full', sslrootcert: ca() });
    expect(error.message).toMatch(/certificate/i);
  });

  it('replication connections use the same TLS settings', async () => {
    expect(
      (await session({ user: 'sslonly', host: 'localhost', sslmode: 'verify-full', sslrootcert: ca() }, true)).ssl,
    ).toBe(true);
  });

  it('a replication stream over TLS: the session reads the encrypted socket, and a committed row arrives', async () => {
    const admin = new pg.Client({ connectionString: databaseUrl });
    await admin.connect();
    const controller = new AbortController();
    try {
      await admin.query('CREATE TABLE tls_items (id int PRIMARY KEY, label text)');
      await admin.query('GRANT SELECT ON tls_items TO sslonly');
      await admin.query('CREATE PUBLICATION tls_pub FOR TABLE tls_items');
      await admin.query("SELECT pg_create_logical_replication_slot('tls_slot', 'pgoutput')");
      const props = { user: 'sslonly', host: 'localhost', sslmode: 'verify-full', sslrootcert: ca() };
      const clientConfig = await resolveClientConfig(buildConnectionConfig(config(props)), { replication: true });
      const messages: (PgOutputMessage | RawChangeMessage)[] = [];
      const logs: string[] = [];
      const log = (message: string) => logs.push(message);
      const logger = { debug: log, info: log, warn: log, error: log, child: () => logger };
      let arrived: () => void = () => {};
      const committed = new Promise<void>((resolve) => {
        arrived = resolve;
      });
      const session = runReplicationSession({
        clientConfig,
        slot: 'tls_slot',
        publication: 'tls_pub',
        acknowledger: internalsOf(createAcknowledger()),
        logger,
        statusIntervalMs: 10_000,
        signal: controller.signal,
        callbacks: {
          started: () => {
            void admin.query("INSERT INTO tls_items VALUES (1, 'over tls')");
          },
          message: (message) => {
            messages.push(message);
            if (message.tag === 'commit') arrived();
            return undefined;
          },
          keepalive: () => {},
        },
      });
      await Promise.race([committed, session]);
      controller.abort();
      await session;
      expect(messages.map((m) => m.tag).filter((tag) => tag !== 'relation')).toEqual(['begin', 'insert', 'commit']);
      expect(messages.find((m) => m.tag === 'insert')).toMatchObject({ newTuple: ['1', 'over tls'] });
      // The socket was the encrypted one, and the session read it rather than the driver's parser.
      expect(logs.filter((line) => line.includes('CopyData read off the socket'))).toHaveLength(1);
    } finally {
      controller.abort();
      await admin.query("SELECT pg_drop_replication_slot('tls_slot')").catch(() => {});
      await admin.end();
    }
  });

  it('require against a server without TLS fails; prefer falls back to plain', async () => {
    const plainServer = await startPostgres();
    const props = { host: plainServer.host, port: plainServer.port, user: 'postgres', database: 'postgres' };
    const required = await connectClient(
      buildConnectionConfig(configSchema.parse({ ...props, sslmode: 'require' })),
    ).catch((e: unknown) => e);
    expect(NanosyncError.is(required, 'NS_P4001')).toBe(true);
    expect((required as Error).message).toMatch(/does not support SSL/);
    const preferred = await connectClient(buildConnectionConfig(configSchema.parse({ ...props, sslmode: 'prefer' })));
    const { rows } = await preferred.query('SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    expect(rows[0].ssl).toBe('false');
    await preferred.end();
  });
});
