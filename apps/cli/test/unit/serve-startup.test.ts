import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli.js';
import { captureIo } from './helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-cli-start-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function listen(port = 0): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

describe('serve refuses to start, with one line, exit code 2 and nothing created', () => {
  it('when the port is in use', async () => {
    const blocker = await listen();
    const port = (blocker.address() as { port: number }).port;
    try {
      const io = captureIo({}, dir);
      expect(await main(['serve', '--listen', `127.0.0.1:${port}`, '--state', join(dir, 'new', 'state.db')], io)).toBe(
        2,
      );
      expect(io.stderr).toHaveLength(1);
      expect(io.stderr[0]).toMatch(/already in use/);
      expect(await readdir(dir)).toEqual([]);
    } finally {
      blocker.close();
    }
  });

  it('when the state folder cannot be created, and the port is released again', async () => {
    await writeFile(join(dir, 'plain-file'), 'x');
    const probe = await listen();
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const io = captureIo({}, dir);
    expect(
      await main(['serve', '--listen', `127.0.0.1:${port}`, '--state', join(dir, 'plain-file', 'state.db')], io),
    ).toBe(2);
    expect(io.stderr).toHaveLength(1);
    expect(io.stderr[0]).toMatch(/cannot use the state folder .*plain-file: it exists and is not a folder/);
    expect(await readdir(dir)).toEqual(['plain-file']);
    const again = await listen(port);
    again.close();
  });

  it('when the postgres:// state store cannot be reached, naming it without the password', async () => {
    const probe = await listen();
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const io = captureIo({ XDG_STATE_HOME: join(dir, 'xdg') }, dir);
    const url = 'postgres://keeper:hunter2@127.0.0.1:1/ops?schema=fleet';
    expect(await main(['serve', '--listen', `127.0.0.1:${port}`, '--state', url], io)).toBe(2);
    expect(io.stderr).toHaveLength(1);
    expect(io.stderr[0]).toContain('state store postgres://keeper@127.0.0.1:1/ops (schema fleet)');
    expect(io.stderr[0]).not.toContain('hunter2');
    // Not taken for a file path: no folder named after the URL, and the token folder is removed again.
    expect(await readdir(dir)).toEqual([]);
  });

  it('run with an invalid config starts nothing', async () => {
    const config = join(dir, 'bad.yaml');
    await writeFile(config, 'connections: []\npipelines:\n  - name: x\n    bogus: 1\n');
    const io = captureIo({}, dir);
    expect(
      await main(['run', '--file', config, '--state', join(dir, 'state', 'state.db'), '--listen', '127.0.0.1:0'], io),
    ).toBe(2);
    expect(io.stderr.join('\n')).toMatch(/pipelines\[0\]\.bogus/);
    expect(await readdir(dir)).toEqual(['bad.yaml']);
  });
});
