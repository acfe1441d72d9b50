import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { type ChangeEvent, ErrorCode, NanosyncError, type Row, type Sink, type TableSchema } from '@nanosync/core';
import type { SqliteSinkConfig } from './config.js';
import { BadValue, type SqliteValue, sqliteType, toSqlite } from './values.js';

/** `"a""b"`: SQLite identifiers are quoted, with `"` doubled, so any name is only ever a name. */
const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The SQLite table a source table lands in: `schema.name` as one quoted identifier. */
export const targetTable = (table: { schema: string; name: string }) => quote(`${table.schema}.${table.name}`);

/**
 * Keeps every source table as a SQLite table with the same key: inserts and updates are
 * upserts, deletes delete, a truncate empties the table. Each `write()` is one SQLite
 * transaction committed with `synchronous=FULL` in WAL mode, so when it resolves the
 * events are on disk; a replay after a crash upserts the same rows again and changes nothing.
 */
export class SqliteSink implements Sink {
  readonly #path: string;
  #db: DatabaseSync | undefined;
  readonly #statements = new Map<string, StatementSync>();

  constructor(config: SqliteSinkConfig) {
    this.#path = resolve(config.path);
  }

  async open(tables: TableSchema[]): Promise<void> {
    const db = this.#connect();
    for (const table of tables) {
      if (table.keyColumns.length === 0)
        throw new NanosyncError(
          ErrorCode.SinkWriteFailed,
          `sqlite sink: table "${table.schema}.${table.name}" has no key columns; this sink keeps rows by key`,
        );
      const columns = table.columns.map((c) => `${quote(c.name)} ${sqliteType(c.type)}`);
      const key = table.keyColumns.map(quote).join(', ');
      db.exec(`CREATE TABLE IF NOT EXISTS ${targetTable(table)} (${columns.join(', ')}, PRIMARY KEY (${key}))`);
    }
  }

  async write(events: ChangeEvent[]): Promise<void> {
    const db = this.#connect();
    // Convert every value first: a bad one fails the batch before anything is written.
    const rows = events.map((event) => this.#convert(event));
    db.exec('BEGIN IMMEDIATE');
    try {
      for (const [i, event] of events.entries()) this.#apply(event, rows[i]!);
      db.exec('COMMIT');
    } catch (error) {
      db.exec('ROLLBACK');
      throw new NanosyncError(ErrorCode.SinkWriteFailed, `sqlite sink: writing to ${this.#path} failed`, {
        cause: error,
        retriable: true,
      });
    }
  }

  async close(): Promise<void> {
    this.#statements.clear();
    this.#db?.close();
    this.#db = undefined;
  }

  #connect(): DatabaseSync {
    if (!this.#db) {
      mkdirSync(dirname(this.#path), { recursive: true });
      this.#db = new DatabaseSync(this.#path);
      // WAL + FULL: a commit returns only after the log is fsynced.
      this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL');
    }
    return this.#db;
  }

  /** The event's new row image as SQLite values (columns the source left out are skipped). */
  #convert(event: ChangeEvent): Map<string, SqliteValue> {
    const out = new Map<string, SqliteValue>();
    if (!event.after) return out;
    for (const column of event.table.columns) {
      if (!(column.name in event.after) || event.unchanged?.includes(column.name)) continue;
      try {
        out.set(column.name, toSqlite(column, event.after[column.name]));
      } catch (error) {
        if (!(error instanceof BadValue)) throw error;
        throw new NanosyncError(
          ErrorCode.SinkWriteFailed,
          `sqlite sink: table "${event.table.schema}.${event.table.name}" column "${error.column}" key ${JSON.stringify(event.key)}: ${error.message}`,
          { retriable: false },
        );
      }
    }
    return out;
  }

  #apply(event: ChangeEvent, values: Map<string, SqliteValue>): void {
    const table = event.table;
    switch (event.op) {
      case 'truncate':
        this.#statement(`DELETE FROM ${targetTable(table)}`).run();
        return;
      case 'delete':
        this.#deleteKey(table, event.key);
        return;
      default: {
        // An update that changed the key moved the row: remove it under the old key.
        if (event.op === 'update' && event.before && table.keyColumns.every((c) => event.before![c] !== undefined)) {
          const oldKey = Object.fromEntries(table.keyColumns.map((c) => [c, event.before![c]!])) as Row;
          if (JSON.stringify(oldKey) !== JSON.stringify(event.key)) this.#deleteKey(table, oldKey);
        }
        const columns = [...values.keys()];
        const updates = columns.filter((c) => !table.keyColumns.includes(c));
        const sql =
          `INSERT INTO ${targetTable(table)} (${columns.map(quote).join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) ` +
          `ON CONFLICT (${table.keyColumns.map(quote).join(', ')}) DO ` +
          (updates.length === 0
            ? 'NOTHING'
            : `UPDATE SET ${updates.map((c) => `${quote(c)} = excluded.${quote(c)}`).join(', ')}`);
        this.#statement(sql).run(...values.values());
      }
    }
  }

  #deleteKey(table: TableSchema, key: Row): void {
    const where = table.keyColumns.map((c) => `${quote(c)} = ?`).join(' AND ');
    const values = table.keyColumns.map((c) => {
      const column = table.columns.find((col) => col.name === c)!;
      return toSqlite(column, key[c] ?? null);
    });
    this.#statement(`DELETE FROM ${targetTable(table)} WHERE ${where}`).run(...values);
  }

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db!.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }
}
