import { createServer } from 'node:net';
import { NanosyncError } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config.js';
import definition from '../../src/index.js';

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => logger };

async function sourceOn(port: number) {
  const parsed = configSchema.safeParse({
    dsn: `sqlserver://nanosync:Very-Secret-Pw@127.0.0.1:${port}/shop`,
    connect_timeout_seconds: 5,
  });
  if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
  return definition.create(parsed.data, { pipeline: 'orders', logger, signal: new AbortController().signal });
}

describe('an unreachable server', () => {
  it('check() reports one connection failure naming the endpoint, without the password', async () => {
    const port = await closedPort();
    const source = await sourceOn(port);
    const results = await source.check([{ schema: 'dbo', name: 'orders' }]);
    await source.close();
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ name: 'connection', ok: false, severity: 'error' });
    expect(results[0]!.message).toContain(`127.0.0.1:${port}/shop`);
    expect(JSON.stringify(results)).not.toContain('Very-Secret-Pw');
  });

  it('open() fails with a retriable connection error, without the password', async () => {
    const port = await closedPort();
    const source = await sourceOn(port);
    const error = await source
      .open([{ schema: 'dbo', name: 'orders' }], { wantSnapshot: true })
      .catch((e: unknown) => e);
    await source.close();
    expect(NanosyncError.is(error, 'NS_M5001')).toBe(true);
    expect((error as NanosyncError).retriable).toBe(true);
    expect(String((error as Error).message)).not.toContain('Very-Secret-Pw');
  });
});
