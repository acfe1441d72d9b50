import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/abandon-postgres.ts', import.meta.url));

/** Alive and not a zombie waiting to be reaped. */
function running(pid: number): boolean {
  try {
    return !/^State:\s*Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function eventually(check: () => boolean, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

function startChild(mode: string): {
  child: ChildProcess;
  report: Promise<{ dataDir: string; checkpointerPid: number }>;
} {
  const child = spawn(process.execPath, ['--conditions=@nanosync/source', '--import', 'tsx', fixture, mode], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const report = new Promise<{ dataDir: string; checkpointerPid: number }>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk) => {
      out += chunk;
      if (out.includes('\n')) resolve(JSON.parse(out.slice(0, out.indexOf('\n'))));
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before reporting`)));
  });
  return { child, report };
}

describe('nothing is left behind', () => {
  it('a SIGKILLed owner takes its Postgres and temp folder with it (watchdog)', async () => {
    const { child, report } = startChild('wait');
    const { dataDir, checkpointerPid } = await report;
    expect(running(checkpointerPid)).toBe(true);
    expect(existsSync(dataDir)).toBe(true);
    child.kill('SIGKILL');
    expect(await eventually(() => !running(checkpointerPid)), 'postgres still running').toBe(true);
    expect(await eventually(() => !existsSync(dirname(dataDir))), 'temp folder still there').toBe(true);
  });

  it('a server stopped but never disposed still has its folder removed when the owner exits', async () => {
    const { report } = startChild('stop-then-exit');
    const { dataDir, checkpointerPid } = await report;
    expect(await eventually(() => !running(checkpointerPid))).toBe(true);
    expect(await eventually(() => !existsSync(dirname(dataDir))), 'temp folder still there').toBe(true);
  });

  it('a server left running at a normal exit is stopped and removed', async () => {
    const { report } = startChild('exit');
    const { dataDir, checkpointerPid } = await report;
    expect(await eventually(() => !running(checkpointerPid)), 'postgres still running').toBe(true);
    expect(await eventually(() => !existsSync(dirname(dataDir))), 'temp folder still there').toBe(true);
  });
});
