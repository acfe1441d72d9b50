import { describe, expect, it } from 'vitest';
import { type RunResult, replayCommand, reportMarkdown } from '../../src/matrix.js';
import { Random } from '../../src/random.js';
import { checkpointPassesMarker, classifyMissing } from '../../src/run.js';
import { SCENARIOS, scenarioNamed } from '../../src/scenarios.js';

describe('the chaos runner', () => {
  it('draws the same schedule for the same seed and scenario, another for another', () => {
    const draws = (seed: number, salt: string) => {
      const rng = new Random(seed, salt);
      return Array.from({ length: 20 }, () => rng.int(0, 1000));
    };
    expect(draws(7, 'kill-stream')).toEqual(draws(7, 'kill-stream'));
    expect(draws(7, 'kill-stream')).not.toEqual(draws(8, 'kill-stream'));
    expect(draws(7, 'kill-stream')).not.toEqual(draws(7, 'kill-snapshot'));
    const rng = new Random(1);
    for (let i = 0; i < 1000; i++) {
      const n = rng.int(3, 5);
      expect(n >= 3 && n <= 5).toBe(true);
    }
  });

  it('prints a replay command that selects exactly the failed run', () => {
    expect(replayCommand('kill-stream', 13, { maxRows: 3000 })).toBe(
      'pnpm chaos --scenario kill-stream --seed 13 --max-rows 3000',
    );
    expect(replayCommand('kill-write-checkpoint', 2, { maxRows: 1500, fault: 'ack-before-write' })).toBe(
      'pnpm chaos --scenario kill-write-checkpoint --seed 2 --max-rows 1500 --fault ack-before-write',
    );
  });

  it('knows every scenario by name and refuses an unknown one', () => {
    expect(new Set(SCENARIOS.map((s) => s.name)).size).toBe(SCENARIOS.length);
    expect(scenarioNamed('two-servers').name).toBe('two-servers');
    expect(() => scenarioNamed('nope')).toThrow(/unknown scenario 'nope'/);
  });

  it('reports scenario × seeds passed, events checked and replays seen, with the failed seeds and their replay', () => {
    const result = (scenario: string, seed: number, outcome: RunResult['outcome'], events = 0): RunResult => ({
      scenario,
      seed,
      outcome,
      events,
      replays: outcome === 'passed' ? 2 : 0,
      changes: 10,
      ms: 4000,
      replay: replayCommand(scenario, seed, { maxRows: 3000 }),
      ...(outcome === 'failed' ? { reason: '1 problem(s):\n  change lost: insert …' } : {}),
    });
    const table = reportMarkdown(
      [result('kill-stream', 1, 'passed', 100), result('kill-stream', 2, 'failed'), result('sigterm', 1, 'passed', 50)],
      { scenarios: SCENARIOS, seeds: [1, 2], maxRows: 3000 },
      new Date('2026-12-04T22:00:00Z'),
    );
    expect(table).toContain('| kill-stream | 1/2 | 100 | 2 | 4.0 s | 2 |');
    expect(table).toContain('| sigterm | 1/1 | 50 | 2 | 4.0 s | — |');
    expect(table).not.toContain('| kill-snapshot |');
    expect(table).toContain('`pnpm chaos --scenario kill-stream --seed 2 --max-rows 3000` — 1 problem(s):');
  });

  it('takes a keepalive checkpoint between the marker INSERT and its commit for unsure, never for past it', () => {
    // The marker row went in between insert LSNs 0x1000 (before) and 0x2000 (after, read once it committed).
    const at = (lsn: number, index: number) =>
      `${lsn.toString(16).toUpperCase().padStart(16, '0')}:${index.toString(16).toUpperCase().padStart(8, '0')}`;
    expect(checkpointPassesMarker(at(0x0f00, 3), 0x1000n, 0x2000n)).toBe(false);
    expect(checkpointPassesMarker(at(0x1000, 0), 0x1000n, 0x2000n)).toBe(false);
    // A keepalive for WAL flushed between the INSERT and its commit (the failure of seed 2,
    // state-store-unwritable): it may sort before the marker.
    expect(checkpointPassesMarker(at(0x1800, 0), 0x1000n, 0x2000n)).toBe('unsure');
    // The marker's own transaction (or a later one: the writer has stopped).
    expect(checkpointPassesMarker(at(0x1800, 1), 0x1000n, 0x2000n)).toBe(true);
    // A keepalive at or past the insert LSN read after the commit.
    expect(checkpointPassesMarker(at(0x2000, 0), 0x1000n, 0x2000n)).toBe(true);
    expect(checkpointPassesMarker(at(0x2400, 0), 0x1000n, 0x2000n)).toBe(true);
  });

  it('tells a row only the snapshot carries from a streamed insert when the sink lacks it', () => {
    const insert = (id: number) => ({ table: 'public.accounts', op: 'insert' as const, key: { id } });
    const txns = [
      { lsnBefore: 100n, changes: [insert(1_000_000), insert(1_000_001)] },
      { lsnBefore: 300n, changes: [insert(1_000_002), insert(1_000_003)] },
    ];
    const rows = [1, 2, 1_000_000, 1_000_001, 1_000_002, 1_000_003, 9_999_999].map((id) => ({ id, v: 0, note: 'x' }));
    const records = [
      { table: 'public.accounts', op: 'read' as const, key: { id: 1 }, after: null },
      { table: 'public.accounts', op: 'update' as const, key: { id: 1_000_001 }, after: null },
      { table: 'public.accounts', op: 'insert' as const, key: { id: 1_000_003 }, after: null },
    ];
    expect(classifyMissing(records, rows, txns, 200n)).toEqual({
      total: 4,
      seeded: 1,
      beforeStart: 1,
      afterStart: 1,
      other: 1,
    });
  });
});
