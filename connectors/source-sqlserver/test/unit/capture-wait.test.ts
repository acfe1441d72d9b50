import { createLogger } from '@nanosync/core/host';
import { describe, expect, it } from 'vitest';
import type { CaptureInstance, MssqlTable } from '../../src/catalog.js';
import { type CaptureJobState, waitForCaptureJob } from '../../src/cdc/capture-wait.js';
import { lsnFromBigInt } from '../../src/position.js';

/**
 * The wait of a first start for the CDC capture job, without a server (SQL Server cannot run
 * here): `read` answers what the catalog would, one answer per look, and the clock moves only
 * when the wait pauses between two looks (a stand-in clock: nothing here depends on real time).
 */
const orders = { schema: 'dbo', name: 'orders', objectId: 101 } as MssqlTable;

function instance(startLsn: bigint | null): CaptureInstance {
  return {
    name: 'dbo_orders',
    sourceObjectId: 101,
    changeTableObjectId: 901,
    changeTable: 'dbo_orders_CT',
    startLsn: startLsn === null ? null : lsnFromBigInt(startLsn),
    createDate: new Date(0),
    roleName: null,
    indexName: null,
  };
}

function harness(answers: CaptureJobState[]) {
  const clock = { ms: 0 };
  const lines: string[] = [];
  const reports: (string | undefined)[] = [];
  let looks = 0;
  const run = () =>
    waitForCaptureJob({
      read: async () => answers[Math.min(looks++, answers.length - 1)]!,
      tables: [orders],
      logger: createLogger({ write: (line) => lines.push(line) }),
      reportWaiting: (what) => reports.push(what),
      timeoutMs: 120_000,
      reportAfterMs: 10_000,
      pollMs: 500,
      now: () => clock.ms,
      sleep: async (ms) => {
        clock.ms += ms;
      },
    });
  return { run, lines, reports, looks: () => looks };
}

const pending: CaptureJobState = { instances: [instance(null)], head: lsnFromBigInt(0x50n) };
const ready: CaptureJobState = { instances: [instance(0x40n)], head: lsnFromBigInt(0x50n) };

describe('a first start waiting for the CDC capture job', () => {
  it('a capture job that sees the new instance within seconds: no wait reported', async () => {
    const h = harness([pending, pending, ready]);
    expect(await h.run()).toBe(lsnFromBigInt(0x50n));
    expect(h.reports).toEqual([]);
    expect(h.lines.filter((l) => l.startsWith('WRN'))).toEqual([]);
  });

  it('a capture job that does not run: reports what it waits for (as waitingFor), logs it once at warn, and clears it when the job caught up', async () => {
    // 40 looks, 500 ms apart: 20 s of waiting, reported from 10 s on.
    const h = harness([...Array.from({ length: 40 }, () => pending), ready]);
    expect(await h.run()).toBe(lsnFromBigInt(0x50n));
    const what =
      'the CDC capture job has not processed the capture instance of [dbo].[orders] yet (is SQL Server Agent running and the capture job enabled?)';
    expect(h.reports.length).toBeGreaterThan(1);
    expect(h.reports.slice(0, -1).every((r) => r === what)).toBe(true);
    expect(h.reports.at(-1)).toBeUndefined();
    const warnings = h.lines.filter((l) => l.startsWith('WRN'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('waiting for the CDC capture job');
    expect(warnings[0]).toContain('[dbo].[orders]');
    expect(h.lines.some((l) => l.startsWith('INF the CDC capture job caught up; starting'))).toBe(true);
  });

  it('gives up after the timeout with a retriable error, and the wait is no longer reported', async () => {
    const h = harness([pending]);
    const error = await h.run().catch((err: unknown) => err);
    expect(error).toMatchObject({ retriable: true });
    expect((error as Error).message).toContain(
      'the CDC capture job has not processed the capture instance of [dbo].[orders] after 120 s',
    );
    expect(h.reports.at(-1)).toBeUndefined();
    expect(h.reports.length).toBeGreaterThan(1);
  });
});
