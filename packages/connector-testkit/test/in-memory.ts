/**
 * In-memory stand-ins for the kit's own tests: a correct source and sink (the suites must
 * pass on them) and deliberately broken variants (the suites must fail on them). Nothing
 * here is a real connector; every class says so in its name.
 */
import type {
  ChangeBatch,
  ChangeEvent,
  CheckResult,
  OpenOptions,
  OpenResult,
  PartitionSpec,
  Position,
  ReadPartitionOptions,
  Row,
  Sink,
  Source,
  TableRef,
  TableSchema,
} from '@nanosync/core';
import type { DriverChange, KitRow, ReadBack, SinkTestHarness, SourceTestHarness } from '../src/index.js';
import { kitTableSchema } from '../src/index.js';

const nameOf = (t: { schema: string; name: string }) => `${t.schema}.${t.name}`;
/** `<12-digit commit number>:<6-digit index>`: fixed width, so positions order as text. */
const position = (commit: number, index: number) =>
  `${String(commit).padStart(12, '0')}:${String(index).padStart(6, '0')}`;
const commitOf = (p: Position) => Number(p.split(':')[0]);

interface Txn {
  commit: number;
  events: ChangeEvent[];
}

/** The "server": tables, a change log, and the replication slots of pipelines. */
export class InMemoryDatabase {
  readonly tables = new Map<string, Map<number, KitRow>>();
  readonly log: Txn[] = [];
  readonly slots = new Map<string, { confirmed: Position }>();
  /** Exported snapshots by token: the tables as they were at export. */
  readonly snapshots = new Map<string, Map<string, Map<number, KitRow>>>();
  #commit = 0;
  #waiters: (() => void)[] = [];

  get lastCommit(): number {
    return this.#commit;
  }

  createTable(table: TableRef): void {
    this.tables.set(nameOf(table), new Map());
  }

  apply(changes: DriverChange[]): void {
    const commit = ++this.#commit;
    const events: ChangeEvent[] = [];
    for (const [index, change] of changes.entries()) {
      const rows = this.tables.get(nameOf(change.table));
      if (!rows) throw new Error(`table ${nameOf(change.table)} does not exist`);
      const schema = kitTableSchema(change.table.schema, change.table.name);
      const at = position(commit, index);
      if (change.op === 'insert') {
        rows.set(change.row.id, { ...change.row });
        events.push({
          op: 'insert',
          table: schema,
          key: { id: change.row.id },
          after: { ...change.row },
          position: at,
        });
      } else if (change.op === 'update') {
        const row = rows.get(change.key.id);
        if (!row) throw new Error(`no row ${change.key.id}`);
        const next = { ...row, ...change.set };
        rows.set(row.id, next);
        events.push({
          op: 'update',
          table: schema,
          key: { id: row.id },
          before: { ...row },
          after: { ...next },
          position: at,
        });
      } else if (change.op === 'delete') {
        rows.delete(change.key.id);
        events.push({ op: 'delete', table: schema, key: { id: change.key.id }, position: at });
      } else {
        rows.clear();
        events.push({
          op: 'truncate',
          table: schema,
          key: {},
          position: at,
          truncate: { cascade: false, restartIdentity: false },
        });
      }
    }
    this.log.push({ commit, events });
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next commit (or at once when `signal` aborts). */
  nextCommit(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      this.#waiters.push(resolve);
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }

  exportSnapshot(): string {
    const token = `snap-${this.#commit}-${this.snapshots.size}`;
    const copy = new Map(
      [...this.tables].map(([name, rows]) => [name, new Map([...rows].map(([id, r]) => [id, { ...r }]))]),
    );
    this.snapshots.set(token, copy);
    return token;
  }
}

/** What makes a source broken. */
export interface SourceFlaws {
  /** Put a safePosition on every chunk of a transaction, not only on its last. */
  safePositionMidTransaction?: boolean;
  /** stream(from) also yields the event at `from`. */
  inclusiveFrom?: boolean;
  /** Neighbouring partitions share their boundary row. */
  overlappingPartitions?: boolean;
  /** readPartition ignores the exported snapshot and reads the current rows. */
  ignoresSnapshotToken?: boolean;
  /** open() with the start position of a dropped pipeline quietly starts over. */
  recreatesDroppedSlot?: boolean;
}

/** A source over an {@link InMemoryDatabase}; correct unless given flaws. */
export class InMemorySource implements Source {
  #closed = false;

