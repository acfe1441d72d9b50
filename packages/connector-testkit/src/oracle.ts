import type { Position, Row, Value } from '@nanosync/core';

/**
 * The end-to-end oracle of RELIABILITY.md as plain functions. Every function returns a list
 * of problems (empty when the check passes) so a test can print all of them at once;
 * {@link assertOracle} throws with the list.
 *
 * Input is what a sink holds, read back in the order the target keeps it (a topic read from
 * offset 0, the lines of a file): one {@link OracleRecord} per message.
 */

/** One change as read back from a sink. */
export interface OracleRecord {
  /** `schema.table`. */
  table: string;
  /** `insert | update | delete | read | truncate`; a tombstone is a `delete`. */
  op: string;
  /** The key columns and their values; empty for `truncate`. */
  key: Row;
  /** The new row image (absent for delete and truncate). */
  after?: Row | null;
  /** The old row image, when kept: an update whose old key differs moves the row. */
  before?: Row | null;
  /** Columns the source did not send: their previous value stays. */
  unchanged?: string[];
  /** The source position, when the target keeps it. Needed for truncates across partitions and for the order check. */
  position?: Position;
}

/** A change the test made on the source and expects to find at least once. */
export interface ExpectedChange {
  table: string;
  op: 'insert' | 'update' | 'delete' | 'read' | 'truncate';
  key: Row;
  /** Columns the delivered row image must hold (a subset of `after`). */
  after?: Row;
}

export type ComparePositions = (a: Position, b: Position) => number;

/** Plain string order: right for fixed-width positions (PostgreSQL's hex `LSN:index`). */
export const compareAsStrings: ComparePositions = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * A value as comparable text: object keys sorted, bigint as digits, bytes as hex, NaN and
 * the infinities spelled out. Two rows are equal when their canonical JSON is equal.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(canonical(value));
}

