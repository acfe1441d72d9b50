import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteStateStore } from '../../src/state/sqlite.js';
import { EVENTS_PER_TX, SNAPSHOT_ROWS, TX_COUNT, txEnd, txOf } from './fixtures/deterministic-source.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../../..');
const child = path.join(here, 'fixtures', 'crash-child.ts');

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

const children = new Set<ReturnType<typeof spawn>>();
const dirs: string[] = [];
afterEach(() => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function runChild(dir: string, env: Record<string, string> = {}): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--conditions=@nanosync/source', '--import', 'tsx', child], {
      cwd: repoRoot,
      env: { ...process.env, NANOSYNC_TEST_DIR: dir, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(proc);
    let output = '';
    const collect = (d: Buffer) => {
      output += d.toString();
    };
    proc.stdout.on('data', collect);
    proc.stderr.on('data', collect);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(proc);
      resolve({ code, signal, output });
    });
  });
}

function sinkLines(dir: string): { op: string; id: string; position: string }[] {
  const file = path.join(dir, 'sink.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

function acks(dir: string): string[] {
  const file = path.join(dir, 'acks.log');
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

describe('crash between a durable sink write and its checkpoint', () => {
  it('replays the unrecorded write after a restart instead of skipping it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ns-crash-'));
    dirs.push(dir);

    const killed = await runChild(dir, { NANOSYNC_TEST_KILL_AT_TX: '15' });
    expect(killed.signal, killed.output).toBe('SIGKILL');
    const killedWrite: string[] = JSON.parse(readFileSync(path.join(dir, 'killed-write.json'), 'utf8'));
    expect(killedWrite.length).toBeGreaterThan(0);
    const beforeRestart = sinkLines(dir);
    // The killed write reached the file (durable) …
    expect(beforeRestart.slice(-killedWrite.length).map((l) => l.position)).toEqual(killedWrite);

    // … but not the state store, and the source was never told about it.
    const store = await openSqliteStateStore(path.join(dir, 'state.db'));
    const checkpoint = (await store.getCheckpoints('crash'))['0:file'];
    const record = await store.getPipeline('crash');
    await store.close();
    expect(record?.snapshotDone).toBe(true);
    expect(checkpoint).toBeDefined();
    const lastKilled = killedWrite[killedWrite.length - 1]!;
    expect(checkpoint! < lastKilled).toBe(true);
    const acked = acks(dir);
    expect(acked.length).toBeGreaterThan(0);
    for (const a of acked) expect(a <= checkpoint!).toBe(true);

    const restarted = await runChild(dir);
    expect(restarted.code, restarted.output).toBe(0);
    expect(restarted.output).toContain('INF pipeline resuming name=crash');

    const lines = sinkLines(dir);
    const streamed = lines.filter((l) => l.op !== 'read');
    // Every stream event is there at least once: nothing skipped.
    const seen = new Set(streamed.map((l) => l.position));
    expect(seen.size).toBe(TX_COUNT * EVENTS_PER_TX);
    // The write that was not checkpointed came again after the restart.
    for (const p of killedWrite) expect(streamed.filter((l) => l.position === p).length).toBeGreaterThanOrEqual(2);
    // The replay started right after the checkpoint: positions go back only to it, once.
    const afterRestart = lines.slice(beforeRestart.length).filter((l) => l.op !== 'read');
    expect(afterRestart[0]!.position > checkpoint!).toBe(true);
    expect(txOf(afterRestart[0]!.position)).toBe(txOf(checkpoint!) + 1);
    const positions = afterRestart.map((l) => l.position);
    expect([...positions].sort()).toEqual(positions);
    // The snapshot was complete before the crash and is not read again.
    expect(lines.filter((l) => l.op === 'read')).toHaveLength(SNAPSHOT_ROWS);
    // Finally everything is acknowledged, in order.
    const finalAcks = acks(dir);
    expect(finalAcks[finalAcks.length - 1]).toBe(txEnd(TX_COUNT));
    expect([...finalAcks].sort()).toEqual(finalAcks);
  });
});
