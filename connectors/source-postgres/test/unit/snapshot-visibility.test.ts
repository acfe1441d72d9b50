import { describe, expect, it } from 'vitest';
import {
  hiddenCommits,
  parseSnapshotView,
  RecentCommits,
  type SnapshotView,
  xid32,
  xidPrecedes,
} from '../../src/snapshot/visibility.js';

const view = (v: Partial<SnapshotView>): SnapshotView => ({
  xmax: 1000,
  running: [],
  standbyWaits: [],
  insertLsn: 0x5000n,
  ...v,
});

describe('snapshot visibility: xids', () => {
  it('compares 32-bit xids around the wraparound and maps xid8 (with an epoch) to what pgoutput sends', () => {
    expect(xidPrecedes(10, 11)).toBe(true);
    expect(xidPrecedes(11, 10)).toBe(false);
    expect(xidPrecedes(10, 10)).toBe(false);
    // Just before the wrap precedes just after it.
    expect(xidPrecedes(0xffff_fff0, 5)).toBe(true);
    expect(xidPrecedes(5, 0xffff_fff0)).toBe(false);
    expect(xid32('4294967396')).toBe(100); // epoch 1, xid 100
    expect(xid32('731')).toBe(731);
    expect(xid32(((3n << 32n) + 0xffff_fffen).toString())).toBe(0xffff_fffe);
  });

  it('parses the snapshot statement’s row; no running transaction is an empty list', () => {
    expect(
      parseSnapshotView({
        xmax: '4294967410',
        running: '4294967396,4294967400',
        standby_waits: '104',
        insert_lsn: '0/16B3748',
      }),
    ).toEqual({ xmax: 114, running: [100, 104], standbyWaits: [104], insertLsn: 0x16b3748n });
    expect(parseSnapshotView({ xmax: '7', running: null, standby_waits: null, insert_lsn: '1/0' })).toEqual({
      xmax: 7,
      running: [],
      standbyWaits: [],
      insertLsn: 0x1_0000_0000n,
    });
  });
});

describe('snapshot visibility: the rule (the exact interleavings, fed by hand)', () => {
  it('a transaction the stream decoded before the snapshot (commit LSN below it) that the snapshot counts as running hides a commit', () => {
    const commits = new RecentCommits();
    // The stream decoded X (xid 500, committed at 0/3000) and the merge may have seen its
    // change; then the chunk registered, its low watermark went in at 0/4000, and its read's
    // snapshot still lists 500 as running: X's backend has not left the proc array.
    commits.decoded(500, 0x3000n);
    expect(hiddenCommits(view({ running: [499, 500, 501] }), commits)).toEqual([500]);
  });

  it('a running transaction the stream decoded at or after the snapshot’s WAL position committed after the low watermark: not hidden (the merge counts its change)', () => {
    const commits = new RecentCommits();
    commits.decoded(501, 0x5000n);
    commits.decoded(502, 0x6000n);
    expect(hiddenCommits(view({ running: [501, 502] }), commits)).toEqual([]);
  });

  it('a running transaction whose backend waits for a synchronous standby hides a commit even if this process never decoded it', () => {
    expect(hiddenCommits(view({ running: [600, 601], standbyWaits: [601, 900] }), new RecentCommits())).toEqual([601]);
    expect(hiddenCommits(view({ running: [601], standbyWaits: [601] }), undefined)).toEqual([601]);
    // A standby wait of a transaction the snapshot already sees is no danger.
    expect(hiddenCommits(view({ running: [600], standbyWaits: [599] }), undefined)).toEqual([]);
  });

  it('a transaction the stream decoded that the snapshot does not count as running is visible to it: nothing hidden', () => {
    const commits = new RecentCommits();
    commits.decoded(400, 0x1000n);
    expect(hiddenCommits(view({ running: [401] }), commits)).toEqual([]);
  });

  it('an xid both tests name is named once', () => {
    const commits = new RecentCommits();
    commits.decoded(700, 0x1000n);
    expect(hiddenCommits(view({ running: [700], standbyWaits: [700] }), commits)).toEqual([700]);
  });
});

