import { randomBytes } from 'node:crypto';
import type { Row, TableSchema, Value } from '@nanosync/core';

/**
 * Every suite works on tables of one small shape, so a connector author maps it once:
 *
 * | column | logical type | |
 * |---|---|---|
 * | `id` | int32 | primary key |
 * | `note` | string | nullable |
 * | `qty` | int32 | nullable |
 *
 * In a source database that is e.g. `id int PRIMARY KEY, note text, qty int`.
 */
export interface KitRow {
  id: number;
  note: string | null;
  qty: number | null;
}

export const KIT_COLUMNS = ['id', 'note', 'qty'] as const;

/** The kit table's schema as core describes it. */
export function kitTableSchema(schema: string, name: string): TableSchema {
  return {
    schema,
    name,
    columns: [
      { name: 'id', type: { kind: 'int32' }, nullable: false },
      { name: 'note', type: { kind: 'string' }, nullable: true },
      { name: 'qty', type: { kind: 'int32' }, nullable: true },
    ],
    keyColumns: ['id'],
  };
}

/**
 * A row of the kit table in canonical form, whatever the connector returned: `id` and
 * `qty` as numbers (a source may hand int32 as number, an encoder may hand it back as
 * text), `note` as text or null, other columns left out.
 */
export function kitRow(row: Row | Record<string, unknown>): KitRow {
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: Number(row.id),
    note: row.note === null || row.note === undefined ? null : String(row.note),
    qty: num(row.qty),
  };
}

/** A table name no earlier run used: `kit_<label>_<hex>` (lowercase, safe in every dialect). */
export function uniqueTableName(label: string): string {
  return `kit_${label.toLowerCase().replace(/[^a-z0-9]+/g, '_')}_${randomBytes(3).toString('hex')}`;
}

/** A pipeline name no earlier run used. */
export function uniquePipelineName(label: string): string {
  return `kit-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${randomBytes(3).toString('hex')}`;
}

export function asRow(row: KitRow): Row {
  return { id: row.id, note: row.note, qty: row.qty } satisfies Record<string, Value>;
}

/** `n` rows `id = from … from+n-1`, note `seed-<id>`, qty `id * 10`. */
export function seedRows(n: number, from = 1): KitRow[] {
  return Array.from({ length: n }, (_, i) => ({ id: from + i, note: `seed-${from + i}`, qty: (from + i) * 10 }));
}

export function sortById<T extends { id: number }>(rows: T[]): T[] {
  return [...rows].sort((a, b) => a.id - b.id);
}
