import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { latestByKey, readJsonLines } from '@nanosync/sink-file';
import { describe, expect, it } from 'vitest';
import { cliEnv, eventually, REPO_ROOT } from '../../../cli/test/integration/cli-process.js';

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

describe('bash scripts/ns quickstart', () => {
  it('snapshots the demo table, streams live changes into files, and stops cleanly on Ctrl-C', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ns-quickstart-'));
    // Through scripts/ns, from a folder outside the repository, as the README says to run it.
    const child = spawn('bash', [join(REPO_ROOT, 'scripts/ns'), 'quickstart', '--rows', '300', '--dir', dir], {
      cwd: dir,
      env: cliEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
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
        return snapshotted === 300 && streamed >= 3 ? true : undefined;
      }, 'the snapshot and some streamed changes in the output file').catch((err: Error) => {
        throw new Error(`${err.message}\n--- quickstart output ---\n${output}`);
      });
      expect(output).toContain('nanosync quickstart running — Ctrl-C to stop');
      expect(output).toContain('public.orders has 300 rows');
      expect(output).toContain('snapshot done: 300 rows copied');
      // The printed commands name the CLI as it can be run from here, and the output file.
      expect(output).toContain(`bash ${join(REPO_ROOT, 'scripts/ns')} nanosync list pipelines --server 127.0.0.1:`);
      expect(output).toContain(`tail -f ${join('output', 'public.orders.jsonl')}`);
      await eventually(
        async () =>
          /^LIVE_CDC\s+300 rows snapshotted, [1-9]\d* changes streamed, \d+\.\d changes\/s/m.test(output)
            ? true
            : undefined,
        'a progress line with streamed changes',
      );
      // The printed client command works from this folder while the quickstart runs.
      const listLine = output.match(/^ {2}(bash .*nanosync list pipelines .*)$/m)![1]!;
      const listed = await new Promise<string>((resolveList, rejectList) => {
        const c = spawn('bash', ['-c', listLine], { cwd: dir, env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
        let text = '';
        c.stdout.setEncoding('utf8').on('data', (d: string) => {
          text += d;
        });
        c.on('close', (code) => (code === 0 ? resolveList(text) : rejectList(new Error(`exit ${code}: ${text}`))));
      });
      expect(listed).toMatch(/quickstart-orders\s+LIVE_CDC/);
      const postgresPort = Number(output.match(/PostgreSQL ready on 127\.0\.0\.1:(\d+)/)?.[1]);
      expect(postgresPort).toBeGreaterThan(0);

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(output).toMatch(/writer stopped after \d+ changes/);
      expect(output).toMatch(/delivered 300 snapshot rows and \d+ changes/);
      expect(output).not.toContain('ELIFECYCLE');
      expect(latestByKey(await readJsonLines(file)).size).toBeGreaterThan(0);
      expect(await accepts(postgresPort), 'the demo PostgreSQL is torn down').toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
