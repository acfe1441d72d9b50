/**
 * Which capture instance to read, over which LSN range — and whether changes are missing.
 *
 * A table has one or two capture instances (`cdc.change_tables`). After `ALTER TABLE` a DBA
 * creates a second one with the new column list and later drops the first. Instance j,
 * ordered by `start_lsn`, owns the commits in `(S_j, S_j+1]` (the first one everything up
 * to S_2, the newest everything after its S): so a switch is followed exactly at the new
 * instance's start LSN, with neither a gap nor a duplicate between the two.
 *
 * The cleanup job deletes change rows older than the retention and raises the instance's
 * `start_lsn` (= `sys.fn_cdc_get_min_lsn`) to its new low-water mark. Rows the stream still
 * needs start right after its position; when the instance's low end is beyond that, some of
 * them may be gone — a retention gap, reported with the lost range. An idle stream advances
 * its position to the server's max LSN on every empty poll, so a table without changes
 * never trips this check.
 */
import type { CaptureInstance } from '../catalog.js';
import { compareLsn, incrementLsn, type Lsn } from '../position.js';

export interface InstanceRead {
  instance: CaptureInstance;
  /**
   * Lower end for the read: rows after `afterLsn` — strictly after the stream position's
   * tuple when `fromPosition` is true, else every row with `__$start_lsn > afterLsn` (the
   * instance's segment starts there).
   */
  afterLsn: Lsn;
  fromPosition: boolean;
  /** The LSN the CDC function starts at (inclusive, never below the instance's low end). */
  functionFromLsn: Lsn;
  /** Inclusive upper end. */
  toLsn: Lsn;
}

export interface RetentionGap {
  instance: CaptureInstance;
  /** Changes after this LSN … */
  lostAfter: Lsn;
  /** … and before this one (the instance's low end now) may have been removed. */
  lostBefore: Lsn;
}

export interface ReadPlan {
  reads: InstanceRead[];
  gap?: RetentionGap;
  /** Instances no longer needed once the stream is past the newer instance's start. */
  superseded: CaptureInstance[];
}

/**
 * Plan one table's reads for commits in (`position`, `toLsn`]. `positionLsn` is the stream
 * position's start LSN; `positionIsBoundary` says whether that transaction is complete.
 */
export function planInstanceReads(
  instances: CaptureInstance[],
  positionLsn: Lsn,
  positionIsBoundary: boolean,
  toLsn: Lsn,
): ReadPlan {
  const established = instances
    .filter((i): i is CaptureInstance & { startLsn: Lsn } => i.startLsn !== null)
    .sort((a, b) => compareLsn(a.startLsn, b.startLsn) || a.createDate.getTime() - b.createDate.getTime());
  const reads: InstanceRead[] = [];
  const superseded: CaptureInstance[] = [];
  let gap: RetentionGap | undefined;
  for (let j = 0; j < established.length; j++) {
    const instance = established[j]!;
    const next = established[j + 1];
    const segmentEnd = next?.startLsn;
    // Rows this instance must supply: after the position, or after its own segment start.
    const segmentStart = j === 0 ? undefined : instance.startLsn;
    let afterLsn = positionLsn;
    let fromPosition = true;
    if (segmentStart !== undefined && compareLsn(segmentStart, positionLsn) >= 0) {
      afterLsn = segmentStart;
      fromPosition = false;
    }
    const upper = segmentEnd !== undefined && compareLsn(segmentEnd, toLsn) < 0 ? segmentEnd : toLsn;
    if (segmentEnd !== undefined && compareLsn(segmentEnd, positionLsn) <= 0) {
      superseded.push(instance);
      continue;
    }
    // First LSN whose rows are needed: the position's own transaction when it is incomplete.
    const needed = fromPosition && !positionIsBoundary ? afterLsn : incrementLsn(afterLsn);
    if (compareLsn(needed, upper) > 0) continue;
    if (compareLsn(instance.startLsn, needed) > 0) {
      gap ??= { instance, lostAfter: afterLsn, lostBefore: instance.startLsn };
    }
    const functionFromLsn = compareLsn(instance.startLsn, needed) > 0 ? instance.startLsn : needed;
    if (compareLsn(functionFromLsn, upper) > 0) continue;
    reads.push({
      instance,
      afterLsn,
      fromPosition: fromPosition && !positionIsBoundary,
      functionFromLsn,
      toLsn: upper,
    });
  }
  const result: ReadPlan = { reads, superseded };
  if (gap) result.gap = gap;
  return result;
}