function canonical(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return { $bigint: value.toString() };
  if (typeof value === 'number' && !Number.isFinite(value)) return { $number: String(value) };
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('hex') };
  if (Array.isArray(value)) return value.map(canonical);
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = canonical((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

/** The identity of a key within its table: canonical JSON of the key columns. */
export function keyId(key: Row): string {
  return canonicalJson(key);
}

/** Reduced state: table → key id → row. */
export type ReducedState = Map<string, Map<string, Row>>;

/**
 * What a key-upserting consumer would hold after reading `records` in order: the last
 * record per (table, key) wins; a delete removes the key; unchanged columns keep their
 * previous value; an update whose `before` holds another key moves the row. A truncate
 * removes every row of its table written before it: by position
 * when records carry positions (so a truncate in another topic partition still applies to
 * the right rows, and a replayed older row stays removed), otherwise by read order.
 */
export function reduceByKey(
  records: Iterable<OracleRecord>,
  options: { comparePositions?: ComparePositions } = {},
): ReducedState {
  const compare = options.comparePositions ?? compareAsStrings;
  const state: ReducedState = new Map();
  const lastPosition = new Map<string, Map<string, Position | undefined>>();
  const truncatedAt = new Map<string, Position>();
  const tableOf = (table: string) => {
    let rows = state.get(table);
    if (!rows) {
      rows = new Map();
      state.set(table, rows);
      lastPosition.set(table, new Map());
    }
    return rows;
  };
  for (const record of records) {
    const rows = tableOf(record.table);
    const positions = lastPosition.get(record.table)!;
    if (record.op === 'truncate') {
      if (record.position === undefined) {
        rows.clear();
        positions.clear();
        continue;
      }
      const before = truncatedAt.get(record.table);
      if (before === undefined || compare(record.position, before) > 0) truncatedAt.set(record.table, record.position);
      continue;
    }
    const id = keyId(record.key);
    if (record.op === 'delete' || !record.after) {
      rows.delete(id);
      positions.set(id, record.position);
      continue;
    }
    if (record.op === 'update' && record.before) {
      const columns = Object.keys(record.key);
      const before = record.before;
      if (columns.every((c) => Object.hasOwn(before, c))) {
        const oldId = keyId(Object.fromEntries(columns.map((c) => [c, before[c] as Value])));
        if (oldId !== id) {
          rows.delete(oldId);
          positions.set(oldId, record.position);
        }
      }
    }
    let row = record.after;
    const previous = rows.get(id);
    if (record.unchanged?.length && previous) {
      row = { ...row };
      for (const column of record.unchanged) if (column in previous) row[column] = previous[column] as Value;
    }
    rows.set(id, row);
    positions.set(id, record.position);
  }
  for (const [table, at] of truncatedAt) {
    const rows = state.get(table)!;
    const positions = lastPosition.get(table)!;
    for (const [id, position] of positions) {
      if (position === undefined || compare(position, at) < 0) rows.delete(id);
    }
  }
  return state;
}

export interface CompareOptions {
  /** Columns that identify a row. */
  keyColumns: readonly string[];
  /** Named in problems. */
  table?: string;
  /** Applied to both sides before comparing (e.g. to map an encoder's int64 strings). */
  normalize?: (row: Row) => Row;
}

/**
 * Compare the rows a sink holds with the source's rows (`SELECT *`), column by column:
 * every key present on both sides with equal values, nothing extra on either side.
 */
export function compareWithSnapshot(
  actual: Iterable<Row> | Map<string, Row>,
  expected: Iterable<Row>,
  options: CompareOptions,
): string[] {
  const normalize = options.normalize ?? ((row: Row) => row);
  const where = options.table ? `${options.table} ` : '';
  const pick = (row: Row) => Object.fromEntries(options.keyColumns.map((c) => [c, row[c] ?? null])) as Row;
  const index = (rows: Iterable<Row>) => {
    const out = new Map<string, Row>();
    const duplicates: string[] = [];
    for (const raw of rows) {
      const row = normalize(raw);
      const id = keyId(pick(row));
      if (out.has(id)) duplicates.push(id);
      out.set(id, row);
    }
    return { out, duplicates };
  };
  const actualRows = actual instanceof Map ? [...actual.values()] : actual;
  const got = index(actualRows);
  const want = index(expected);
  const problems: string[] = [];
  for (const id of got.duplicates) problems.push(`${where}key ${id}: held more than once by the sink`);
  for (const [id, row] of want.out) {
    const have = got.out.get(id);
    if (!have) problems.push(`${where}key ${id}: in the source, missing from the sink`);
    else if (canonicalJson(have) !== canonicalJson(row))
      problems.push(`${where}key ${id}: sink ${canonicalJson(have)} ≠ source ${canonicalJson(row)}`);
  }
  for (const id of got.out.keys())
    if (!want.out.has(id)) problems.push(`${where}key ${id}: in the sink, not in the source`);
  return problems;
}

/**
 * Per (table, key), in read order, a position lower than the highest already seen must be
 * one seen before: a replayed prefix (at-least-once) is fine, a version that shows up for
 * the first time after a newer one is not. Snapshot rows (`read`) are exempt: they carry
 * the start position, which precedes the stream.
 */
export function checkPositionOrder(
  records: Iterable<OracleRecord>,
  options: { comparePositions?: ComparePositions } = {},
): string[] {
  const compare = options.comparePositions ?? compareAsStrings;
  const seen = new Map<string, { highest: Position; all: Set<Position> }>();
  const problems: string[] = [];
  for (const record of records) {
    if (record.position === undefined || record.op === 'read') continue;
    const id = `${record.table} ${keyId(record.key)}`;
    const history = seen.get(id);
    if (!history) {
      seen.set(id, { highest: record.position, all: new Set([record.position]) });
      continue;
    }
    if (compare(record.position, history.highest) < 0 && !history.all.has(record.position)) {
      problems.push(
        `${record.table} key ${keyId(record.key)}: position ${record.position} (${record.op}) first appears after ${history.highest}`,
      );
    }
    if (compare(record.position, history.highest) > 0) history.highest = record.position;
    history.all.add(record.position);
  }
  return problems;
}

/**
 * The strict history check (RELIABILITY.md, check 5): per (table, key), in read order, a
 * version older than one already delivered may appear only as a replay of a version that
 * was itself delivered earlier; a version never appears for the first time after a newer one.
 *
 * A key's versions are ordered by the positions of its stream records (insert, update,
 * delete; a delete is the version "absent"). A snapshot row (`read`) carries no usable
 * order of its own (a blocking snapshot read after a restart carries the resume position
 * whatever it read), so it is placed by its content: it is the newest stream version whose
 * columns it matches, or, matching none, the version from before the stream (older than
 * every stream version). This is what fails for a blocking snapshot after a restart: the
 * fresh read delivers the newest version, then the stream's replay delivers, for the first
 * time, the versions in between.
 *
 * A truncate (with a position) is the version "absent" of every key of its table, so a row
 * from before it (a snapshot row, a late stream record) that shows up for the first time
 * after the truncate was read fails. It applies from its place in the read order to every
 * key of its table, also keys read first after it: pass the records in the order one
 * consumer reads them (one partition, or merged by position).
 */
export function checkHistoryOrder(
  records: Iterable<OracleRecord>,
  options: { comparePositions?: ComparePositions } = {},
): string[] {
  const compare = options.comparePositions ?? compareAsStrings;
  const list = [...records];
  const idOf = (record: OracleRecord) => `${record.table} ${keyId(record.key)}`;
  // Truncates by table, and every key of each table (streamed or only read).
  const truncates = new Map<string, Position[]>();
  const keysOf = new Map<string, Set<string>>();
  for (const record of list) {
    if (record.op === 'truncate') {
      if (record.position !== undefined)
        truncates.set(record.table, [...(truncates.get(record.table) ?? []), record.position]);
      continue;
    }
    let keys = keysOf.get(record.table);
    if (!keys) {
      keys = new Set();
      keysOf.set(record.table, keys);
    }
    keys.add(idOf(record));
  }
  // Every key's stream versions: position → content, ranked by position. A truncate is the
  // version "absent" of every key of its table.
  const versions = new Map<string, Map<Position, string | null>>();
  const versionsOf = (id: string) => {
    let byPosition = versions.get(id);
    if (!byPosition) {
      byPosition = new Map();
      versions.set(id, byPosition);
    }
    return byPosition;
  };
  for (const [table, positions] of truncates)
    for (const id of keysOf.get(table) ?? []) for (const position of positions) versionsOf(id).set(position, null);
  for (const record of list) {
    if (record.op === 'read' || record.op === 'truncate' || record.position === undefined) continue;
    versionsOf(idOf(record)).set(
      record.position,
      record.op === 'delete' || !record.after ? null : versionContent(record),
    );
  }
  const ranks = new Map<string, { rank: Map<Position, number>; contents: (string | null)[] }>();
  for (const [id, byPosition] of versions) {
    const ordered = [...byPosition.keys()].sort(compare);
    ranks.set(id, {
      rank: new Map(ordered.map((p, i) => [p, i])),
      contents: ordered.map((p) => byPosition.get(p)!),
    });
  }
  type KeyState = { highest: number; delivered: Set<number> };
  const seen = new Map<string, KeyState>();
  /** Truncates read so far, by table: they apply to keys first read after them too. */
  const truncatesRead = new Map<string, Position[]>();
  // A truncate carries no key, so it is never reported itself; it makes every older version
  // of each key of its table one that may only come back as a replay.
  const applyTruncate = (id: string, state: KeyState, position: Position) => {
    const rank = ranks.get(id)?.rank.get(position);
    if (rank === undefined) return;
    if (rank >= state.highest) state.highest = rank;
    state.delivered.add(rank);
  };
  const stateOf = (record: OracleRecord, id: string) => {
    let state = seen.get(id);
    if (!state) {
      state = { highest: Number.NEGATIVE_INFINITY, delivered: new Set() };
      seen.set(id, state);
      for (const position of truncatesRead.get(record.table) ?? []) applyTruncate(id, state, position);
    }
    return state;
  };
  const problems: string[] = [];
  for (const record of list) {
    if (record.op === 'truncate') {
      if (record.position === undefined) continue;
      truncatesRead.set(record.table, [...(truncatesRead.get(record.table) ?? []), record.position]);
      for (const id of keysOf.get(record.table) ?? []) {
        const state = seen.get(id);
        if (state) applyTruncate(id, state, record.position);
      }
      continue;
    }
    const id = idOf(record);
    const history = ranks.get(id);
    let candidates: number[];
    if (record.op === 'read') {
      candidates = [];
      if (history && record.after) {
        history.contents.forEach((content, i) => {
          if (content !== null && matchesVersion(record.after!, content)) candidates.push(i);
        });
      }
      if (candidates.length === 0) candidates = [-1];
    } else {
      if (record.position === undefined) continue;
      candidates = [history?.rank.get(record.position) ?? -1];
    }
    const state = stateOf(record, id);
    const newest = Math.max(...candidates);
    if (newest >= state.highest) {
      state.highest = newest;
      state.delivered.add(newest);
    } else if (!candidates.some((c) => state.delivered.has(c))) {
      const what = newest === -1 ? 'the version from before the stream' : `the version of ${record.position}`;
      problems.push(
        `${record.table} key ${keyId(record.key)}: ${record.op} delivers ${what} for the first time after a newer version`,
      );
      state.delivered.add(newest);
    }
  }
  return problems;
}

/** A stream record's row image as comparable text (columns it did not send left out). */
function versionContent(record: OracleRecord): string {
  const after = { ...record.after! };
  for (const column of record.unchanged ?? []) delete after[column];
  return canonicalJson(after);
}

/** Whether a snapshot row holds the values of a version (every column the version sent). */
function matchesVersion(row: Row, content: string): boolean {
  const version = JSON.parse(content) as Record<string, unknown>;
  for (const [column, value] of Object.entries(version)) {
    if (JSON.stringify(canonical(row[column])) !== JSON.stringify(value)) return false;
  }
  return true;
}

/** Every expected change is present at least once (zero lost). */
export function checkNothingLost(records: Iterable<OracleRecord>, changes: Iterable<ExpectedChange>): string[] {
  const byKey = new Map<string, OracleRecord[]>();
  for (const record of records) {
    const id = `${record.table} ${record.op === 'truncate' ? '' : keyId(record.key)}`;
    const list = byKey.get(id) ?? [];
    list.push(record);
    byKey.set(id, list);
  }
  const problems: string[] = [];
  for (const change of changes) {
    const id = `${change.table} ${change.op === 'truncate' ? '' : keyId(change.key)}`;
    const found = (byKey.get(id) ?? []).some(
      (record) =>
        record.op === change.op &&
        (!change.after ||
          Object.entries(change.after).every(
            ([column, value]) => canonicalJson(record.after?.[column]) === canonicalJson(value),
          )),
    );
    if (!found)
      problems.push(
        `change lost: ${change.op} ${change.table} key ${keyId(change.key)}${change.after ? ` ${canonicalJson(change.after)}` : ''}`,
      );
  }
  return problems;
}

export interface OracleInput {
  /** Everything the sink holds, in the order it keeps it. */
  records: Iterable<OracleRecord>;
  /** The source's rows per table (`schema.table` → rows), read after the pipeline drained. */
  expected: Record<string, Row[]>;
  /** Key columns per table; one list for every table when they share it. */
  keyColumns: readonly string[] | Record<string, readonly string[]>;
  comparePositions?: ComparePositions;
  /** Changes the test made; each must be present at least once. */
  changes?: Iterable<ExpectedChange>;
  normalize?: (row: Row) => Row;
  /** Run the strict history check ({@link checkHistoryOrder}) instead of the position check it includes. */
  strict?: boolean;
}

/** Checks 1–3 (and 5) of RELIABILITY.md's oracle together. Returns the problems, empty when it passes. */
export function runOracle(input: OracleInput): string[] {
  const records = [...input.records];
  const reduced = reduceByKey(records, { comparePositions: input.comparePositions });
  const problems: string[] = [];
  for (const [table, rows] of Object.entries(input.expected)) {
    const keyColumns = Array.isArray(input.keyColumns)
      ? (input.keyColumns as readonly string[])
      : (input.keyColumns as Record<string, readonly string[]>)[table];
    if (!keyColumns) throw new Error(`runOracle: no key columns given for table ${table}`);
    problems.push(
      ...compareWithSnapshot(reduced.get(table) ?? new Map(), rows, { keyColumns, table, normalize: input.normalize }),
    );
  }
  for (const table of reduced.keys()) {
    if (!(table in input.expected) && reduced.get(table)!.size > 0)
      problems.push(`${table}: the sink holds rows of a table the test did not expect`);
  }
  // The strict check includes the position check (a stream version first delivered after a
  // newer one fails both): run one, so one problem is reported once.
  if (input.strict) problems.push(...checkHistoryOrder(records, { comparePositions: input.comparePositions }));
  else problems.push(...checkPositionOrder(records, { comparePositions: input.comparePositions }));
  if (input.changes) problems.push(...checkNothingLost(records, input.changes));
  return problems;
}

/** {@link runOracle}, throwing an error that lists the first problems. */
export function assertOracle(input: OracleInput): void {
  const problems = runOracle(input);
  if (problems.length > 0) throw new OracleError(problems);
}

export class OracleError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `oracle failed with ${problems.length} problem(s):\n  ${problems.slice(0, 25).join('\n  ')}${problems.length > 25 ? '\n  …' : ''}`,
    );
    this.name = 'OracleError';
  }
}
