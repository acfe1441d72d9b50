import type { PipelineStatus } from '@nanosync/core/host';
import { renderToString } from 'ink';
import { createElement } from 'react';
import { describe, expect, it } from 'vitest';
import { DashboardView } from '../../src/monitor/dashboard.js';
import { effectiveView, INITIAL_NAVIGATION, keyOf, type Navigation, navigate } from '../../src/monitor/navigation.js';
import { type MonitorState, StatusPoller } from '../../src/monitor/poller.js';

const noLatency = { buckets: [], count: 0, sum: 0 };

function pipeline(p: Partial<PipelineStatus> & { name: string }): PipelineStatus {
  return {
    state: 'LIVE_CDC',
    replicationType: 'cdc_backfill',
    eventsPerSecond: 0,
    eventsTotal: 0,
    tables: [],
    sinks: [],
    warnings: [],
    ...p,
  };
}

const orders = pipeline({
  name: 'orders',
  state: 'SNAPSHOTTING',
  eventsPerSecond: 1520,
  snapshot: { partitionsTotal: 10, partitionsDone: 3, rowsRead: 310, rowsEstimated: 1000, etaSeconds: 65, done: false },
  tables: [
    {
      table: 'public.orders',
      rowsSnapshotted: 300,
      rowsEstimated: 900,
      events: 7,
      lagSeconds: 1.5,
      partitionsTotal: 9,
      partitionsDone: 3,
    },
    {
      table: 'public.items',
      rowsSnapshotted: 10,
      rowsEstimated: 100,
      events: 0,
      partitionsTotal: 1,
      partitionsDone: 0,
    },
  ],
  sinks: [{ name: '0:out', rowsWritten: 305, writeErrors: 1, queueDepth: 12, queueBytes: 0, writeLatency: noLatency }],
  source: { retainedWalBytes: 60 * 1024 * 1024, safeWalBytes: 4 * 1024 * 1024 },
  warnings: ["retained WAL is 93% of the slot's limit"],
});
const billing = pipeline({
  name: 'billing',
  lagSeconds: 0.4,
  eventsPerSecond: 12,
  snapshot: { partitionsTotal: 2, partitionsDone: 2, rowsRead: 50, rowsEstimated: 50, done: true },
});
const broken = pipeline({ name: 'zeta', state: 'ERRORED', error: 'table "public"."zeta" not found' });

const at = new Date(2026, 0, 2, 14, 3, 27);

function frame(state: MonitorState, navigation: Navigation = INITIAL_NAVIGATION): string {
  return renderToString(
    createElement(DashboardView, { state, navigation, server: 'http://127.0.0.1:7654', intervalMs: 1000 }),
    { columns: 140 },
  );
}

describe('dashboard view', () => {
  it('lists every pipeline with state, lag, events/s and snapshot progress, sorted by name', () => {
    const text = frame({ pipelines: [orders, broken, billing], updatedAt: at });
    const lines = text.split('\n');
    expect(lines[0]).toBe('nanosync monitor  http://127.0.0.1:7654');
    expect(lines[1]).toBe('● connected · updated 14:03:27 · every 1s');
    const rows = lines.filter((l) => /^[› ] (billing|orders|zeta)/.test(l));
    expect(rows.map((r) => r.trimEnd())).toEqual([
      '› billing   LIVE_CDC      0.4s  12.0      ████████████████████ 100% done',
      '  orders    SNAPSHOTTING  -     1520      ██████░░░░░░░░░░░░░░ 31% ETA 1m05s',
      '  zeta      ERRORED       -     0.0       -',
    ]);
    expect(text).toContain('  PIPELINE  STATE         LAG   EVENTS/S  SNAPSHOT');
    expect(text).toContain('✖ zeta: table "public"."zeta" not found');
    expect(text).toContain("⚠ orders: retained WAL is 93% of the slot's limit");
    expect(text).toContain('↑/↓ select · Enter tables · q quit');
  });

  it('the per-table view shows rows snapshotted, events and lag of each table, and the sinks', () => {
    const text = frame(
      { pipelines: [orders, billing], updatedAt: at },
      { view: 'tables', selected: 'orders', quit: false },
    );
    expect(text).toContain('nanosync monitor › orders SNAPSHOTTING  lag -  1520 events/s  cdc_backfill');
    expect(text).toMatch(/ {2}TABLE\s+ROWS SNAPSHOTTED\s+EVENTS\s+LAG\s+SNAPSHOT/);
    expect(text).toMatch(/ {2}public\.orders\s+300\s+7\s+1\.5s\s+███░░░░░░░ 3\/9/);
    // 10 of about 100 rows: the bar follows the rows, finer than the partition count.
    expect(text).toMatch(/ {2}public\.items\s+10\s+0\s+-\s+█░░░░░░░░░ 0\/1/);
    // SINK STATE ROWS-WRITTEN ERRORS DEAD-LETTERS SKIPPED QUEUE SPILLED LAG
    expect(text).toMatch(/ {2}0:out\s+-\s+305\s+1\s+0\s+0\s+12\s+-\s+-/);
    expect(text).toContain('WAL retained 60.0 MiB of 64.0 MiB (93%)');
    expect(text).toContain('Esc back · q quit');
    expect(text).not.toContain('billing');
  });

  it('says plainly when the server is down, and keeps the last figures', () => {
    const down = {
      message: 'no nanosync server answers at http://127.0.0.1:7654 (connection refused)',
      since: at,
      attempts: 3,
    };
    const stale = frame({ pipelines: [billing], updatedAt: at, down });
    expect(stale).toContain(
      '✖ server unreachable (3 tries since 14:03:27, retrying every 1s): no nanosync server answers at',
    );
    expect(stale).toContain('showing the last figures received, from 14:03:27');
    expect(stale).toContain('billing');
    const never = frame({ down });
    expect(never).toContain('server unreachable');
    expect(never).toContain('no data yet: waiting for the server to answer');
  });

  it('shows a WAITING pipeline and, under the table, what it waits for and who holds it', () => {
    const waiting = pipeline({
      name: 'orders',
      state: 'WAITING',
      waitingFor:
        'source: replication slot "nanosync_slot_orders" is in use by another process (pid 4711, nanosync from 10.0.0.7/32)',
    });
    const text = frame({ pipelines: [waiting, billing], updatedAt: at });
    expect(text).toMatch(/^ {2}orders\s+WAITING\s+-\s+0\.0/m);
    expect(text).toContain(
      '⏸ orders: waiting for source: replication slot "nanosync_slot_orders" is in use by another process (pid 4711, nanosync from 10.0.0.7/32)',
    );
  });

  it('says when there are no pipelines', () => {
    expect(frame({ pipelines: [], updatedAt: at })).toContain(
      'no pipelines (create some with: nanosync apply --file FILE)',
    );
  });
});

