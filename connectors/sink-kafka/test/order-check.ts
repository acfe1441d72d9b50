/**
 * The per-key order oracle of the in-flight soak test: what a topic must hold after a
 * producer sent, for every key, the records numbered 1, 2, … n in that order.
 */

/** One record read back: its key, its number in the key's sequence, and where it sits. */
export interface ReadRecord {
  key: string;
  seq: number;
  partition: number;
  offset: bigint;
}

export interface OrderReport {
  /** Records read. */
  records: number;
  /** `key#seq` sent and not in the topic. */
  missing: string[];
  /** `key#seq` in the topic more than once, with the count (`key#seq ×2`). */
  duplicates: { key: string; seq: number; count: number }[];
  /** A record that reached the topic for the first time before an earlier record of its key: `key: 7 before 6`. */
  outOfOrder: string[];
  /** Keys whose last record is not their highest number (a compacted topic would keep a stale value). */
  staleLast: string[];
  /** Keys found on more than one partition, and records of keys or numbers never sent. */
  misplaced: string[];
}

/**
 * Compare what was read (any order: it is sorted by partition and offset here) with `sent`,
 * each key's highest number (its records are 1..n). Duplicates are reported, not judged:
 * the caller decides which ones its delivery guarantee allows.
 */
export function checkPerKeyOrder(sent: ReadonlyMap<string, number>, records: readonly ReadRecord[]): OrderReport {
  const sorted = [...records].sort(
    (a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0),
  );
  const byKey = new Map<string, { partitions: Set<number>; seqs: number[] }>();
  const misplaced: string[] = [];
  for (const r of sorted) {
    if (!sent.has(r.key)) {
      misplaced.push(`${r.key}: never sent (partition ${r.partition} offset ${r.offset})`);
      continue;
    }
    let entry = byKey.get(r.key);
    if (!entry) {
      entry = { partitions: new Set(), seqs: [] };
      byKey.set(r.key, entry);
    }
    entry.partitions.add(r.partition);
    entry.seqs.push(r.seq);
  }
  const missing: string[] = [];
  const duplicates: OrderReport['duplicates'] = [];
  const outOfOrder: string[] = [];
  const staleLast: string[] = [];
  for (const [key, highest] of sent) {
    const entry = byKey.get(key);
    const seqs = entry?.seqs ?? [];
    if (entry && entry.partitions.size > 1) misplaced.push(`${key}: on partitions ${[...entry.partitions].join(', ')}`);
    const counts = new Map<number, number>();
    let newest = 0;
    for (const seq of seqs) {
      if (!Number.isInteger(seq) || seq < 1 || seq > highest) {
        misplaced.push(`${key}: number ${seq} never sent (highest ${highest})`);
        continue;
      }
      const count = (counts.get(seq) ?? 0) + 1;
      counts.set(seq, count);
      if (count > 1) continue;
      // First time this number shows up: no higher number of the key may have come first
      // (a number that never comes is missing, not out of order).
      if (seq < newest) outOfOrder.push(`${key}: ${newest} before ${seq}`);
      newest = Math.max(newest, seq);
    }
    for (let s = 1; s <= highest; s++) if (!counts.has(s)) missing.push(`${key}#${s}`);
    for (const [seq, count] of counts) if (count > 1) duplicates.push({ key, seq, count });
    if (highest > 0 && seqs.length > 0 && seqs[seqs.length - 1] !== highest)
      staleLast.push(`${key}: last ${seqs[seqs.length - 1]}, highest ${highest}`);
  }
  return { records: records.length, missing, duplicates, outOfOrder, staleLast, misplaced };
}
