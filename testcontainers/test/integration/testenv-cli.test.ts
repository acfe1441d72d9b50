import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=@nanosync/source', '--import', 'tsx', cli, ...args], {
      cwd: repoRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Alive and not a zombie waiting to be reaped. */
function running(pid: number): boolean {
  try {
    return !/^State:\s*Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

describe('nanosync-testenv up/down', () => {
  let stateDir = '';
  let env: NodeJS.ProcessEnv = {};

  afterAll(async () => {
    if (stateDir) {
      if (existsSync(join(stateDir, 'state.json'))) await runCli(['down'], env);
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('starts Postgres and Kafka in the background, prints eval-able variables, and down leaves no process behind', async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'nanosync-testenv-test-'));
    env = { ...process.env, NANOSYNC_TESTENV_DIR: stateDir };
    const up = await runCli(['up', 'postgres', 'kafka'], env);
    expect(up.code, up.stderr).toBe(0);

    // stdout holds only shell assignments and one export line.
    const lines = up.stdout.trim().split('\n');
    for (const line of lines) expect(line).toMatch(/^(export [A-Z_ ]+|[A-Z_]+=\S+)$/);
    const vars = Object.fromEntries(
      lines
        .filter((l) => !l.startsWith('export '))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(lines.at(-1)).toContain('NANOSYNC_TEST_PG_URL');
    const pgUrl = vars.NANOSYNC_TEST_PG_URL as string;
    const brokers = (vars.NANOSYNC_TEST_KAFKA_BROKERS as string).split(',');

    const state = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as {
      keeperPid: number;
      pids: number[];
    };
    expect(state.pids).toHaveLength(2);
    // The services outlive the CLI process that started them.
    for (const pid of [state.keeperPid, ...state.pids]) expect(running(pid)).toBe(true);

    const client = new pg.Client({ connectionString: pgUrl });
    await client.connect();
    const { rows } = await client.query<{ wal_level: string }>('SHOW wal_level');
    await client.end();
    expect(rows[0]?.wal_level).toBe('logical');

    const admin = new Kafka({ clientId: 'testenv-test', brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: `ns-testenv-${Date.now()}` }] });
    await admin.disconnect();

    const down = await runCli(['down'], env);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toBe('');
    for (const pid of [state.keeperPid, ...state.pids]) expect(running(pid), `pid ${pid} still running`).toBe(false);
    expect(existsSync(join(stateDir, 'state.json'))).toBe(false);
    const after = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 2000 });
    await expect(after.connect()).rejects.toThrow();
  });
});
