import type { SchemaChangePolicy } from '../config/types.js';
import type { Logger } from '../contract/logger.js';
import { ErrorCode, NanosyncError } from '../errors.js';
import { type ChangeEvent, type Position, qualifiedName, type TableSchema } from '../model.js';
import type { StateStore } from '../state/store.js';

/**
 * A table's shape as a consumer sees it: column names, types and order, and the key.
 * Nullability is left out (the stream reads it from the catalog of today, not of the
 * change's time, so it is not a reliable signal).
 */
export function shapeOf(table: TableSchema): string {
  return JSON.stringify({
    columns: table.columns.map((c) => [c.name, c.sourceType ?? '', c.type]),
    key: table.keyColumns,
  });
}

interface Shape {
  columns: [name: string, sourceType: string, type: unknown][];
  key: string[];
}

/** What changed from `before` to `after`, in words: `column "note" added (text); key (id) → (id, at)`. */
export function describeShapeChange(before: string | undefined, after: TableSchema): string {
  if (before === undefined) return 'first shape seen';
  const old = JSON.parse(before) as Shape;
  const now = JSON.parse(shapeOf(after)) as Shape;
  const oldByName = new Map(old.columns.map((c, i) => [c[0], { column: c, index: i }]));
  const nowByName = new Map(now.columns.map((c, i) => [c[0], { column: c, index: i }]));
  const removed = old.columns.filter((c) => !nowByName.has(c[0]));
  const added = now.columns.filter((c) => !oldByName.has(c[0]));
  const parts: string[] = [];
  // One column gone and one new at the same place with the same type: a rename.
  if (removed.length === 1 && added.length === 1) {
    const [from] = removed as [Shape['columns'][number]];
    const [to] = added as [Shape['columns'][number]];
    if (oldByName.get(from[0])!.index === nowByName.get(to[0])!.index && from[1] === to[1]) {
      parts.push(`column "${from[0]}" renamed to "${to[0]}"`);
      removed.length = 0;
      added.length = 0;
    }
  }
  for (const c of added) parts.push(`column "${c[0]}" added (${c[1] || 'unknown type'})`);
  for (const c of removed) parts.push(`column "${c[0]}" dropped`);
  for (const c of now.columns) {
    const was = oldByName.get(c[0])?.column;
    if (was === undefined) continue;
    if (was[1] !== c[1]) parts.push(`column "${c[0]}" type ${was[1]} → ${c[1]}`);
    else if (JSON.stringify(was[2]) !== JSON.stringify(c[2])) parts.push(`column "${c[0]}" type ${c[1]} redefined`);
  }
  if (JSON.stringify(old.key) !== JSON.stringify(now.key))
    parts.push(`key (${old.key.join(', ')}) → (${now.key.join(', ')})`);
  if (parts.length === 0) parts.push('columns reordered');
  return parts.join('; ');
}

/** What is kept in the state store's meta area, per pipeline. */
interface Memory {
  /** The pipeline's start position: a pipeline deleted and created again starts afresh. */
  start: Position;
  /** Shapes accepted so far per table (`schema.table`), oldest first. */
  tables: Record<string, string[]>;
  /** The change a `pause` stopped at; the next start (only `resume` starts a paused pipeline) accepts it. */
  pending?: { table: string; shape: string };
}

/** Shapes remembered per table: enough for replays from any checkpoint a pipeline keeps. */
const MAX_SHAPES = 50;

export interface SchemaGuardOptions {
  pipeline: string;
  policy: SchemaChangePolicy;
  store: StateStore;
  /** The pipeline's start position (L₀). */
  startPosition: Position;
  logger: Logger;
  /** A position in the source's human form, for messages. */
  formatPosition: (position: Position) => string | undefined;
}

/**
 * The `schema_changes` option: watches the shape of every streamed event's table.
 *
 * Every shape a table had while the pipeline streamed it is remembered in the state store,
 * starting with the one `describe()` gave on the pipeline's first start (or the first start
 * that listed the table). An event whose table has a shape never seen before is a schema
 * change: `propagate` remembers it and carries on; `pause` and `fail` stop before the batch
 * holding it reaches any sink, so the sinks' checkpoints stay before the change and a
 * resumed pipeline replays from there. Shapes of changes already accepted (a replay after
 * a restart streams older shapes again) pass. `pause` remembers the new shape as pending;
 * the next start, which only a `resume` allows, accepts it.
 *
 * The hot path is one identity check per event: a table object (shared by every event of a
 * relation version) is examined once.
 */
