/**
 * Whether a chunk's read sees every transaction the change stream may already have carried.
 *
 * The concurrent snapshot assumes that a read started after a chunk's low watermark sees
 * every transaction whose commit record lies before that watermark in the WAL. PostgreSQL
 * does not quite promise that. A committing backend writes and flushes its commit record,
 * marks the transaction committed in the commit log, waits for the synchronous standbys when
 * synchronous replication is on, and only then leaves the proc array; until it has left, a
 * new snapshot still counts the transaction as running (its xid is in the snapshot's `xip`).
 * The gap is usually microseconds; under synchronous replication it lasts until a standby
 * answers. Logical decoding does not wait for any of that, so the stream may deliver such a
 * transaction X, and the merge see it, before the chunk is even registered. X is then outside
 * the chunk's window, while the read, blind to X, holds X's keys as they were before X:
 * emitted at the high watermark, those rows would replace X's versions in the sinks for good.
 *
 * The rule. Let S be the read's snapshot (`pg_current_snapshot()` as the first statement of
 * its REPEATABLE READ transaction, so the very snapshot the chunk's rows come from). X is a
 * danger to the chunk when
 *
 *   1. S counts X as running: X's xid is in S's `xip`, and
 *   2. X's commit precedes the low watermark and the merge may have seen it before the
 *      chunk was registered.
 *
 * The source cannot see the merge; it tests (2) by something wider it can decide:
 *
 *   (a) a stream of this process for the same slot decoded X's Begin (which carries the xid
 *       and the commit LSN) with a commit LSN below the WAL insert position read with S, or
 *   (b) the backend of X, as far as `pg_stat_activity` shows it to the role, waits for a
 *       synchronous standby (`wait_event` SyncRep): its commit record is written.
 *
 * (a) holds for every X the merge saw before the chunk was registered: the merge sees a
 * change only after the stream decoded its transaction's Begin, registration precedes the
 * low watermark, and the watermark precedes S. (b) is for an X the merge of an earlier run
 * saw, in another process, that is still waiting for a standby now; `pg_stat_activity` shows
 * the wait of another role's backend only to a role with `pg_read_all_stats` (or a
 * superuser), so without it such a commit is not caught. (`pg_xact_status` cannot tell: it
 * asks the proc array before the commit log, and so answers "in progress" for X.)
 *
 * Xids at or above S's `xmax` need no test: the watermark's transaction takes its xid after
 * writing the message and completed before S, so `xmax` is above it, and so above the xid of
 * every transaction that committed before the message.
 *
 * When a danger exists the read's transaction is rolled back and the read starts again with
 * a new snapshot after a short wait, until none is left: X is visible a moment later (or when
 * the standby answers). Both tests may also name a transaction that committed after the
 * watermark and was still leaving the proc array at S; that costs one more snapshot, never a
 * wrong row.
 *
 * The record (a) maps xids to commit LSNs, one per replication slot in the process, so a
 * pipeline that restarts in the same process (a re-snapshot, a retry) keeps it. It is pruned
 * with every snapshot checked: an xid that is below the snapshot's `xmax` and not in its
 * `xip` had finished, so no later snapshot counts it as running. Only once no other check is
 * in flight, since an older snapshot may still list it. Beyond {@link RECENT_COMMITS_CAP}
 * entries (no chunk read for a while) it asks the server for a fresh snapshot to prune with;
 * what is left then are the few transactions still leaving the proc array. Should that fail
 * repeatedly, the oldest entries go beyond four times the cap.
 *
 * For the stream's own chunks (a partition attached while streaming, attach-snapshot.ts) the
 * window opens at the low message as the stream decodes it, so (a) covers only what the
 * stream decoded before the check: a transaction whose commit precedes the low message, not
 * decoded yet and still leaving the proc array at S, is not caught there.
 */
import { parseLsn } from '../position.js';

/** Entries the record holds before it prunes with a fresh snapshot. */
export const RECENT_COMMITS_CAP = 65_536;

