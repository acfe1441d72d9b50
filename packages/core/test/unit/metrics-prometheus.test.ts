import { describe, expect, it } from 'vitest';
import { PIPELINE_STATES, PrometheusExporter } from '../../src/metrics/prometheus.js';
import { LatencyRecorder, type PipelineStatus } from '../../src/runtime/stats.js';

function status(p: Partial<PipelineStatus> & { name: string }): PipelineStatus {
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

function latency(...seconds: number[]) {
  const recorder = new LatencyRecorder();
  for (const s of seconds) recorder.observe(s);
  return recorder.snapshot();
}

/** `name{labels} value` lines of one metric (HELP/TYPE excluded). */
function series(text: string, name: string): string[] {
  return text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

const orders = status({
  name: 'orders',
  state: 'LIVE_CDC',
  lagSeconds: 0.25,
  eventsTotal: 1045,
  tables: [
    {
      table: 'public.orders',
      rowsSnapshotted: 1000,
      rowsEstimated: 990,
      events: 40,
      lagSeconds: 0.25,
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
      queueDepth: 3,
      queueBytes: 100,
      spillBytes: 65_536,
      spillEvents: 120,
      lagSeconds: 0.3,
      writeLatency: latency(0.003, 0.004, 0.02, 0.7, 30),
    },
  ],
  source: { retainedWalBytes: 4096, safeWalBytes: 1_000_000 },
  warnings: ['retained WAL is 55% of the slot limit'],
});
const billing = status({
  name: 'billing',
  state: 'SNAPSHOTTING',
  tables: [
    {
      table: 'public.invoices',
      rowsSnapshotted: 10,
      rowsEstimated: 100,
      events: 0,
      partitionsTotal: 5,
      partitionsDone: 1,
    },
  ],
  sinks: [{ name: '0:kafka', rowsWritten: 10, writeErrors: 0, queueDepth: 0, queueBytes: 0, writeLatency: latency() }],
  source: { retainedWalBytes: 123, safeWalBytes: null },
});

describe('Prometheus exposition of pipeline status', () => {
  it('copies counters, gauges and snapshot progress with pipeline, table and sink labels', async () => {
    const exporter = new PrometheusExporter(async () => [orders, billing]);
    const text = await exporter.render();
    expect(exporter.contentType).toMatch(/^text\/plain; version=0\.0\.4/);

    expect(text).toContain('# TYPE ns_source_events_total counter');
    expect(series(text, 'ns_source_events_total')).toEqual([
      'ns_source_events_total{pipeline="orders",table="public.orders"} 40',
      'ns_source_events_total{pipeline="orders",table="public.notes"} 5',
      'ns_source_events_total{pipeline="billing",table="public.invoices"} 0',
    ]);
    expect(series(text, 'ns_pipeline_replication_lag_seconds')).toEqual([
      'ns_pipeline_replication_lag_seconds{pipeline="orders"} 0.25',
    ]);
    expect(series(text, 'ns_sink_rows_written_total')).toEqual([
      'ns_sink_rows_written_total{pipeline="orders",sink="0:out"} 1045',
      'ns_sink_rows_written_total{pipeline="billing",sink="0:kafka"} 10',
    ]);
    expect(series(text, 'ns_sink_write_errors_total')).toContain(
      'ns_sink_write_errors_total{pipeline="orders",sink="0:out"} 2',
    );
    expect(series(text, 'ns_sink_queue_events')).toContain('ns_sink_queue_events{pipeline="orders",sink="0:out"} 3');
    expect(series(text, 'ns_sink_spill_bytes')).toEqual([
      'ns_sink_spill_bytes{pipeline="orders",sink="0:out"} 65536',
      'ns_sink_spill_bytes{pipeline="billing",sink="0:kafka"} 0',
    ]);
    expect(series(text, 'ns_sink_spill_events')).toContain('ns_sink_spill_events{pipeline="orders",sink="0:out"} 120');
    expect(series(text, 'ns_sink_replication_lag_seconds')).toEqual([
      'ns_sink_replication_lag_seconds{pipeline="orders",sink="0:out"} 0.3',
    ]);
    expect(series(text, 'ns_table_replication_lag_seconds')).toEqual([
      'ns_table_replication_lag_seconds{pipeline="orders",table="public.orders"} 0.25',
    ]);
    expect(series(text, 'ns_pipeline_warnings')).toEqual([
      'ns_pipeline_warnings{pipeline="orders"} 1',
      'ns_pipeline_warnings{pipeline="billing"} 0',
    ]);

    // Only tables that have a snapshot get snapshot series.
    expect(series(text, 'ns_snapshot_partitions_total')).toEqual([
      'ns_snapshot_partitions_total{pipeline="orders",table="public.orders"} 4',
      'ns_snapshot_partitions_total{pipeline="billing",table="public.invoices"} 5',
    ]);
    expect(series(text, 'ns_snapshot_partitions_completed_total')).toEqual([
      'ns_snapshot_partitions_completed_total{pipeline="orders",table="public.orders"} 4',
      'ns_snapshot_partitions_completed_total{pipeline="billing",table="public.invoices"} 1',
    ]);
    expect(series(text, 'ns_snapshot_rows_total')).toEqual([
      'ns_snapshot_rows_total{pipeline="orders",table="public.orders"} 1000',
      'ns_snapshot_rows_total{pipeline="billing",table="public.invoices"} 10',
    ]);
    expect(series(text, 'ns_snapshot_rows_estimated')).toContain(
      'ns_snapshot_rows_estimated{pipeline="billing",table="public.invoices"} 100',
    );

    // No limit on the server (safeWalBytes null): no safe-bytes series rather than a made-up number.
    expect(series(text, 'ns_slot_retained_wal_bytes')).toEqual([
      'ns_slot_retained_wal_bytes{pipeline="orders"} 4096',
      'ns_slot_retained_wal_bytes{pipeline="billing"} 123',
    ]);
    expect(series(text, 'ns_slot_safe_wal_bytes')).toEqual(['ns_slot_safe_wal_bytes{pipeline="orders"} 1000000']);
  });

  it('has one state series per pipeline and state, 1 for the current state', async () => {
    const text = await new PrometheusExporter(async () => [orders, billing]).render();
    const lines = series(text, 'ns_pipeline_state');
    expect(lines).toHaveLength(2 * PIPELINE_STATES.length);
    expect(lines.filter((l) => l.endsWith(' 1'))).toEqual([
      'ns_pipeline_state{pipeline="orders",state="LIVE_CDC"} 1',
      'ns_pipeline_state{pipeline="billing",state="SNAPSHOTTING"} 1',
    ]);
    expect(lines).toContain('ns_pipeline_state{pipeline="orders",state="ERRORED"} 0');
  });

  it('exports DEGRADED (one sink of several stopped) like every other state', async () => {
    const degraded = { ...billing, state: 'DEGRADED' as const };
    const lines = series(await new PrometheusExporter(async () => [orders, degraded]).render(), 'ns_pipeline_state');
    expect(PIPELINE_STATES).toContain('DEGRADED');
    expect(lines).toContain('ns_pipeline_state{pipeline="billing",state="DEGRADED"} 1');
    // A pipeline that is not degraded has its DEGRADED series at 0, so an alert rule sees it go up.
    expect(lines).toContain('ns_pipeline_state{pipeline="orders",state="DEGRADED"} 0');
  });

  it("exposes the runtime's write-latency histogram bucket for bucket", async () => {
    const text = await new PrometheusExporter(async () => [orders]).render();
    expect(text).toContain('# TYPE ns_sink_write_latency_seconds histogram');
    const lines = series(text, 'ns_sink_write_latency_seconds_bucket');
    const bucket = (le: string) => lines.find((l) => l.includes(`le="${le}"`))?.split(' ')[1];
    // Observed 0.003, 0.004, 0.02, 0.7, 30 seconds; cumulative like the runtime's snapshot.
    expect(bucket('0.005')).toBe('2');
    expect(bucket('0.01')).toBe('2');
    expect(bucket('0.025')).toBe('3');
    expect(bucket('0.5')).toBe('3');
    expect(bucket('1')).toBe('4');
    expect(bucket('10')).toBe('4');
    expect(bucket('+Inf')).toBe('5');
    expect(series(text, 'ns_sink_write_latency_seconds_count')).toEqual([
      'ns_sink_write_latency_seconds_count{pipeline="orders",sink="0:out"} 5',
    ]);
    expect(Number(series(text, 'ns_sink_write_latency_seconds_sum')[0]!.split(' ')[1])).toBeCloseTo(30.727, 6);
  });

  it('reads the status at every scrape: new figures appear, deleted pipelines disappear', async () => {
    let current = [orders, billing];
    let calls = 0;
    const exporter = new PrometheusExporter(async () => {
      calls++;
      return current;
    });
    await exporter.render();
    current = [{ ...orders, sinks: [{ ...orders.sinks[0]!, rowsWritten: 2000 }] }];
    const text = await exporter.render();
    expect(calls).toBe(2);
    expect(series(text, 'ns_sink_rows_written_total')).toEqual([
      'ns_sink_rows_written_total{pipeline="orders",sink="0:out"} 2000',
    ]);
    expect(text).not.toContain('billing');
  });

  it('keeps concurrent scrapes apart', async () => {
    let n = 0;
    const exporter = new PrometheusExporter(async () => {
      n++;
      const name = `p${n}`;
      await new Promise((r) => setTimeout(r, 5));
      return [status({ name })];
    });
    const [a, b] = await Promise.all([exporter.render(), exporter.render()]);
    expect(a).toContain('pipeline="p1"');
    expect(a).not.toContain('pipeline="p2"');
    expect(b).toContain('pipeline="p2"');
    expect(b).not.toContain('pipeline="p1"');
  });

  it('two exporters have separate registries', async () => {
    const one = new PrometheusExporter(async () => [orders]);
    const two = new PrometheusExporter(async () => [billing]);
    expect(await one.render()).not.toContain('billing');
    expect(await two.render()).not.toContain('"orders"');
  });

  it('a failing status read fails that scrape only', async () => {
    let fail = true;
    const exporter = new PrometheusExporter(async () => {
      if (fail) throw new Error('store down');
      return [orders];
    });
    await expect(exporter.render()).rejects.toThrow('store down');
    fail = false;
    expect(await exporter.render()).toContain('pipeline="orders"');
  });
});
