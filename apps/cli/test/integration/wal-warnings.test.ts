import type { PipelineStatus } from '@nanosync/core/host';
import { describe, expect, it } from 'vitest';
import { eventually, runCli } from './cli-process.js';
import { metricValue, ObservabilityContext, TmuxSession, uniqueName } from './observability-fixtures.js';

const MiB = 1024 * 1024;

describe('retained-WAL warnings of a paused pipeline (real PostgreSQL with max_slot_wal_keep_size)', () => {
  it('reach the log, the API, /metrics, `metrics pipeline` and the dashboard at 50% and then 80%', async () => {
    // 128 MiB limit, 16 MiB segments: each pg_switch_wal() after a write retains one more segment.
    await using ctx = await ObservabilityContext.create({ max_slot_wal_keep_size: '128MB' });
    await ctx.createTable('orders', 5);
    const name = uniqueName('obs_wal');
    const config = await ctx.writeConfig([{ name, tables: ['public.orders'] }], 100, 'cdc');
    const { url } = await ctx.serve();
    const applied = await runCli(['apply', '--file', config, '--server', url, '--state', ctx.stateFile]);
    expect(applied.code, applied.stderr).toBe(0);
    await ctx.waitForStatus(name, 'streaming', (p) => p.state === 'LIVE_CDC' && p.startPosition !== undefined);
    const paused = await runCli(['pipeline', 'pause', name, '--server', url, '--state', ctx.stateFile]);
    expect(paused.code, paused.stderr).toBe(0);

    const growWal = async (segments: number) => {
      for (let i = 0; i < segments; i++) {
        await ctx.db.query("INSERT INTO public.orders VALUES (1000 + $1, 'wal')", [Math.floor(Math.random() * 1e9)]);
        await ctx.db.query('SELECT pg_switch_wal()');
      }
    };
    const retainedShare = (p: PipelineStatus) => {
      const retained = p.source?.retainedWalBytes;
      const safe = p.source?.safeWalBytes;
      return retained !== undefined && typeof safe === 'number' ? retained / (retained + safe) : undefined;
    };

    // The limit comes to about 8.4 segments (keep size plus the segment in use). Five
    // switches (the first one only finishes the current segment): a little over 50%.
    await growWal(5);
    const half = await ctx.waitForStatus(name, 'the 50% warning', (p) =>
      p.warnings.some((w) => w.includes('over 50%')),
    );
    expect(half.state).toBe('PAUSED');
    expect(retainedShare(half)).toBeGreaterThanOrEqual(0.5);
    expect(half.source!.retainedWalBytes).toBeGreaterThanOrEqual(4 * 16 * MiB);

    const metrics = (await ctx.api('/metrics')).text;
    expect(metricValue(metrics, 'ns_pipeline_warnings', { pipeline: name })).toBe(1);
    expect(metricValue(metrics, 'ns_pipeline_state', { pipeline: name, state: 'PAUSED' })).toBe(1);
    const retained = metricValue(metrics, 'ns_slot_retained_wal_bytes', { pipeline: name })!;
    const safe = metricValue(metrics, 'ns_slot_safe_wal_bytes', { pipeline: name })!;
    expect(retained).toBeGreaterThanOrEqual(4 * 16 * MiB);
    expect(safe).toBeGreaterThan(0);
    expect(retained / (retained + safe)).toBeGreaterThanOrEqual(0.5);

    const report = await runCli(['metrics', 'pipeline', name, '--server', url, '--state', ctx.stateFile]);
    expect(report.code, report.stderr).toBe(0);
    expect(report.stdout).toMatch(
      /Source WAL\n {2}retained\s+\d+\.\d MiB\n {2}safe\s+\d+\.\d MiB more before the slot may be invalidated\n {2}used\s+\d+% of the slot's limit/,
    );
    expect(report.stdout).toMatch(/Warnings\n {2}! retained WAL is \d+% of the slot's limit .*over 50%/);

    await using term = await TmuxSession.start(['monitor', '--server', url, '--state', ctx.stateFile]);
    const screen = await term.waitForScreen('the warning on the dashboard', (s) =>
      s.includes(`⚠ ${name}: retained WAL`),
    );
    expect(screen).toContain('over 50%');

    // Three more segments: close to 90%, still short of the limit. The 80% warning replaces
    // the 50% one and is logged once more.
    await growWal(3);
    const high = await ctx.waitForStatus(name, 'the 80% warning', (p) =>
      p.warnings.some((w) => w.includes('over 80%')),
    );
    expect(retainedShare(high)).toBeGreaterThanOrEqual(0.8);
    expect(high.warnings.filter((w) => w.includes('retained WAL'))).toHaveLength(1);
    await term.waitForScreen('the 80% warning on the dashboard', (s) => s.includes('over 80%'));

    const log = await eventually(
      async () => {
        const stderr = ctx.server!.proc.stderr;
        return /WRN retained WAL is \d+% .*over 50%/.test(stderr) && /WRN retained WAL is \d+% .*over 80%/.test(stderr)
          ? stderr
          : undefined;
      },
      'both warnings in the server log',
      30_000,
    );
    expect(log).toContain(`pipeline=${name}`);
  }, 300_000);
});