describe('snapshot visibility: the record of decoded transactions', () => {
  it('drops what a checked snapshot saw finished (below its xmax, not running), keeps the rest, and only once no other check is in flight', () => {
    const commits = new RecentCommits();
    for (const xid of [90, 95, 100, 105, 120]) commits.decoded(xid, BigInt(xid));
    // Two reads check at once; the one whose snapshot is newer ends first.
    commits.beginCheck();
    commits.beginCheck();
    commits.endCheck({ xmax: 110, running: [100] });
    // The older snapshot may still list 95 as running: nothing may go yet.
    expect(commits.commitLsn(95)).toBe(95n);
    commits.endCheck({ xmax: 96, running: [90, 95] });
    // 90 and 95 had finished by the newer snapshot; 100 was still running; 105 had finished;
    // 120 is at or above its xmax (it may still have been running).
    expect([90, 95, 100, 105, 120].map((x) => commits.commitLsn(x))).toEqual([
      undefined,
      undefined,
      100n,
      undefined,
      120n,
    ]);
  });

  it('a check that failed before reading its snapshot prunes nothing itself, and does not hold pruning back', () => {
    const commits = new RecentCommits();
    commits.decoded(10, 1n);
    commits.beginCheck();
    commits.endCheck(undefined);
    expect(commits.size).toBe(1);
    commits.beginCheck();
    commits.endCheck({ xmax: 11, running: [] });
    expect(commits.size).toBe(0);
  });

  it('prunes across the xid wraparound', () => {
    const commits = new RecentCommits();
    commits.decoded(0xffff_fff0, 1n);
    commits.decoded(3, 2n);
    commits.beginCheck();
    commits.endCheck({ xmax: 3, running: [] });
    expect(commits.commitLsn(0xffff_fff0)).toBeUndefined();
    expect(commits.commitLsn(3)).toBe(2n);
  });

  it('beyond its cap prunes with a fresh snapshot from the server: only what is still running stays', async () => {
    const commits = new RecentCommits(3);
    let asked = 0;
    commits.refresh = async () => {
      asked++;
      return view({ xmax: 10, running: [2] });
    };
    for (const xid of [1, 2, 3, 4]) commits.decoded(xid, BigInt(xid));
    expect(asked).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect([1, 2, 3, 4].map((x) => commits.commitLsn(x))).toEqual([undefined, 2n, undefined, undefined]);
  });

  it('without a working refresh it still holds at most four times its cap, dropping the oldest first', () => {
    const commits = new RecentCommits(2);
    commits.refresh = () => Promise.reject(new Error('server gone'));
    for (let xid = 1; xid <= 12; xid++) commits.decoded(xid, BigInt(xid));
    expect(commits.size).toBe(8);
    expect(commits.commitLsn(4)).toBeUndefined();
    expect(commits.commitLsn(5)).toBe(5n);
  });

  it('keeps every transaction in decode order while it grows, prunes and drops its oldest', () => {
    const commits = new RecentCommits(3000);
    for (let xid = 1; xid <= 5000; xid++) commits.decoded(xid, BigInt(xid) * 16n);
    expect(commits.size).toBe(5000);
    expect(commits.commitLsn(1)).toBe(16n);
    expect(commits.commitLsn(5000)).toBe(80000n);
    commits.beginCheck();
    commits.endCheck({ xmax: 2500, running: [7, 2400] });
    expect(commits.size).toBe(2503);
    expect([...commits.commitLsns([6, 7, 2399, 2400, 2499, 2500, 5000, 5001])]).toEqual([
      [7, 112n],
      [2400, 38400n],
      [2500, 40000n],
      [5000, 80000n],
    ]);
    // Past four times its cap (refresh unset): the oldest go first, after the pruned ones.
    for (let xid = 5001; xid <= 15_000; xid++) commits.decoded(xid, BigInt(xid) * 16n);
    expect(commits.size).toBe(12_000);
    expect([...commits.commitLsns([7, 2400, 3000])]).toEqual([]);
    expect(commits.commitLsn(3001)).toBe(3001n * 16n);
    expect(commits.commitLsn(15_000)).toBe(15_000n * 16n);
  });

  it('is one per slot in the process, until the slot is dropped', () => {
    const a = RecentCommits.forSlot('slot_visibility_test');
    expect(RecentCommits.forSlot('slot_visibility_test')).toBe(a);
    expect(RecentCommits.forSlot('slot_visibility_other')).not.toBe(a);
    RecentCommits.dropSlot('slot_visibility_test');
    RecentCommits.dropSlot('slot_visibility_other');
    expect(RecentCommits.forSlot('slot_visibility_test')).not.toBe(a);
    RecentCommits.dropSlot('slot_visibility_test');
  });
});
