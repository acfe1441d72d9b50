import { ErrorCode, NanosyncError } from '@nanosync/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { metricsCommand } from '../../src/commands/metrics.js';
import { exitCodeFor } from '../../src/exit-codes.js';
import { type AdminServer, createAdminHandler, listenAdmin } from '../../src/server/http.js';
import { adminRoutes } from '../../src/server/routes/index.js';
import { METRICS_AUTH_ENV, metricsNeedToken } from '../../src/server/routes/metrics.js';
import { captureIo, fakeEngine } from './helpers.js';

const TOKEN = 'metrics-token-0123456789';
const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
const latency = { buckets: [{ le: 0.005, count: 3 }], count: 4, sum: 0.5 };

let admin: AdminServer;
let fake: ReturnType<typeof fakeEngine>;

beforeEach(async () => {
  fake = fakeEngine([
    {
      name: 'orders',
      state: 'LIVE_CDC',
      lagSeconds: 0.4,
      eventsPerSecond: 3,
      eventsTotal: 130,
      tables: [
        {
          table: 'public.orders',
          rowsSnapshotted: 100,
          rowsEstimated: 100,
          events: 30,
          partitionsTotal: 2,
          partitionsDone: 2,
        },
      ],
      sinks: [
        {
          name: '0:out',
          rowsWritten: 130,
          writeErrors: 0,
          deadLetters: 2,
          skippedEvents: 5,
          queueDepth: 0,
          queueBytes: 0,
          writeLatency: latency,
        },
      ],
      snapshot: { partitionsTotal: 2, partitionsDone: 2, rowsRead: 100, rowsEstimated: 100, done: true },
      source: { retainedWalBytes: 2048, safeWalBytes: null },
    },
    { name: 'billing', state: 'PAUSED' },
  ]);
  admin = await listenAdmin('127.0.0.1', 0);
  admin.setHandler(createAdminHandler({ engine: fake.engine, token: TOKEN, routes: adminRoutes, logger: silent }));
});
afterEach(async () => {
  delete process.env[METRICS_AUTH_ENV];
  await admin.close();
});

const scrape = (token: string | null = TOKEN) =>
  fetch(`${admin.url}/metrics`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });

describe('GET /metrics', () => {
  it('serves the Prometheus text format with the figures of every pipeline', async () => {
    const response = await scrape();
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text).toContain('ns_sink_rows_written_total{pipeline="orders",sink="0:out"} 130');
    expect(text).toContain('ns_sink_dead_letters_total{pipeline="orders",sink="0:out"} 2');
    expect(text).toContain('ns_source_events_total{pipeline="orders",table="public.orders"} 30');
    expect(text).toContain('ns_snapshot_partitions_completed_total{pipeline="orders",table="public.orders"} 2');
    expect(text).toContain('ns_pipeline_state{pipeline="billing",state="PAUSED"} 1');
    expect(text).toContain('ns_sink_write_latency_seconds_bucket{le="+Inf",pipeline="orders",sink="0:out"} 4');
    expect(text).toContain('ns_slot_retained_wal_bytes{pipeline="orders"} 2048');
  });

  it('follows the engine at every scrape', async () => {
    await fake.engine.pause('orders');
    const text = await (await scrape()).text();
    expect(text).toContain('ns_pipeline_state{pipeline="orders",state="PAUSED"} 1');
    expect(text).toContain('ns_pipeline_state{pipeline="orders",state="LIVE_CDC"} 0');
  });

  it('requires the bearer token by default', async () => {
    for (const token of [null, 'wrong']) {
      const response = await scrape(token);
      expect(response.status).toBe(401);
      expect(await response.text()).not.toContain('ns_');
    }
  });

  it(`answers without a token when the server runs with ${METRICS_AUTH_ENV}=none`, async () => {
    process.env[METRICS_AUTH_ENV] = 'none';
    const response = await scrape(null);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('ns_pipeline_state');
    // The rest of the API keeps its token.
    expect((await fetch(`${admin.url}/v1/pipelines`)).status).toBe(401);
  });

  it('only the exact value "none" turns the token off', () => {
    expect(metricsNeedToken({})).toBe(true);
    expect(metricsNeedToken({ [METRICS_AUTH_ENV]: 'token' })).toBe(true);
    expect(metricsNeedToken({ [METRICS_AUTH_ENV]: 'off' })).toBe(true);
    expect(metricsNeedToken({ [METRICS_AUTH_ENV]: ' None ' })).toBe(false);
  });
});

describe('nanosync metrics pipeline NAME', () => {
  const env = () => ({ NANOSYNC_SERVER: admin.url, NANOSYNC_TOKEN: TOKEN });

  it('prints the report of one pipeline', async () => {
    const io = captureIo(env());
    expect(await metricsCommand.run(['pipeline', 'orders'], io)).toBe(0);
    const text = io.stdout.join('\n');
    expect(text).toMatch(
      /^Pipeline orders\n {2}state\s+LIVE_CDC \(cdc_backfill\)\n {2}lag\s+0\.4s\n {2}events\/s\s+3\.0\n/,
    );
    expect(text).toMatch(/public\.orders\s+100\s+2\/2\s+30\s+-/);
    // SINK STATE ROWS-WRITTEN ERRORS DEAD-LETTERS SKIPPED QUEUE SPILLED LAG WRITE-LATENCY: dead letters and skipped events apart.
    expect(text).toMatch(/0:out\s+-\s+130\s+0\s+2\s+5\s+0\s+-\s+-\s+avg 125ms, p99 > 5\.0ms over 4 writes/);
    expect(text).toContain('retained  2.0 KiB');
  });

  it('--json prints the status object', async () => {
    const io = captureIo(env());
    expect(await metricsCommand.run(['pipeline', 'orders', '--json'], io)).toBe(0);
    expect(JSON.parse(io.stdout.join('\n'))).toMatchObject({ name: 'orders', eventsTotal: 130 });
  });

  it('an unknown pipeline is an error with exit code 1', async () => {
    const err = await metricsCommand.run(['pipeline', 'nope'], captureIo(env())).catch((e: unknown) => e);
    expect(NanosyncError.is(err, ErrorCode.PipelineNotFound)).toBe(true);
    expect(exitCodeFor(err)).toBe(1);
  });

  it.each([[[]], [['pipelines']], [['pipeline']], [['pipeline', 'a', 'b']]])(
    'rejects %j as usage (exit 2)',
    async (argv) => {
      const err = await metricsCommand.run(argv, captureIo(env())).catch((e: unknown) => e);
      expect(exitCodeFor(err)).toBe(2);
    },
  );
});