  constructor(
    readonly db: InMemoryDatabase,
    readonly pipeline: string,
    readonly flaws: SourceFlaws = {},
  ) {}

  async check(tables: TableRef[]): Promise<CheckResult[]> {
    return tables.map((t) =>
      this.db.tables.has(nameOf(t))
        ? { name: `table ${nameOf(t)}`, ok: true, message: 'exists' }
        : { name: `table ${nameOf(t)}`, ok: false, message: `table ${nameOf(t)} does not exist` },
    );
  }

  async open(tables: TableRef[], options: OpenOptions): Promise<OpenResult> {
    this.#assertOpen();
    for (const t of tables) if (!this.db.tables.has(nameOf(t))) throw new Error(`table ${nameOf(t)} does not exist`);
    const slot = this.db.slots.get(this.pipeline);
    if (options.existingStartPosition !== undefined) {
      if (!slot && !this.flaws.recreatesDroppedSlot)
        throw new Error(`slot of pipeline ${this.pipeline} is gone (start position ${options.existingStartPosition})`);
      if (!slot) this.db.slots.set(this.pipeline, { confirmed: options.existingStartPosition });
      return { startPosition: options.existingStartPosition };
    }
    const startPosition = position(this.db.lastCommit, 999_999);
    this.db.slots.set(this.pipeline, { confirmed: startPosition });
    if (!options.wantSnapshot) return { startPosition };
    const token = this.db.exportSnapshot();
    return { startPosition, snapshot: { token, release: async () => void this.db.snapshots.delete(token) } };
  }

  async describe(tables: TableRef[]): Promise<TableSchema[]> {
    return tables.map((t) => {
      if (!this.db.tables.has(nameOf(t))) throw new Error(`table ${nameOf(t)} not found`);
      return kitTableSchema(t.schema, t.name);
    });
  }

  async planPartitions(table: TableSchema, options: { targetRowsPerPartition: number }): Promise<PartitionSpec[]> {
    const ids = [...(this.db.tables.get(nameOf(table))?.keys() ?? [])].sort((a, b) => a - b);
    if (ids.length === 0) return [{ id: '0', bounds: { from: null, to: null } }];
    const out: PartitionSpec[] = [];
    const width = Math.max(1, options.targetRowsPerPartition);
    const max = ids[ids.length - 1]!;
    for (let lo = 0, n = 0; lo <= max; lo += width, n++) {
      const last = lo + width > max;
      out.push({ id: String(n), bounds: { from: n === 0 ? null : lo, to: last ? null : lo + width } });
    }
    return out;
  }

  async *readPartition(
    table: TableSchema,
    partition: PartitionSpec,
    options: ReadPartitionOptions,
  ): AsyncIterable<Row[]> {
    this.#assertOpen();
    const { from, to } = partition.bounds as { from: number | null; to: number | null };
    const source =
      options.snapshotToken && !this.flaws.ignoresSnapshotToken
        ? this.db.snapshots.get(options.snapshotToken)?.get(nameOf(table))
        : this.db.tables.get(nameOf(table));
    if (!source) throw new Error(`snapshot ${options.snapshotToken} of ${nameOf(table)} is gone`);
    const upper = to === null ? Number.POSITIVE_INFINITY : to + (this.flaws.overlappingPartitions ? 1 : 0);
    const rows = [...source.values()]
      .filter((r) => (from === null || r.id >= from) && r.id < upper)
      .sort((a, b) => a.id - b.id);
    for (let i = 0; i < rows.length; i += options.maxRowsPerChunk) {
      await Promise.resolve();
      yield rows.slice(i, i + options.maxRowsPerChunk).map((r) => ({ ...r }));
    }
  }

