import type { ChangeEvent, Row, TableSchema } from '@nanosync/core';
import type { KafkaSinkConfig } from './config.js';
import { setColumn, toJsonValue } from './formats/json-values.js';

/**
 * Where a table's events go: the configured `topic`, or `<prefix><schema>_<table>`. Dots
 * in the schema or table name become `_` (so `public.orders` never reads as a hierarchy),
 * and so does any other character Kafka does not allow in a topic name.
 */
export function topicFor(table: Pick<TableSchema, 'schema' | 'name'>, config: Pick<KafkaSinkConfig, 'topic' | 'topicPrefix'>): string {
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
 * The message key: the key columns as a JSON object in key order, with values as the
 * JSON format writes them (`{"id":"1001"}` for an int64). Identical for every event of a
 * row, so all of them land on one partition. Values come from the newest image that
 * has them: `after`, then `before`, then the event's key.
 */
export function messageKey(event: ChangeEvent, columns: readonly string[]): Buffer | null {
  if (columns.length === 0) return null;
  const images: (Row | undefined)[] = [event.after, event.before, event.key];
  const key: Record<string, unknown> = {};
  for (const name of columns) {
    const column = event.table.columns.find((c) => c.name === name);
    const image = images.find((row) => row !== undefined && Object.hasOwn(row, name));
    const value = image ? image[name] : null;
    setColumn(key, name, column ? toJsonValue(column.type, value ?? null, name) : (value ?? null));
  }
  return Buffer.from(JSON.stringify(key), 'utf8');
}
