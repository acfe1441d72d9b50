/**
 * A commit the stream delivered before a chunk's read, but that the read's snapshot does not
 * see yet (snapshot/visibility.ts). Reproduced for real: on a server whose
 * `synchronous_standby_names` names a standby that never connects, a session with
 * `synchronous_commit = on` writes its commit record and marks the clog, then waits for the
 * standby before it leaves the proc array. Logical decoding does not wait, so the stream
 * delivers the change while every new snapshot still counts the transaction as running, for
 * as long as the test wants. Every other session of the server commits with
 * `synchronous_commit = local` (the server default here).
 */
import { checkHistoryOrder, type OracleRecord } from '@nanosync/connector-testkit';
import { startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { E2eScenario, waitFor } from './e2e/scenario.js';

const HIDDEN_ID = 1500;

describe('concurrent snapshot: a commit in the WAL that snapshots do not see yet', () => {
  it('a chunk read waits until the commit the stream already delivered is visible, so the re-snapshot never puts the older row back', async () => {
    await using service = await startPostgres({
      settings: { synchronous_standby_names: 'nanosync_absent_standby', synchronous_commit: 'local' },
    });
    await using s = await E2eScenario.create({
      rows: 2000,
      service,
      snapshot: { concurrency: 2, rows: 500, chunkRows: 200 },
    });
    const proc = s.spawn(undefined, {
      env: { NS_TEST_RESNAPSHOT: `${s.pipeline}:public.accounts`, NS_LOG_LEVEL: 'debug' },
    });
    await s.waitLive(proc);
    const liveBefore = proc.stdout.filter((l) => l.includes('LIVE_CDC')).length;

    const writer = new pg.Client({ connectionString: s.fx.adminUrl });
    writer.on('error', () => {});
    await writer.connect();
    try {
      const pid = Number((await writer.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
      await writer.query('SET synchronous_commit = on');
      const committing = writer.query(`UPDATE public.accounts SET note = 'hidden-commit' WHERE id = ${HIDDEN_ID}`);
      committing.catch(() => {});
      await waitFor(
        async () => (await s.lines()).some((l) => l.key.id === HIDDEN_ID && l.after?.note === 'hidden-commit'),
        'the stream delivering the update',
        proc,
      );
      // The technique holds: committed in the WAL and delivered, yet no other session sees it.
      const seen = await s.query('SELECT note FROM public.accounts WHERE id = $1', [HIDDEN_ID]);
      expect(seen.rows[0].note).toBe('seed');
      const linesBefore = (await s.lines()).length;

      // Re-snapshot the table: every chunk read now takes a snapshot that hides the update.
      proc.kill('SIGHUP');
      await proc.waitForLine((l) => l.startsWith('RESNAPSHOT'), 'the re-snapshot accepted', 30_000);
      await waitFor(
        () => proc.logLines('are not visible yet').length > 0,
        'a chunk read waiting for the hidden commit',
        proc,
      );
      const waiting = proc.logLines('are not visible yet')[0]!;
      const xid = Number(
        (await s.query('SELECT backend_xid::text AS xid FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0].xid,
      );
      expect(waiting).toContain(String(xid));
      // Nothing of the hidden row's chunk went out while it waited.
      const readsWhileHidden = (await s.lines()).slice(linesBefore).filter((l) => l.key.id === HIDDEN_ID);
      expect(readsWhileHidden).toEqual([]);

      // The "standby" gives up waiting: the commit becomes visible, the read goes on.
      await s.query('SELECT pg_cancel_backend($1)', [pid]);
      await committing;
      await waitFor(
        () => proc.stdout.filter((l) => l.includes('LIVE_CDC')).length > liveBefore,
        'live again after the re-snapshot',
        proc,
      );
      await s.finish(proc);
      const lines = await s.lines();
      const reread = lines.slice(linesBefore).filter((l) => l.key.id === HIDDEN_ID);
      expect(reread.map((l) => [l.op, l.after?.note])).toEqual([['read', 'hidden-commit']]);
      // The sink ends equal to the table, and no version is delivered for the first time after a newer one.
      const sink = new Map<number, unknown>();
      for (const l of lines) sink.set(l.key.id as number, l.op === 'delete' ? undefined : l.after?.note);
      const { rows } = await s.query('SELECT id, note FROM public.accounts ORDER BY id');
      expect(rows.length).toBe(2001);
      for (const r of rows) expect(sink.get(r.id), `id ${r.id}`).toBe(r.note);
      expect(
        checkHistoryOrder(
          lines.map(
            (l): OracleRecord => ({
              table: l.table,
              op: l.op,
              key: l.key as OracleRecord['key'],
              ...(l.after !== undefined ? { after: l.after as OracleRecord['key'] } : {}),
              position: l.position,
            }),
          ),
        ),
      ).toEqual([]);
    } finally {
      await writer.end().catch(() => {});
    }
  });
});
