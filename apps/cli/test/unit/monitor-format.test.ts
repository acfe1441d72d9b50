import type { LatencyHistogram, PipelineStatus } from '@nanosync/core/host';
import { describe, expect, it } from 'vitest';
import {
  formatBytes,
  formatCount,
  formatFields,
  formatSeconds,
  latencyQuantileBound,
  latencySummary,
  progressBar,
  snapshotFraction,
  snapshotSummary,
  walShare,
  walSummary,
} from '../../src/monitor/format.js';
import { renderPipelineReport } from '../../src/monitor/pipeline-report.js';
import { retryText } from '../../src/format.js';

function histogram(counts: [number, number][], sum: number): LatencyHistogram {
  const buckets = counts.map(([le, count]) => ({ le, count }));
  return { buckets, count: counts.at(-1)?.[1] ?? 0, sum };
}

describe('number formatting', () => {
  it('groups counts without abbreviating them', () => {
    expect(formatCount(0)).toBe('0');
    expect(formatCount(999)).toBe('999');
    expect(formatCount(1000)).toBe('1,000');
    expect(formatCount(1234567)).toBe('1,234,567');
    expect(formatCount(-4200)).toBe('-4,200');
    expect(formatCount(undefined)).toBe('-');
  });

  it('bytes in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(4096)).toBe('4.0 KiB');
    expect(formatBytes(64 * 1024 * 1024)).toBe('64.0 MiB');
    expect(formatBytes(1.5 * 1024 ** 3)).toBe('1.5 GiB');
    expect(formatBytes(null)).toBe('-');
  });

  it('write latencies', () => {
    expect(formatSeconds(0.0042)).toBe('4.2ms');
    expect(formatSeconds(0.25)).toBe('250ms');
    expect(formatSeconds(1.26)).toBe('1.3s');
  });

  it('aligns label/value fields', () => {
    expect(
      formatFields([
        ['state', 'LIVE_CDC'],
        ['events/s', '1.0'],
      ]),
    ).toBe('  state     LIVE_CDC\n  events/s  1.0');
  });
});

describe('retry text', () => {
  it('names the attempt and its limit, or no limit while the state store is waited for', () => {
    const now = Date.parse('2026-12-04T10:00:00Z');
    expect(retryText({ attempt: 2, maxAttempts: 20, nextRetryAt: '2026-12-04T10:00:05Z' }, now)).toBe(
      'attempt 2 of 20 failed, next in 5.0s (10:00:05 UTC)',
    );
    expect(retryText({ attempt: 7, maxAttempts: 0, nextRetryAt: '2026-12-04T10:00:05Z' }, now)).toBe(
      'attempt 7 failed, next in 5.0s (10:00:05 UTC)',
    );
  });
});

describe('snapshot progress', () => {
  it('uses rows when estimated, partitions otherwise, and never shows 100% before done', () => {
    expect(
      snapshotFraction({ partitionsTotal: 4, partitionsDone: 1, rowsRead: 500, rowsEstimated: 1000, done: false }),
    ).toBe(0.5);
    expect(
      snapshotFraction({ partitionsTotal: 4, partitionsDone: 1, rowsRead: 500, rowsEstimated: 0, done: false }),
    ).toBe(0.25);
    expect(
      snapshotFraction({ partitionsTotal: 4, partitionsDone: 3, rowsRead: 1500, rowsEstimated: 1000, done: false }),
    ).toBe(0.99);
    expect(
      snapshotFraction({ partitionsTotal: 4, partitionsDone: 4, rowsRead: 900, rowsEstimated: 1000, done: true }),
    ).toBe(1);
  });

  it('draws a bar of fixed width', () => {
    expect(progressBar(0, 10)).toBe('░░░░░░░░░░');
    expect(progressBar(0.5, 10)).toBe('█████░░░░░');
    expect(progressBar(1, 10)).toBe('██████████');
    expect(progressBar(7, 4)).toBe('████');
    expect(progressBar(Number.NaN, 4)).toBe('░░░░');
  });

  it('summarises with an ETA while running', () => {
    expect(snapshotSummary(undefined)).toBe('-');
    expect(
      snapshotSummary({
        partitionsTotal: 10,
        partitionsDone: 3,
        rowsRead: 310,
        rowsEstimated: 1000,
        etaSeconds: 65,
        done: false,
      }),
    ).toBe('31% ETA 1m05s');
    expect(
      snapshotSummary({ partitionsTotal: 10, partitionsDone: 3, rowsRead: 310, rowsEstimated: 1000, done: false }),
    ).toBe('31%');
    expect(
      snapshotSummary({ partitionsTotal: 10, partitionsDone: 10, rowsRead: 1000, rowsEstimated: 1000, done: true }),
    ).toBe('100% done');
  });
});

describe('write latency summary', () => {
  const h = histogram(
    [
      [0.005, 90],
      [0.01, 99],
      [0.025, 100],
    ],
    0.4,
  );

  it('finds the bucket bound holding a quantile', () => {
    expect(latencyQuantileBound(h, 0.5)).toBe(0.005);
    expect(latencyQuantileBound(h, 0.99)).toBe(0.01);
    expect(latencyQuantileBound(h, 1)).toBe(0.025);
    expect(latencyQuantileBound(histogram([], 0), 0.5)).toBeUndefined();
  });

  it('reads as average and p99', () => {
    expect(latencySummary(h)).toBe('avg 4.0ms, p99 ≤ 10ms over 100 writes');
    expect(latencySummary(histogram([[10, 0]], 0))).toBe('no writes yet');
    // Slower than every bucket: only "+Inf" holds them.
    expect(latencySummary({ buckets: [{ le: 10, count: 0 }], count: 1, sum: 12 })).toBe(
      'avg 12.0s, p99 > 10.0s over 1 write',
    );
  });
});