export class SchemaGuard {
  private readonly checked = new WeakSet<TableSchema>();
  private last: TableSchema | undefined;

  private constructor(
    private readonly options: SchemaGuardOptions,
    private readonly memory: Memory,
  ) {}

  static key(pipeline: string): string {
    return `pipeline.${pipeline}.schema-shapes`;
  }

  /** Load what the store remembers; tables without a shape yet start from `described`. */
  static async load(options: SchemaGuardOptions, described: readonly TableSchema[]): Promise<SchemaGuard> {
    const { store, pipeline, startPosition, logger } = options;
    let memory: Memory | undefined;
    const raw = await store.getMeta(SchemaGuard.key(pipeline));
    if (raw !== undefined) {
      try {
        const parsed = JSON.parse(raw) as Memory;
        if (parsed.start === startPosition && typeof parsed.tables === 'object') memory = parsed;
      } catch {
        logger.warn('remembered table shapes are unreadable; starting from the current ones');
      }
    }
    let changed = memory === undefined;
    memory ??= { start: startPosition, tables: {} };
    if (memory.pending !== undefined) {
      const { table, shape } = memory.pending;
      const shapes = memory.tables[table] ?? [];
      memory.tables[table] = shapes;
      if (!shapes.includes(shape)) shapes.push(shape);
      delete memory.pending;
      changed = true;
      logger.info('schema change accepted on resume', { table });
    }
    for (const table of described) {
      const name = qualifiedName(table);
      if (memory.tables[name] === undefined) {
        memory.tables[name] = [shapeOf(table)];
        changed = true;
      }
    }
    const guard = new SchemaGuard(options, memory);
    if (changed) await guard.save();
    return guard;
  }

  /** True when some event's table has not been examined yet (then call {@link review}). */
  needsReview(events: readonly ChangeEvent[]): boolean {
    for (let i = 0; i < events.length; i++) {
      const table = events[i]!.table;
      if (table === this.last) continue;
      if (!this.checked.has(table)) return true;
      this.last = table;
    }
    return false;
  }

  /**
   * Examine the tables not seen yet. Throws `SchemaChangePaused` (`pause`) or `SchemaChanged`
   * (`fail`) at the first unknown shape; with `propagate` remembers it and logs the change.
   */
  async review(events: readonly ChangeEvent[]): Promise<void> {
    for (const event of events) {
      const table = event.table;
      if (this.checked.has(table)) continue;
      const name = qualifiedName(table);
      const shape = shapeOf(table);
      const shapes = this.memory.tables[name] ?? [];
      this.memory.tables[name] = shapes;
      if (shapes.includes(shape)) {
        this.checked.add(table);
        continue;
      }
      const change = describeShapeChange(shapes.at(-1), table);
      const { policy, pipeline, logger } = this.options;
      if (policy === 'propagate' || shapes.length === 0) {
        shapes.push(shape);
        if (shapes.length > MAX_SHAPES) shapes.splice(0, shapes.length - MAX_SHAPES);
        await this.save();
        this.checked.add(table);
        if (shapes.length > 1) logger.info('schema change', { table: name, change });
        continue;
      }
      const at = this.options.formatPosition(event.position) ?? event.position;
      const what = `table ${name} changed shape at ${at}: ${change}`;
      if (policy === 'pause') {
        this.memory.pending = { table: name, shape };
        await this.save();
        throw new NanosyncError(
          ErrorCode.SchemaChangePaused,
          `${what}. Pipeline ${pipeline} is paused (schema_changes: pause); nothing of the new shape was written. Once the consumers can take it: nanosync pipeline resume ${pipeline} (accepts the change and carries on from the checkpoint)`,
          { details: { table: name, change } },
        );
      }
      throw new NanosyncError(
        ErrorCode.SchemaChanged,
        `${what}. Pipeline ${pipeline} stopped (schema_changes: fail); nothing of the new shape was written. To carry on with it: set schema_changes: propagate (or pause) on the pipeline, apply, then nanosync pipeline resume ${pipeline}`,
        { details: { table: name, change } },
      );
    }
  }

  private async save(): Promise<void> {
    await this.options.store.setMeta(SchemaGuard.key(this.options.pipeline), JSON.stringify(this.memory));
  }
}