describe('dashboard keys', () => {
  const names = ['billing', 'orders', 'zeta'];

  it('maps terminal keys', () => {
    expect(keyOf('', { upArrow: true })).toBe('up');
    expect(keyOf('', { downArrow: true })).toBe('down');
    expect(keyOf('j', {})).toBe('down');
    expect(keyOf('', { return: true })).toBe('enter');
    expect(keyOf('', { escape: true })).toBe('back');
    expect(keyOf('q', {})).toBe('quit');
    expect(keyOf('x', {})).toBeUndefined();
  });

  it('moves the selection within bounds, opens and closes the per-table view, quits', () => {
    let nav = INITIAL_NAVIGATION;
    nav = navigate(nav, 'up', names);
    expect(nav.selected).toBe('billing');
    nav = navigate(navigate(navigate(nav, 'down', names), 'down', names), 'down', names);
    expect(nav.selected).toBe('zeta');
    nav = navigate(nav, 'up', names);
    nav = navigate(nav, 'enter', names);
    expect(nav).toEqual({ view: 'tables', selected: 'orders', quit: false });
    expect(navigate(nav, 'down', names).selected).toBe('orders');
    nav = navigate(nav, 'back', names);
    expect(nav.view).toBe('pipelines');
    expect(nav.selected).toBe('orders');
    expect(navigate(nav, 'quit', names).quit).toBe(true);
    expect(navigate(INITIAL_NAVIGATION, 'enter', [])).toEqual(INITIAL_NAVIGATION);
  });

  it('keeps the selected pipeline across reorderings, and leaves the per-table view of a deleted one', () => {
    const nav = navigate(navigate(INITIAL_NAVIGATION, 'down', names), 'enter', names);
    expect(nav.selected).toBe('orders');
    expect(navigate(nav, 'back', ['aardvark', ...names]).selected).toBe('orders');
    expect(effectiveView(nav, names)).toBe('tables');
    expect(effectiveView(nav, ['billing', 'zeta'])).toBe('pipelines');
  });
});

describe('status poller', () => {
  it('records answers, then failures with their count and start, then recovers', async () => {
    let answer: PipelineStatus[] | Error = [billing];
    let clock = at.getTime();
    const poller = new StatusPoller({
      fetch: async () => {
        if (answer instanceof Error) throw answer;
        return answer;
      },
      intervalMs: 1000,
      now: () => new Date(clock),
    });
    const seen: MonitorState[] = [];
    poller.subscribe(() => seen.push(poller.state));
    await poller.poll();
    expect(poller.state).toEqual({ pipelines: [billing], updatedAt: at });

    answer = Object.assign(new Error('no nanosync server answers at http://x (connection refused)'), {
      code: 'NS_X9002',
    });
    clock += 1000;
    await poller.poll();
    clock += 1000;
    await poller.poll();
    expect(poller.state.pipelines).toEqual([billing]);
    expect(poller.state.down).toEqual({
      message: 'no nanosync server answers at http://x (connection refused)',
      since: new Date(at.getTime() + 1000),
      attempts: 2,
    });

    answer = [billing, orders];
    await poller.poll();
    expect(poller.state.down).toBeUndefined();
    expect(poller.state.pipelines).toHaveLength(2);
    expect(seen).toHaveLength(4);
  });

  it('counts a request that never answers as a failure', async () => {
    const poller = new StatusPoller({ fetch: () => new Promise<never>(() => {}), intervalMs: 1000, timeoutMs: 20 });
    await poller.poll();
    expect(poller.state.down?.message).toBe('the server did not answer within 0 s');
  });

  it('keeps polling on its own until stopped', async () => {
    let calls = 0;
    const poller = new StatusPoller({
      fetch: async () => {
        calls++;
        if (calls % 2 === 0) throw new Error('down');
        return [];
      },
      intervalMs: 5,
    });
    poller.start();
    await new Promise<void>((resolve) => {
      const off = poller.subscribe(() => {
        if (calls >= 4) {
          off();
          resolve();
        }
      });
    });
    poller.stop();
    const after = calls;
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toBe(after);
  });
});
