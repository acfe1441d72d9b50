import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventually, runCli, startServing } from './cli-process.js';
import { uniqueName } from './fixtures.js';

describe('a pipeline whose source cannot be reached', () => {
  it('is RETRYING, with attempt, next retry and last error, in list, metrics and Prometheus', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address() as { port: number };
    await new Promise<void>((r) => blocker.close(() => r()));
    const dir = await mkdtemp(join(tmpdir(), 'ns-retrying-'));
    try {
      const name = uniqueName('retry');
      const config = join(dir, 'p.yaml');
      await writeFile(
        config,
        `connections:
  - name: db
    type: postgres
    dsn: "postgres://nobody@127.0.0.1:${port}/nothing"
  - name: out
    type: file
    properties:
      path: ${JSON.stringify(join(dir, 'out'))}
pipelines:
  - name: ${name}
    source:
      connection: db
      tables: [public.t]
    sink:
      connection: out
`,
      );
      const state = join(dir, 'state', 'state.db');
      const { proc, server } = await startServing(['serve', '--state', state]);
      await using _server = proc;
      const client = (...args: string[]) => runCli([...args, '--server', server, '--state', state]);
      expect((await client('apply', '--file', config)).code).toBe(0);
      // One log line per event, each starting with its time.
      await eventually(async () => (proc.stderr.includes('pipeline created') ? true : undefined), 'the log line');
      const created = proc.stderr.split('\n').filter((line) => line.includes('pipeline created'));
      expect(created).toHaveLength(1);
      expect(created[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INF pipeline created name=/);

      const listed = await eventually(async () => {
        const out = (await client('list', 'pipelines')).stdout;
        return new RegExp(`^${name}\\s+RETRYING`, 'm').test(out) ? out : undefined;
      }, 'RETRYING in list');
      expect(listed).toMatch(
        new RegExp(
          `${name}: retrying, attempt \\d+ of \\d+ failed, next in .+ \\(\\d\\d:\\d\\d:\\d\\d UTC\\): .*${port}`,
        ),
      );

      const json = JSON.parse((await client('list', 'pipelines', '--json')).stdout) as {
        state: string;
        retry?: { attempt: number; maxAttempts: number; nextRetryAt: string; lastError: string };
      }[];
      const retry = json[0]!.retry!;
      expect(retry.attempt).toBeGreaterThanOrEqual(1);
      expect(Number.isNaN(Date.parse(retry.nextRetryAt))).toBe(false);
      expect(retry.lastError).toContain(String(port));

      const report = (await client('metrics', 'pipeline', name)).stdout;
      expect(report).toMatch(/retrying\s+attempt \d+ of \d+ failed/);
      expect(report).toMatch(new RegExp(`last error\\s+.*${port}`));

      const token = (await readFile(join(dir, 'state', 'token'), 'utf8')).trim();
      const scrape = await (await fetch(`${server}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
      expect(scrape).toContain(`ns_pipeline_state{pipeline="${name}",state="RETRYING"} 1`);
      expect(scrape).toContain(`ns_pipeline_state{pipeline="${name}",state="CREATED"} 0`);
      expect(scrape).toMatch(
        new RegExp(`ns_pipeline_last_error\\{pipeline="${name}",state="RETRYING",error=".*${port}.*"\\} 1`),
      );
      expect(scrape).toMatch(new RegExp(`ns_pipeline_retry_attempt\\{pipeline="${name}"\\} [1-9]`));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