  async *stream(from: Position, options: { signal: AbortSignal; tables: TableRef[] }): AsyncIterable<ChangeBatch> {
    const wanted = new Set(options.tables.map(nameOf));
    let next = 0;
    while (!options.signal.aborted) {
      this.#assertOpen();
      while (next < this.db.log.length) {
        const txn = this.db.log[next++]!;
        const events = txn.events.filter(
          (e) =>
            wanted.has(nameOf(e.table)) &&
            (this.flaws.inclusiveFrom ? txn.commit >= commitOf(from) : e.position > from),
        );
        if (events.length === 0) continue;
        const chunks: ChangeEvent[][] = [];
        for (let i = 0; i < events.length; i += 7) chunks.push(events.slice(i, i + 7));
        for (const [i, chunk] of chunks.entries()) {
          const boundary = i === chunks.length - 1;
          const safe = boundary
            ? position(txn.commit, 999_999)
            : this.flaws.safePositionMidTransaction
              ? chunk[chunk.length - 1]!.position
              : undefined;
          yield safe === undefined ? { events: chunk } : { events: chunk, safePosition: safe };
        }
      }
      await this.db.nextCommit(options.signal);
    }
  }

  async acknowledge(at: Position): Promise<void> {
    const slot = this.db.slots.get(this.pipeline);
    if (!slot) throw new Error(`slot of ${this.pipeline} is gone`);
    if (at < slot.confirmed) throw new Error(`acknowledge(${at}) goes back from ${slot.confirmed}`);
    slot.confirmed = at;
  }

  comparePositions(a: Position, b: Position): number {
    return a < b ? -1 : a > b ? 1 : 0;
  }

  formatPosition(p: Position): string {
    return `#${commitOf(p)}/${Number(p.split(':')[1])}`;
  }

  async metrics() {
    const slot = this.db.slots.get(this.pipeline);
    return slot ? { confirmedPosition: slot.confirmed } : {};
  }

  async drop(): Promise<void> {
    this.db.slots.delete(this.pipeline);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('source is closed');
  }
}

export function inMemorySourceHarness(flaws: SourceFlaws = {}): SourceTestHarness {
  const db = new InMemoryDatabase();
  return {
    schema: 'main',
    driver: {
      async createTable(table) {
        db.createTable(table);
      },
      async transaction(changes) {
        db.apply(changes);
      },
      async rows(table) {
        return [...(db.tables.get(nameOf(table))?.values() ?? [])].map((r) => ({ ...r }));
      },
    },
    async createSource(pipeline) {
      return new InMemorySource(db, pipeline, flaws);
    },
  };
}

/** What makes a sink broken. */
export interface SinkFlaws {
  /** write() resolves at once; the events become durable only at the next write or at close. */
  resolvesBeforeDurable?: boolean;
  /** Each batch is stored in reverse order. */
  reordersBatch?: boolean;
  /** Truncate events are dropped. */
  ignoresTruncate?: boolean;
  /** Values that do not fit their column are stored anyway. */
  acceptsBadValues?: boolean;
  /** Unchanged columns are stored as NULL. */
  nullsUnchanged?: boolean;
}

/** Where in-memory sinks keep what is "durable": target → table → records or rows. */
export class InMemoryTargets {
  readonly logs = new Map<string, ChangeEvent[]>();
  readonly tables = new Map<string, Map<string, Row>>();
}

function checkValues(event: ChangeEvent): void {
  for (const column of event.table.columns) {
    const value = event.after?.[column.name];
    if (value === null || value === undefined) continue;
    const kind = column.type.kind;
    const fits =
      kind === 'int32'
        ? Number.isInteger(value) && Math.abs(value as number) < 2 ** 31
        : kind === 'string'
          ? typeof value === 'string'
          : true;
    if (!fits)
      throw new Error(
        `table ${nameOf(event.table)} column ${column.name} key ${JSON.stringify(event.key)}: ${String(value)} is not a ${kind}`,
      );
  }
}

/** A log-shaped sink (like a topic): appends every event. */
export class InMemoryLogSink implements Sink {
  #pending: ChangeEvent[] = [];

