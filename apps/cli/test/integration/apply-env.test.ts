import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventually, runCli, startServing } from './cli-process.js';
import { CliTestContext, uniqueName } from './fixtures.js';

describe('apply sends environment references as written; the server resolves them in its own environment', () => {
  it('a variable set only on the server is accepted and used there', async () => {
    await using ctx = await CliTestContext.create(5);
    const name = uniqueName('cli_env');
    const config = join(ctx.dir, 'env.yaml');
    await writeFile(
      config,
      `connections:
  - name: pg
    type: postgres
    dsn: ${JSON.stringify(ctx.dsnWithSecret)}
  - name: out
    type: file
    properties:
      path: "\${env:NS_TEST_SERVER_ONLY_OUT}"
pipelines:
  - name: ${name}
    source:
      connection: pg
      tables: [public.orders]
    sink:
      connection: out
`,
    );
    expect(process.env.NS_TEST_SERVER_ONLY_OUT).toBeUndefined();
    const { proc, server } = await startServing(['serve', '--state', ctx.stateFile], {
      env: { NS_TEST_SERVER_ONLY_OUT: ctx.outDir },
    });
    await using _server = proc;
    const applied = await runCli(['apply', '--file', config, '--server', server, '--state', ctx.stateFile]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    expect(applied.stdout).toContain(`${name} created`);
    // The rows land in the folder only the server's environment names.
    const files = await eventually(async () => {
      const found = await readdir(ctx.outDir).catch(() => [] as string[]);
      return found.length > 0 ? found : undefined;
    }, 'the file sink writing into the folder named by the server-only variable');
    expect(files.length).toBeGreaterThan(0);
  });
});
