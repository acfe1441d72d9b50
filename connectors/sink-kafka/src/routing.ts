import { type ChangeEvent, ErrorCode, NanosyncError, type Row, type TableSchema, qualifiedName } from '@nanosync/core';
import type { KafkaSinkConfig } from './config.js';
import { canonicalKeyValue } from './formats/key.js';

/**
 * Where a table's events go: the configured `topic`, the table's entry in `table_topics`,
 * or `<prefix><schema>_<table>`. Dots in the schema or table name become `_` (so
 * `public.orders` never reads as a hierarchy), and so does any other character Kafka does
 * not allow in a topic name — which is why two tables can map to one name (see
 * `checkTopicCollisions`).
 */
export function topicFor(
  table: Pick<TableSchema, 'schema' | 'name'>,
  config: Pick<KafkaSinkConfig, 'topic' | 'topicPrefix' | 'tableTopics'>,
): string {
  if (config.topic !== undefined) return config.topic;
  const mapped = config.tableTopics?.[qualifiedName(table)];
  if (mapped !== undefined) return mapped;
  const part = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '_');
  return `${config.topicPrefix}${part(table.schema)}_${part(table.name)}`.slice(0, 249);
}

/**
 * Tables sent to one topic on purpose (`topic`) share it; otherwise two tables whose names
 * map to the same topic (`public."order.items"` and `public.order_items` both give
 * `<prefix>public_order_items`) would mix their rows under one name without a word. Throws
 * naming both tables, the topic and the ways out. `known` holds the tables already routed
 * and is updated.
 */
export function checkTopicCollisions(
  tables: readonly Pick<TableSchema, 'schema' | 'name'>[],
  config: Pick<KafkaSinkConfig, 'topic' | 'topicPrefix' | 'tableTopics'>,
  known: Map<string, { table: string; topic: string }> = new Map(),
): Map<string, { table: string; topic: string }> {
  if (config.topic !== undefined) return known;
  for (const table of tables) {
    const name = qualifiedName(table);
    const topic = topicFor(table, config);
    // Kafka itself refuses topics that differ only in '.' versus '_' (their metric names collide).
    const slot = topic.replace(/\./g, '_');
    const other = known.get(slot);
    if (other !== undefined && other.table !== name) {
      const topics =
        other.topic === topic
          ? `Kafka topic "${topic}"`
          : `Kafka topics "${other.topic}" and "${topic}", which Kafka treats as one name`;
      throw new NanosyncError(
        ErrorCode.ConfigInvalid,
        `tables "${other.table}" and "${name}" both map to ${topics}: give one of them its own topic in the sink's table_topics (table_topics: {"${name}": "<topic>"}), or send every table to one topic with topic`,
        { retriable: false, details: { topic, tables: `${other.table},${name}` } },
      );
    }
    known.set(slot, { table: name, topic });
  }
  return known;
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
  return messageKeyOf(event.table, columns)(event);
}

/**
 * `messageKey` for the events of one table shape, with the key columns' types looked up once
 * instead of per event: what the sink uses on its hot path.
 */
export function messageKeyOf(
  table: Pick<TableSchema, 'columns'>,
  columns: readonly string[],
): (event: ChangeEvent) => Buffer | null {
  if (columns.length === 0) return () => null;
  const names = [...columns];
  const types = names.map((name) => table.columns.find((c) => c.name === name)?.type);
  return (event) => {
    if (event.op === 'truncate') return null;
    let text = '[';
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const image = newestImageWith(event, name);
      if (i > 0) text += ',';
      text += canonicalKeyValue(types[i], image ? image[name] : null, name);
    }
    return Buffer.from(`${text}]`, 'utf8');
  };
}

/** The newest of the event's images that has the column: `after`, then `before`, then `key`. */
function newestImageWith(event: ChangeEvent, name: string): Row | undefined {
  if (event.after !== undefined && Object.hasOwn(event.after, name)) return event.after;
  if (event.before !== undefined && Object.hasOwn(event.before, name)) return event.before;
  if (event.key !== undefined && Object.hasOwn(event.key, name)) return event.key;
  return undefined;
}
