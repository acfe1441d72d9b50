import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, NanosyncError } from '@nanosync/core';
import { PreflightError } from '@nanosync/core/host';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listCommand } from '../../src/commands/list.js';
import { pipelineCommand } from '../../src/commands/pipeline.js';
import { exitCodeFor } from '../../src/exit-codes.js';
import { type AdminServer, createAdminHandler, listenAdmin } from '../../src/server/http.js';
import { adminRoutes } from '../../src/server/routes/index.js';
import { captureIo, fakeEngine } from './helpers.js';

const TOKEN = 'test-token-0123456789';
const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

let admin: AdminServer;
let fake: ReturnType<typeof fakeEngine>;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-cli-api-'));
  fake = fakeEngine([
    {
      name: 'orders',
      state: 'LIVE_CDC',
      replicationType: 'cdc_backfill',
      lagSeconds: 0.4,
      eventsPerSecond: 12.34,
      server: 'host-a/pid-7',
    },
  ]);
  admin = await listenAdmin('127.0.0.1', 0);
  admin.setHandler(createAdminHandler({ engine: fake.engine, token: TOKEN, routes: adminRoutes, logger: silent }));
});
afterEach(async () => {
  await admin.close();
  await rm(dir, { recursive: true, force: true });
});

function call(method: string, path: string, token: string | null = TOKEN, body?: unknown) {
  return fetch(`${admin.url}${path}`, {
    method,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

describe('authentication', () => {
  it.each([
    ['GET', '/v1/pipelines'],
    ['GET', '/v1/pipelines/orders'],
    ['POST', '/v1/apply'],
    ['POST', '/v1/pipelines/orders/pause'],
    ['POST', '/v1/pipelines/orders/resume'],
    ['DELETE', '/v1/pipelines/orders'],
    ['PUT', '/v1/pipelines/orders'],
  ])('%s %s refuses a missing or wrong token with 401 and does nothing', async (method, path) => {
    for (const token of [null, 'wrong', `${TOKEN}x`, '', TOKEN.slice(0, -1)]) {
      const response = await call(method, path, token, method === 'POST' ? { definitions: [] } : undefined);
      expect([token, response.status]).toEqual([token, 401]);
      expect(response.headers.get('www-authenticate')).toBe('Bearer');
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe(ErrorCode.ServerAuth);
    }
    expect(fake.calls).toEqual([]);
    expect(fake.pipelines.get('orders')?.state).toBe('LIVE_CDC');
  });

  it('answers the health check without a token', async () => {
    const response = await call('GET', '/v1/health', null);
    expect(response.status).toBe(200);
  });

  it('answers 503 before the engine is ready', async () => {
    const starting = await listenAdmin('127.0.0.1', 0);
    try {
      const response = await fetch(`${starting.url}/v1/pipelines`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(response.status).toBe(503);
    } finally {
      await starting.close();
    }
  });
});

describe('endpoints', () => {
  it('lists pipelines and shows one', async () => {
    const list = (await (await call('GET', '/v1/pipelines')).json()) as { pipelines: { name: string }[] };
    expect(list.pipelines.map((p) => p.name)).toEqual(['orders']);
    const one = await call('GET', '/v1/pipelines/orders');
    expect(one.status).toBe(200);
    expect(((await one.json()) as { pipeline: { state: string } }).pipeline.state).toBe('LIVE_CDC');
    expect((await call('GET', '/v1/pipelines/nope')).status).toBe(404);
  });

  it('applies definitions and reports created, unchanged, updated', async () => {
    const definition = { version: 1, pipeline: {}, connections: {}, configDir: '/x' };
    const body = (hash: string) => ({ definitions: [{ name: 'p1', definition, hash, replicationType: 'cdc' }] });
    const results = async (hash: string) =>
      ((await (await call('POST', '/v1/apply', TOKEN, body(hash))).json()) as { results: unknown[] }).results;
    expect(await results('h1')).toEqual([{ name: 'p1', result: 'created' }]);
    expect(await results('h1')).toEqual([{ name: 'p1', result: 'unchanged' }]);
    expect(await results('h2')).toEqual([{ name: 'p1', result: 'updated' }]);
  });

  it('a refused preflight is 422 with its failed checks, after the results applied before it; a held lease is 409', async () => {
    const definition = { version: 1, pipeline: {}, connections: {}, configDir: '/x' };
    const apply = fake.engine.apply;
    fake.engine.apply = async (name, ...rest) => {
      if (name === 'p2')
        throw new PreflightError(
          'p2',
          [{ who: 'source', check: 'replica identity', message: 'public.t has none', fix: 'ALTER TABLE public.t …' }],
          'pipeline p2 cannot start: source: public.t has none',
          { retriable: false },
        );
      if (name === 'p3') throw new NanosyncError(ErrorCode.PipelineLeaseHeld, 'pipeline p3 is running on host-b');
      return apply(name, ...rest);
    };
    const entry = (name: string) => ({ name, definition, hash: 'h', replicationType: 'cdc' });
    const refused = await call('POST', '/v1/apply', TOKEN, { definitions: [entry('p1'), entry('p2'), entry('p3')] });
    expect(refused.status).toBe(422);
    expect(await refused.json()).toEqual({
      results: [{ name: 'p1', result: 'created' }],
      error: {
        code: ErrorCode.PreflightFailed,
        message: 'pipeline p2 cannot start: source: public.t has none',
        pipeline: 'p2',
        failures: [
          { who: 'source', check: 'replica identity', message: 'public.t has none', fix: 'ALTER TABLE public.t …' },
        ],
      },
    });
    const held = await call('POST', '/v1/apply', TOKEN, { definitions: [entry('p3')] });
    expect(held.status).toBe(409);
    expect(((await held.json()) as { error: { code: string; pipeline: string } }).error).toMatchObject({
      code: ErrorCode.PipelineLeaseHeld,
      pipeline: 'p3',
    });
  });

  it('rejects malformed apply bodies with 400', async () => {
    for (const body of [
      {},
      { definitions: [{ name: 'bad name!', hash: 'h', replicationType: 'cdc', definition: {} }] },
      { definitions: [{ name: 'ok' }] },
    ]) {
      expect((await call('POST', '/v1/apply', TOKEN, body)).status).toBe(400);
    }
    const raw = await fetch(`${admin.url}/v1/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: '{not json',
    });
    expect(raw.status).toBe(400);
    expect(fake.calls).toEqual([]);
  });

  it('refuses a definition that carries a literal secret, so none is stored unencrypted', async () => {
    const definition = (connection: Record<string, unknown>) => ({
      version: 1,
      pipeline: { name: 'p1', source: { connection: 'c', tables: ['public.t'] }, sink: { connection: 'c' } },
      connections: { c: { name: 'c', type: 'postgres', ...connection } },
      configDir: '/x',
    });
    for (const connection of [
      { dsn: 'postgres://app:hunter2@db/shop' },
      { dsn: 'host=db user=app password=hunter2' },
      { properties: { password: 'hunter2' } },
      { properties: { tls: { ssl_key_password: 'hunter2' } } },
    ]) {
      const response = await call('POST', '/v1/apply', TOKEN, {
        definitions: [{ name: 'p1', hash: 'h', replicationType: 'cdc', definition: definition(connection) }],
      });
      const text = await response.text();
      expect([connection, response.status]).toEqual([connection, 400]);
      expect(text).toContain('definitions[0]');
      expect(text).not.toContain('hunter2');
    }
    expect(fake.calls).toEqual([]);
    // Encrypted values and ${env:…} references are what a client sends: accepted.
    const fine = await call('POST', '/v1/apply', TOKEN, {
      definitions: [
        {
          name: 'p1',
          hash: 'h',
          replicationType: 'cdc',
          // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${env:…} reference, as users write it
          definition: definition({ dsn: 'enc:v1:AAAA', properties: { password: '${env:PG_PASSWORD}' } }),
        },
      ],
    });
    expect(fine.status).toBe(200);
  });

  it('pauses, resumes and deletes', async () => {
    expect((await call('POST', '/v1/pipelines/orders/pause')).status).toBe(200);
    expect(fake.pipelines.get('orders')?.state).toBe('PAUSED');
    expect((await call('POST', '/v1/pipelines/orders/resume')).status).toBe(200);
    expect(fake.pipelines.get('orders')?.state).toBe('LIVE_CDC');
    expect((await call('DELETE', '/v1/pipelines/orders')).status).toBe(200);
    expect(fake.pipelines.has('orders')).toBe(false);
    expect((await call('DELETE', '/v1/pipelines/orders')).status).toBe(404);
  });

  it('answers 404 for unknown paths and 405 for wrong methods', async () => {
    expect((await call('GET', '/v2/whatever')).status).toBe(404);
    const wrong = await call('PUT', '/v1/pipelines/orders');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toContain('DELETE');
  });

  it('never returns a secret in an error or a status', async () => {
    fake.pipelines.set('leaky', {
      ...fake.pipelines.get('orders')!,
      name: 'leaky',
      state: 'ERRORED',
      error: 'connect failed for postgres://app:hunter2@db:5432/shop',
      warnings: ['password=hunter2 rejected'],
    });
    fake.engine.pause = async () => {
      throw new NanosyncError('NS_P4001', 'could not connect to postgres://app:hunter2@db/shop');
    };
    const texts = [
      await (await call('GET', '/v1/pipelines')).text(),
      await (await call('GET', '/v1/pipelines/leaky')).text(),
      await (await call('POST', '/v1/pipelines/leaky/pause')).text(),
    ];
    for (const text of texts) expect(text).not.toContain('hunter2');
    expect(texts[2]).toContain('NS_P4001');
  });
});

describe('client commands', () => {
  const env = (token: string) => ({ NANOSYNC_TOKEN: token, NANOSYNC_SERVER: admin.url });

  it('list pipelines prints the table', async () => {
    const io = captureIo(env(TOKEN));
    expect(await listCommand.run(['pipelines'], io)).toBe(0);
    expect(io.stdout.join('\n')).toMatch(
      /^NAME\s+STATE\s+TYPE\s+LAG\s+EVENTS\/S\s+SERVER\norders\s+LIVE_CDC\s+cdc_backfill\s+0\.4s\s+12\.3\s+host-a\/pid-7$/,
    );
  });

  it('reads the token from the file next to the state database', async () => {
    await writeFile(join(dir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
    const io = captureIo({ NANOSYNC_SERVER: admin.url });
    expect(await listCommand.run(['pipelines', '--state', join(dir, 'state.db')], io)).toBe(0);
  });

  it('a wrong token is one clear error with exit code 2', async () => {
    const io = captureIo(env('not-the-token'));
    const err = await listCommand.run(['pipelines'], io).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NanosyncError);
    expect(exitCodeFor(err)).toBe(2);
    expect((err as Error).message).toMatch(/rejected the admin token from NANOSYNC_TOKEN/);
    expect((err as Error).message).not.toContain('not-the-token');
  });

  it('a missing token file is exit code 2 naming the file, and creates nothing', async () => {
    const io = captureIo({ NANOSYNC_SERVER: admin.url });
    const err = await listCommand
      .run(['pipelines', '--state', join(dir, 'sub', 'state.db')], io)
      .catch((e: unknown) => e);
    expect(exitCodeFor(err)).toBe(2);
    expect((err as Error).message).toContain(join(dir, 'sub', 'token'));
    await expect(stat(join(dir, 'sub'))).rejects.toThrow();
  });

  it('no server listening is exit code 1', async () => {
    const port = await freePort();
    const io = captureIo({ NANOSYNC_TOKEN: TOKEN, NANOSYNC_SERVER: `127.0.0.1:${port}` });
    const err = await listCommand.run(['pipelines'], io).catch((e: unknown) => e);
    expect(exitCodeFor(err)).toBe(1);
    expect((err as Error).message).toMatch(
      /no nanosync server answers at http:\/\/127\.0\.0\.1:\d+ \(connection refused\)/,
    );
  });

  it('pipeline pause/resume/delete reach the engine; an unknown name is exit code 1', async () => {
    const io = captureIo(env(TOKEN));
    expect(await pipelineCommand.run(['pause', 'orders'], io)).toBe(0);
    expect(await pipelineCommand.run(['resume', 'orders'], io)).toBe(0);
    expect(await pipelineCommand.run(['delete', 'orders'], io)).toBe(0);
    expect(io.stdout).toEqual(['orders paused', 'orders resumed', 'orders deleted']);
    expect(fake.calls).toEqual(['pause orders', 'resume orders', 'delete orders']);
    const err = await pipelineCommand.run(['pause', 'orders'], io).catch((e: unknown) => e);
    expect(exitCodeFor(err)).toBe(1);
    expect((err as NanosyncError).code).toBe(ErrorCode.PipelineNotFound);
  });

  it('pipeline resnapshot sends the --table list (none: every table) and prints what is read again', async () => {
    const io = captureIo(env(TOKEN));
    expect(await pipelineCommand.run(['resnapshot', 'orders', '--table', 'public.a', '--table', 'public.b'], io)).toBe(
      0,
    );
    expect(await pipelineCommand.run(['resnapshot', 'orders'], io)).toBe(0);
    expect(fake.calls).toEqual(['resnapshot orders public.a,public.b', 'resnapshot orders ']);
    expect(io.stdout).toEqual(['orders re-snapshotting public.a, public.b', 'orders re-snapshotting public.all']);
    const misuse = await pipelineCommand.run(['pause', 'orders', '--table', 'public.a'], io).catch((e: unknown) => e);
    expect(exitCodeFor(misuse)).toBe(2);
    // A malformed body through the API: 400, saying what the body must be.
    const bad = await call('POST', '/v1/pipelines/orders/resnapshot', TOKEN, { tables: 'public.a' });
    expect(bad.status).toBe(400);
    const { error } = (await bad.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe(ErrorCode.CliUsage);
    expect(error.message).toContain('body must be { "tables": ["schema.table", …] }');
  });
});

describe('listen', () => {
  it('a port in use is a PortInUse error naming the address', async () => {
    const err = await listenAdmin('127.0.0.1', admin.port).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NanosyncError);
    expect((err as NanosyncError).code).toBe(ErrorCode.PortInUse);
    expect((err as Error).message).toContain(`127.0.0.1:${admin.port}`);
    expect(exitCodeFor(err)).toBe(2);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
