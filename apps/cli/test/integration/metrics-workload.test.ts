import { join } from 'node:path';
import { PIPELINE_STATES } from '@nanosync/core/host';
import { readJsonLines } from '@nanosync/sink-file';
import { describe, expect, it } from 'vitest';
import { runCli } from './cli-process.js';
import { metricValue, ObservabilityContext, uniqueName } from './observability-fixtures.js';

const ORDERS = 300;
const CUSTOMERS = 40;

describe('/metrics and `metrics pipeline` after a known workload (real PostgreSQL → file sink)', () => {
  it('counts every snapshot row and change exactly', async () => {
    await using ctx = await ObservabilityContext.create();
    await ctx.createTable('orders', ORDERS);
    await ctx.createTable('customers', CUSTOMERS);
    const name = uniqueName('obs_metrics');
    const config = await ctx.writeConfig([{ name, tables: ['public.orders', 'public.customers'] }], 100);
    const { url, token } = await ctx.serve();
    const applied = await runCli(['apply', '--file', config, '--server', url, '--state', ctx.stateFile]);
    expect(applied.code, applied.stderr).toBe(0);

    const snapshotRows = ORDERS + CUSTOMERS;
    await ctx.waitForStatus(
      name,
      'snapshot done and streaming',
      (p) => p.state === 'LIVE_CDC' && p.snapshot?.done === true && p.sinks[0]?.rowsWritten === snapshotRows,
    );

    // The workload: 25 inserts and 10 updates on orders; 5 deletes and 3 inserts on customers.
    await ctx.db.query("INSERT INTO public.orders SELECT g, 'new ' || g FROM generate_series(1001, 1025) g");
    await ctx.db.query("UPDATE public.orders SET note = 'changed' WHERE id BETWEEN 1 AND 10");
    await ctx.db.query('DELETE FROM public.customers WHERE id BETWEEN 1 AND 5');
    await ctx.db.query("INSERT INTO public.customers VALUES (501, 'a'), (502, 'b'), (503, 'c')");
    const orderChanges = 25 + 10;
    const customerChanges = 5 + 3;
    const written = snapshotRows + orderChanges + customerChanges;

    // Drained: every change written, nothing queued, the checkpoint covers it.
    const drained = await ctx.waitForStatus(
      name,
      'workload drained',
      (p) =>
        p.sinks[0]?.rowsWritten === written &&
        p.sinks[0].queueDepth === 0 &&
        p.lagSeconds !== undefined &&
        p.source?.retainedWalBytes !== undefined,
    );
    expect(drained.state).toBe('LIVE_CDC');

    // The file sink is the independent witness: one line per event written.
    const lines = [
      ...(await readJsonLines(join(ctx.outDir, 'public.orders.jsonl'))),
      ...(await readJsonLines(join(ctx.outDir, 'public.customers.jsonl'))),
    ];
    expect(lines).toHaveLength(written);

    const scrape = await ctx.api<unknown>('/metrics');
    expect(scrape.status).toBe(200);
    const text = scrape.text;
    const p = { pipeline: name };
    const sink = { pipeline: name, sink: '0:out' };
    const orders = { pipeline: name, table: 'public.orders' };
    const customers = { pipeline: name, table: 'public.customers' };

    for (const state of PIPELINE_STATES)
      expect([state, metricValue(text, 'ns_pipeline_state', { ...p, state })]).toEqual([
        state,
        state === 'LIVE_CDC' ? 1 : 0,
      ]);
    expect(metricValue(text, 'ns_sink_rows_written_total', sink)).toBe(written);
    expect(metricValue(text, 'ns_sink_write_errors_total', sink)).toBe(0);
    expect(metricValue(text, 'ns_source_events_total', orders)).toBe(orderChanges);
    expect(metricValue(text, 'ns_source_events_total', customers)).toBe(customerChanges);
    expect(metricValue(text, 'ns_snapshot_rows_total', orders)).toBe(ORDERS);
    expect(metricValue(text, 'ns_snapshot_rows_total', customers)).toBe(CUSTOMERS);
    for (const table of [orders, customers]) {
      const total = metricValue(text, 'ns_snapshot_partitions_total', table);
      expect(total).toBeGreaterThanOrEqual(1);
      expect(metricValue(text, 'ns_snapshot_partitions_completed_total', table)).toBe(total);
    }
    // 300 rows at 100 per partition: the planner split orders.
    expect(metricValue(text, 'ns_snapshot_partitions_total', orders)).toBeGreaterThan(1);

    const writes = metricValue(text, 'ns_sink_write_latency_seconds_count', sink)!;
    expect(writes).toBeGreaterThan(0);
    expect(metricValue(text, 'ns_sink_write_latency_seconds_bucket', { ...sink, le: '+Inf' })).toBe(writes);
    expect(metricValue(text, 'ns_sink_write_latency_seconds_sum', sink)).toBeGreaterThan(0);
    expect(metricValue(text, 'ns_pipeline_replication_lag_seconds', p)).toBeGreaterThanOrEqual(0);
    expect(metricValue(text, 'ns_sink_queue_events', sink)).toBe(0);
    expect(metricValue(text, 'ns_slot_retained_wal_bytes', p)).toBeGreaterThanOrEqual(0);
    const limit = (await ctx.db.query<{ max_slot_wal_keep_size: string }>('SHOW max_slot_wal_keep_size')).rows[0]!
      .max_slot_wal_keep_size;
    if (limit === '-1') expect(metricValue(text, 'ns_slot_safe_wal_bytes', p)).toBeUndefined();
    else expect(metricValue(text, 'ns_slot_safe_wal_bytes', p)).toBeGreaterThan(0);

    // Token-protected by default.
    expect((await ctx.api('/metrics', { token: null })).status).toBe(401);

    // The same figures for a person.
    const report = await runCli(['metrics', 'pipeline', name, '--server', url, '--state', ctx.stateFile]);
    expect(report.code, report.stderr).toBe(0);
    const out = report.stdout;
    expect(out).toMatch(new RegExp(`^Pipeline ${name}\\n {2}state\\s+LIVE_CDC \\(cdc_backfill\\)\\n`));
    expect(out).toMatch(/\n {2}lag\s+\d+(\.\d)?s\n/);
    expect(out).toMatch(/\n {2}events\/s\s+\d+(\.\d)?\n/);
    expect(out).toMatch(/Snapshot\n {2}progress\s+█{20} 100% done\n/);
    expect(out).toMatch(new RegExp(`\\n {2}rows\\s+${snapshotRows} read`));
    expect(out).toMatch(new RegExp(`\\n {2}public\\.orders\\s+${ORDERS}\\s+(\\d+)/\\1\\s+${orderChanges}\\s`));
    expect(out).toMatch(new RegExp(`\\n {2}public\\.customers\\s+${CUSTOMERS}\\s+(\\d+)/\\1\\s+${customerChanges}\\s`));
    // SINK STATE ROWS-WRITTEN ERRORS DEAD-LETTERS SKIPPED QUEUE SPILLED LAG WRITE-LATENCY
    expect(out).toMatch(new RegExp(`\\n {2}0:out\\s+\\S+\\s+${written}\\s+0\\s+0\\s+0\\s+0\\s+-\\s+\\S+\\s+avg `));
    expect(out).toMatch(/Source WAL\n {2}retained\s+\d/);
    expect(out.trimEnd()).toMatch(/Warnings\n {2}none$/);
    expect(out).not.toContain(token);
  }, 300_000);
});
