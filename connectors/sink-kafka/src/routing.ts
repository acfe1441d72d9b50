import type { ChangeEvent, Row, TableSchema } from '@nanosync/core';
import type { KafkaSinkConfig } from './config.js';
import { canonicalKeyValue } from './formats/key.js';

/**
 * Where a table's events go: the configured `topic`, or `<prefix><schema>_<table>`. Dots
 * in the schema or table name become `_` (so `public.orders` never reads as a hierarchy),
 * and so does any other character Kafka does not allow in a topic name.
 */
export function topicFor(
  table: Pick<TableSchema, 'schema' | 'name'>,
  config: Pick<KafkaSinkConfig, 'topic' | 'topicPrefix'>,
): string {
  if (config.topic !== undefined) return config.topic;
  const part = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '_');
  return `${config.topicPrefix}${part(table.schema)}_${part(table.name)}`.slice(0, 249);
}

/**
 * The columns that form the message key: `primary_keys` when configured, else the
 * table's own key. Empty means the table has no key: messages then have no key and
 * are spread over partitions, so per-row order is not kept (the sink warns at open).
 */
export function keyColumnsFor(table: TableSchema, config: Pick<KafkaSinkConfig, 'primaryKeys'>): string[] {
  return config.primaryKeys ?? table.keyColumns;
}

/**
 * The message key: a JSON array of the key columns' values, in key order, each in its
 * canonical key form (formats/key.ts): `[1001]`, `["acme",7]`. Column names are left out on
 * purpose, so renaming a key column does not move its rows to new keys, and the canonical
 * forms keep a key through type changes (`int` → `bigint` → `numeric`). The values come
 * from the event itself (its own table schema and images, as they were at its position),
 * newest image first: `after`, then `before`, then the event's key. A `truncate` has none.
 */
export function messageKey(event: ChangeEvent, columns: readonly string[]): Buffer | null {
  if (columns.length === 0 || event.op === 'truncate') return null;
  const images: (Row | undefined)[] = [event.after, event.before, event.key];
  const parts = columns.map((name) => {
    const column = event.table.columns.find((c) => c.name === name);
    const image = images.find((row) => row !== undefined && Object.hasOwn(row, name));
    return canonicalKeyValue(column?.type, image ? image[name] : null, name);
  });
  return Buffer.from(`[${parts.join(',')}]`, 'utf8');
}
