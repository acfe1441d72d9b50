import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { latestByKey, readJsonLines } from '@nanosync/sink-file';
import { describe, expect, it } from 'vitest';
import { cliEnv, eventually, REPO_ROOT } from './cli-process.js';

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('pnpm quickstart', () => {
  it('snapshots the demo table, streams live changes into files, and stops cleanly on Ctrl-C', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ns-quickstart-'));
    const child = spawn(
      process.execPath,
      ['--conditions=@nanosync/source', '--import', 'tsx', 'apps/cli/src/quickstart.ts', '--rows', '300', '--dir', dir],
      { cwd: REPO_ROOT, env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const collect = (chunk: string) => {
      output += chunk;
    };
    child.stdout.setEncoding('utf8').on('data', collect);
    child.stderr.setEncoding('utf8').on('data', collect);
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      const file = join(dir, 'output', 'public.orders.jsonl');
      await eventually(async () => {
        if (child.exitCode !== null) throw new Error(`quickstart exited early:\n${output}`);
        const records = await readJsonLines(file).catch(() => []);
        const snapshotted = records.filter((r) => r.op === 'read').length;
        const streamed = records.filter((r) => r.op !== 'read').length;
        return snapshotted >= 300 && streamed >= 3 ? true : undefined;
      }, 'the snapshot and some streamed changes in the output file').catch((err: Error) => {
        throw new Error(`${err.message}\n--- quickstart output ---\n${output}`);
      });
      expect(output).toContain('nanosync serving — Ctrl-C to stop');
      await eventually(
        async () => (/^LIVE_CDC\s+snapshot rows \d+, events streamed \d+/m.test(output) ? true : undefined),
        'a progress line',
      );
      const postgresPort = Number(output.match(/PostgreSQL ready on 127\.0\.0\.1:(\d+)/)?.[1]);
      expect(postgresPort).toBeGreaterThan(0);

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(output).toMatch(/writer stopped after \d+ changes/);
      expect(latestByKey(await readJsonLines(file)).size).toBeGreaterThan(0);
      expect(await accepts(postgresPort), 'the demo PostgreSQL is torn down').toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