describe('retained WAL', () => {
  it('relates retained bytes to the slot limit', () => {
    const source = { retainedWalBytes: 48 * 1024 * 1024, safeWalBytes: 16 * 1024 * 1024 };
    expect(walShare(source)).toBe(0.75);
    expect(walSummary(source)).toBe('48.0 MiB of 64.0 MiB (75%)');
    expect(walSummary({ retainedWalBytes: 2048, safeWalBytes: null })).toBe('2.0 KiB (no limit)');
    expect(walShare({ retainedWalBytes: 2048, safeWalBytes: null })).toBeUndefined();
    expect(walSummary(undefined)).toBe('-');
  });
});

const live: PipelineStatus = {
  name: 'orders',
  state: 'LIVE_CDC',
  replicationType: 'cdc_backfill',
  lagSeconds: 0.4,
  eventsPerSecond: 12.5,
  eventsTotal: 1045,
  checkpoint: '000000000016B3A28:00000000',
  checkpointText: '0/16B3A28',
  snapshot: { partitionsTotal: 4, partitionsDone: 4, rowsRead: 1000, rowsEstimated: 990, done: true },
  tables: [
    {
      table: 'public.orders',
      rowsSnapshotted: 1000,
      rowsEstimated: 990,
      events: 40,
      lagSeconds: 0.4,
      partitionsTotal: 4,
      partitionsDone: 4,
    },
    { table: 'public.notes', rowsSnapshotted: 0, rowsEstimated: 0, events: 5, partitionsTotal: 0, partitionsDone: 0 },
  ],
  sinks: [
    {
      name: '0:out',
      rowsWritten: 1045,
      writeErrors: 2,
      deadLetters: 3,
      skippedEvents: 0,
      queueDepth: 0,
      queueBytes: 0,
      state: 'spilling',
      spillBytes: 3 * 1024 * 1024,
      spillEvents: 1200,
      lagSeconds: 0.4,
      writeLatency: histogram(
        [
          [0.005, 9],
          [0.01, 10],
        ],
        0.03,
      ),
    },
  ],
  source: { retainedWalBytes: 48 * 1024 * 1024, safeWalBytes: 16 * 1024 * 1024, polledAt: '2026-01-02T03:04:05.000Z' },
  warnings: [
    "retained WAL is 75% of the slot's limit (48.0 MiB of 64.0 MiB, over 50%); the slot is invalidated when it reaches 100%",
  ],
};

describe('metrics pipeline report', () => {
  it('shows every figure in aligned sections', () => {
    const text = renderPipelineReport(live);
    expect(text).toBe(`Pipeline orders
  state       LIVE_CDC (cdc_backfill)
  lag         0.4s
  events/s    12.5
  events      1,045 since the server started (snapshot rows and changes)
  checkpoint  0/16B3A28

Snapshot
  progress    ████████████████████ 100% done
  partitions  4 of 4 done
  rows        1,000 read of about 990

Tables
  TABLE          SNAPSHOT ROWS  PARTITIONS  EVENTS  LAG
  public.orders  1,000          4/4         40      0.4s
  public.notes   0              -           5       -

Sinks
  SINK   STATE     ROWS WRITTEN  ERRORS  DEAD LETTERS  SKIPPED  QUEUE  SPILLED  LAG   WRITE LATENCY
  0:out  spilling  1,045         2       3             0        0      3.0 MiB  0.4s  avg 3.0ms, p99 ≤ 10ms over 10 writes

Source WAL
  retained  48.0 MiB
  safe      16.0 MiB more before the slot may be invalidated
  used      75% of the slot's limit (warnings at 50% and 80%)
  measured  2026-01-02T03:04:05.000Z

Warnings
  ! retained WAL is 75% of the slot's limit (48.0 MiB of 64.0 MiB, over 50%); the slot is invalidated when it reaches 100%`);
  });

  it('shows a running snapshot with its ETA, errors, and a source without a WAL limit', () => {
    const text = renderPipelineReport({
      ...live,
      state: 'ERRORED',
      error: 'sink 0:out: disk full',
      lagSeconds: undefined,
      snapshot: {
        partitionsTotal: 4,
        partitionsDone: 1,
        rowsRead: 250,
        rowsEstimated: 1000,
        etaSeconds: 30,
        done: false,
      },
      source: { retainedWalBytes: 1024, safeWalBytes: null },
      warnings: [],
    });
    expect(text).toContain('  state       ERRORED (cdc_backfill)\n  lag         -\n');
    expect(text).toContain('  error       sink 0:out: disk full');
    expect(text).toContain(
      '  progress    █████░░░░░░░░░░░░░░░ 25%\n  partitions  1 of 4 done\n  rows        250 read of about 1,000\n  ETA         30s',
    );
    expect(text).toContain('  safe      no limit on the server (max_slot_wal_keep_size = -1)');
    expect(text).toMatch(/Warnings\n {2}none$/);
  });

  it('says what a pipeline that cannot go on waits for', () => {
    const text = renderPipelineReport({
      ...live,
      waitingFor: 'source: replication slot "nanosync_slot_orders" is in use by another process (pid 4711)',
    });
    expect(text).toContain(
      '  checkpoint  0/16B3A28\n  waits for   source: replication slot "nanosync_slot_orders" is in use by another process (pid 4711)\n',
    );
  });

  it('a cdc pipeline has no snapshot, and a source that has not reported says so', () => {
    const text = renderPipelineReport({ ...live, replicationType: 'cdc', snapshot: undefined, source: undefined });
    expect(text).toContain('Snapshot\n  progress  none (cdc pipelines skip the snapshot)');
    expect(text).toContain('Source WAL\n  retained  not reported (yet)');
  });
});
