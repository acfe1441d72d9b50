import type { Logger } from '@nanosync/core';
import { ErrorCode, NanosyncError, sleep } from '@nanosync/core';
import type { CaptureInstance, MssqlTable } from '../catalog.js';
import { cdcNotEnabledOnTable, MssqlErrorCode, quoteTable } from '../errors.js';
import { compareLsn, formatLsn, type Lsn, maxLsn, ZERO_LSN } from '../position.js';

/** What `open` reads each time it looks: the capture instances and the capture job's max LSN. */
export interface CaptureJobState {
  instances: CaptureInstance[];
  head: Lsn;
}

export interface CaptureWaitOptions {
  read: () => Promise<CaptureJobState>;
  tables: MssqlTable[];
  logger: Logger;
  /** `ConnectorContext.reportWaiting`: what the start waits for, and undefined once it goes on. */
  reportWaiting?: ((what: string | undefined) => void) | undefined;
  /** Give up (retriable) after this long. */
  timeoutMs: number;
  /**
   * Say that it waits only once it waited this long: the capture job sees a new capture
   * instance within seconds when it runs, and a normal start must not flash a wait.
   */
  reportAfterMs: number;
  /** Between two looks. */
  pollMs: number;
  signal?: AbortSignal | undefined;
  /** Test seams: the clock and the pause between looks. */
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * L₀ of a first start: the capture job's max LSN, once every table's capture instance is
 * established (a just-created instance has no start LSN until the capture job saw it), and
 * never below a newest instance's start, whose changes begin there. While the capture job
 * does not get there (SQL Server Agent stopped, the capture job disabled) the start waits:
 * after `reportAfterMs` it says so, as PostgreSQL's start does for a busy replication slot —
 * once in the log at warn and through `reportWaiting` (the pipeline shows WAITING with it) —
 * and it gives up after `timeoutMs` with a retriable error.
 */
export async function waitForCaptureJob(o: CaptureWaitOptions): Promise<Lsn> {
  const now = o.now ?? Date.now;
  const pause = o.sleep ?? sleep;
  const started = now();
  let said: string | undefined;
  try {
    for (;;) {
      const { instances, head } = await o.read();
      let start = head;
      let pending: MssqlTable | undefined;
      for (const table of o.tables) {
        const own = instances.filter((i) => i.sourceObjectId === table.objectId);
        if (own.length === 0) throw cdcNotEnabledOnTable(table);
        const established = own.filter((i) => i.startLsn !== null);
        if (established.length === 0) pending ??= table;
        for (const i of established) start = maxLsn(start, i.startLsn!);
      }
      if (!pending && compareLsn(start, ZERO_LSN) > 0) {
        if (said !== undefined) o.logger.info('the CDC capture job caught up; starting', { start: formatLsn(start) });
        return start;
      }
      const waited = now() - started;
      if (waited > o.timeoutMs)
        throw new NanosyncError(
          MssqlErrorCode.MssqlCdcDisabled,
          `the CDC capture job has not processed ${pending ? `the capture instance of ${quoteTable(pending)}` : 'anything'} after ${Math.round(o.timeoutMs / 1000)} s: is SQL Server Agent running and the capture job enabled? (EXEC sys.sp_cdc_help_jobs; EXEC sys.sp_cdc_start_job @job_type = N'capture';)`,
          { retriable: true },
        );
      if (waited >= o.reportAfterMs) {
        const what = pending
          ? `the CDC capture job has not processed the capture instance of ${quoteTable(pending)} yet (is SQL Server Agent running and the capture job enabled?)`
          : 'the CDC capture job has not recorded any LSN yet: sys.fn_cdc_get_max_lsn() is NULL (is SQL Server Agent running and the capture job enabled?)';
        if (what !== said) {
          o.logger.warn('waiting for the CDC capture job; retrying until it has processed the capture instances', {
            waiting_for: what,
            waited_ms: waited,
          });
          said = what;
        }
        o.reportWaiting?.(what);
      }
      await pause(o.pollMs, o.signal);
      if (o.signal?.aborted)
        throw new NanosyncError(ErrorCode.PipelineStopped, 'the source stopped while waiting for the CDC capture job');
    }
  } finally {
    if (said !== undefined) o.reportWaiting?.(undefined);
  }
}