/** `a` comes before `b` in the circular 32-bit xid space (PostgreSQL's TransactionIdPrecedes for normal xids). */
export function xidPrecedes(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/** A 64-bit xid (`xid8`, as text; a plain `xid` works too) as the 32-bit xid pgoutput sends. */
export function xid32(xid8: string): number {
  return Number(BigInt(xid8) & 0xffff_ffffn);
}

/** What the read's first statement reports about its snapshot. */
export interface SnapshotView {
  /** `xmax` of the snapshot, 32-bit: every xid from here on counts as running. */
  xmax: number;
  /** The snapshot's running xids below `xmax` (`xip`), 32-bit. */
  running: number[];
  /** Xids of backends the role can see waiting for a synchronous standby (rule (b)). */
  standbyWaits: number[];
  /** The WAL insert position read right after the snapshot was taken. */
  insertLsn: bigint;
}

const bySlot = new Map<string, RecentCommits>();

/**
 * Transactions the stream decoded, by 32-bit xid, with their commit LSN: rule (a) above.
 * Written by the stream, read by the chunk readers; one per slot in the process.
 */
export class RecentCommits {
  /**
   * Xids and commit LSNs in decode order, from `#head` to `#tail`: two typed arrays rather
   * than a Map of BigInts, because the stream notes every transaction (a backlog of
   * one-change transactions paid a hash insert and a BigInt kept alive per change).
   */
  #xids = new Uint32Array(1024);
  #lsns = new BigUint64Array(1024);
  #head = 0;
  #tail = 0;
  readonly #cap: number;
  #checks = 0;
  /** Snapshots checked while other checks were in flight: they prune once none is. */
  #pending: Pick<SnapshotView, 'xmax' | 'running'>[] = [];
  #refreshing = false;
  /** Reads a fresh snapshot, to prune with when the record is full (set by the source). */
  refresh: (() => Promise<SnapshotView>) | undefined;

  constructor(cap = RECENT_COMMITS_CAP) {
    this.#cap = Math.max(1, cap);
  }

  /** The record of `slot`'s streams in this process. */
  static forSlot(slot: string): RecentCommits {
    let commits = bySlot.get(slot);
    if (commits === undefined) {
      commits = new RecentCommits();
      bySlot.set(slot, commits);
    }
    return commits;
  }

  /** Forget `slot`'s record (the slot was dropped). */
  static dropSlot(slot: string): void {
    bySlot.delete(slot);
  }

  /** Transactions noted (one decoded twice, after a reconnect, counts twice until pruned). */
  get size(): number {
    return this.#tail - this.#head;
  }

  /** The stream decoded the Begin of transaction `xid`, committed at `commitLsn`; called before any of its changes goes out. */
  decoded(xid: number, commitLsn: bigint): void {
    if (this.#tail === this.#xids.length) this.#makeRoom();
    this.#xids[this.#tail] = xid;
    this.#lsns[this.#tail] = commitLsn;
    this.#tail++;
    if (this.size <= this.#cap) return;
    if (this.refresh !== undefined && !this.#refreshing) this.#refreshNow(this.refresh);
    if (this.size > 4 * this.#cap) this.#head++;
  }

  /** Commit LSN of `xid` if the stream decoded it (and it was not pruned since). */
  commitLsn(xid: number): bigint | undefined {
    return this.commitLsns([xid]).get(xid);
  }

  /** Commit LSNs of those of `xids` the stream decoded (and that were not pruned since), in one pass. */
  commitLsns(xids: readonly number[]): Map<number, bigint> {
    const found = new Map<number, bigint>();
    if (xids.length === 0) return found;
    const wanted = new Set(xids.map((xid) => xid >>> 0));
    for (let i = this.#head; i < this.#tail; i++) {
      const xid = this.#xids[i] as number;
      if (wanted.has(xid)) found.set(xid, this.#lsns[i] as bigint);
    }
    return found;
  }

  /** Room for one more at the tail: move the live entries to the front, or grow. */
  #makeRoom(): void {
    const live = this.size;
    if (live * 2 > this.#xids.length) {
      const xids = new Uint32Array(this.#xids.length * 2);
      const lsns = new BigUint64Array(this.#xids.length * 2);
      xids.set(this.#xids.subarray(this.#head, this.#tail));
      lsns.set(this.#lsns.subarray(this.#head, this.#tail));
      this.#xids = xids;
      this.#lsns = lsns;
    } else {
      this.#xids.copyWithin(0, this.#head, this.#tail);
      this.#lsns.copyWithin(0, this.#head, this.#tail);
    }
    this.#head = 0;
    this.#tail = live;
  }

  /** A snapshot is about to be taken and checked: nothing is pruned until {@link endCheck}. */
  beginCheck(): void {
    this.#checks++;
  }

  /** A check begun with {@link beginCheck} ended; `view`: its snapshot, when it was read. */
  endCheck(view: Pick<SnapshotView, 'xmax' | 'running'> | undefined): void {
    this.#checks = Math.max(0, this.#checks - 1);
    if (view !== undefined) this.#pending.push(view);
    if (this.#checks > 0 || this.#pending.length === 0) return;
    const views = this.#pending;
    this.#pending = [];
    for (const { xmax, running } of views) {
      const listed = new Set(running);
      // Keep, in order, what the snapshot may not have seen finish.
      let kept = this.#head;
      for (let i = this.#head; i < this.#tail; i++) {
        const xid = this.#xids[i] as number;
        if (xidPrecedes(xid, xmax) && !listed.has(xid)) continue;
        this.#xids[kept] = xid;
        this.#lsns[kept] = this.#lsns[i] as bigint;
        kept++;
      }
      this.#tail = kept;
    }
  }

  #refreshNow(refresh: () => Promise<SnapshotView>): void {
    this.#refreshing = true;
    this.beginCheck();
    refresh().then(
      (view) => {
        this.endCheck(view);
        this.#refreshing = false;
      },
      () => {
        this.endCheck(undefined);
        this.#refreshing = false;
      },
    );
  }
}

/**
 * The transactions that make a read's snapshot unusable for a chunk (see the rule above):
 * running in the snapshot, and decoded by the stream before `insertLsn` or waiting for a
 * synchronous standby. Empty: the snapshot sees everything the merge may have seen.
 */
export function hiddenCommits(view: SnapshotView, commits: RecentCommits | undefined): number[] {
  const hidden = new Set<number>();
  if (view.running.length === 0) return [];
  if (view.standbyWaits.length > 0) {
    const running = new Set(view.running);
    for (const xid of view.standbyWaits) if (running.has(xid)) hidden.add(xid);
  }
  if (commits !== undefined && commits.size > 0) {
    const decoded = commits.commitLsns(view.running);
    for (const xid of view.running) {
      const lsn = decoded.get(xid >>> 0);
      if (lsn !== undefined && lsn < view.insertLsn) hidden.add(xid);
    }
  }
  return [...hidden];
}

/**
 * The read's first statement: takes the transaction's snapshot (REPEATABLE READ) and
 * reports it, with the backends waiting for a synchronous standby as far as the role may see
 * them (other roles' waits are NULL without `pg_read_all_stats`).
 */
export const SNAPSHOT_VIEW_SQL = `SELECT pg_catalog.pg_snapshot_xmax(s)::text AS xmax,
  (SELECT string_agg(x::text, ',') FROM pg_catalog.pg_snapshot_xip(s) AS x) AS running,
  (SELECT string_agg(a.backend_xid::text, ',') FROM pg_catalog.pg_stat_activity AS a
    WHERE a.wait_event = 'SyncRep' AND a.backend_xid IS NOT NULL) AS standby_waits,
  pg_catalog.pg_current_wal_insert_lsn()::text AS insert_lsn
  FROM (SELECT pg_catalog.pg_current_snapshot() AS s) AS q`;

/** A row of {@link SNAPSHOT_VIEW_SQL} as a {@link SnapshotView}. */
export function parseSnapshotView(row: Record<string, unknown>): SnapshotView {
  const list = (v: unknown) => (typeof v === 'string' && v.length > 0 ? v.split(',').map(xid32) : []);
  return {
    xmax: xid32(String(row.xmax)),
    running: list(row.running),
    standbyWaits: list(row.standby_waits),
    insertLsn: parseLsn(String(row.insert_lsn)),
  };
}