  constructor(
    readonly targets: InMemoryTargets,
    readonly target: string,
    readonly flaws: SinkFlaws = {},
  ) {}

  async open(_tables: TableSchema[]): Promise<void> {
    if (!this.targets.logs.has(this.target)) this.targets.logs.set(this.target, []);
  }

  async write(events: ChangeEvent[]): Promise<void> {
    if (!this.flaws.acceptsBadValues) for (const e of events) checkValues(e);
    let batch = events.filter((e) => !(this.flaws.ignoresTruncate && e.op === 'truncate'));
    if (this.flaws.reordersBatch) batch = [...batch].reverse();
    batch = batch.map((e) => (this.flaws.nullsUnchanged && e.unchanged ? { ...e, unchanged: undefined } : e));
    if (this.flaws.resolvesBeforeDurable) {
      this.#flush();
      this.#pending = batch;
      return;
    }
    this.targets.logs.get(this.target)!.push(...batch);
  }

  #flush(): void {
    this.targets.logs.get(this.target)!.push(...this.#pending);
    this.#pending = [];
  }

  async close(): Promise<void> {
    this.#flush();
  }
}

/** A state-shaped sink (like a warehouse table): upserts by key. */
export class InMemoryTableSink implements Sink {
  constructor(
    readonly targets: InMemoryTargets,
    readonly target: string,
  ) {}

  async open(tables: TableSchema[]): Promise<void> {
    for (const t of tables) {
      const id = `${this.target}/${nameOf(t)}`;
      if (!this.targets.tables.has(id)) this.targets.tables.set(id, new Map());
    }
  }

  async write(events: ChangeEvent[]): Promise<void> {
    for (const e of events) checkValues(e);
    for (const e of events) {
      const rows = this.targets.tables.get(`${this.target}/${nameOf(e.table)}`)!;
      const key = JSON.stringify(e.key);
      if (e.op === 'truncate') rows.clear();
      else if (e.op === 'delete') rows.delete(key);
      else {
        const merged: Row = { ...(rows.get(key) ?? {}) };
        for (const [column, value] of Object.entries(e.after ?? {}))
          if (!e.unchanged?.includes(column)) merged[column] = value;
        rows.set(key, merged);
      }
    }
  }

  async close(): Promise<void> {}
}

export function inMemoryLogSinkHarness(flaws: SinkFlaws = {}): SinkTestHarness {
  const targets = new InMemoryTargets();
  return {
    async createSink(target) {
      return new InMemoryLogSink(targets, target, flaws);
    },
    async read(target, table): Promise<ReadBack> {
      const records = (targets.logs.get(target) ?? [])
        .filter((e) => nameOf(e.table) === nameOf(table))
        .map((e) => ({
          op: e.op,
          key: { ...e.key },
          ...(e.after ? { after: { ...e.after } } : {}),
          ...(e.unchanged ? { unchanged: [...e.unchanged] } : {}),
          position: e.position,
        }));
      return { records };
    },
  };
}

export function inMemoryTableSinkHarness(): SinkTestHarness {
  const targets = new InMemoryTargets();
  return {
    async createSink(target) {
      return new InMemoryTableSink(targets, target);
    },
    async read(target, table): Promise<ReadBack> {
      return { rows: [...(targets.tables.get(`${target}/${nameOf(table)}`)?.values() ?? [])] };
    },
  };
}

export const UNREPRESENTABLE = [
  { type: { kind: 'int32' as const }, value: 2 ** 40, description: 'int32 above 2^31' },
  { type: { kind: 'string' as const }, value: 12, description: 'a number in a string column' },
];
