import type { ExistingField } from '../schema/target-table.js';
import type { RowDescriptor } from '../write/proto-rows.js';

/**
 * The few BigQuery operations the sink needs, so that the write path's control flow can be
 * exercised without Google (with a stand-in whose name says it is fake). The real
 * implementation is {@link GoogleBigQuery}; nothing in the sink talks to the clients directly.
 */
export interface TableInfo {
  fields: ExistingField[];
  primaryKey: string[];
  /** `max_staleness` as the API reports it (`0-0 0 0:15:0`), or undefined. */
  maxStaleness?: string;
}

export interface DatasetInfo {
  location: string;
}

/** One row the Storage Write API refused (index into the request's rows). */
export interface RowError {
  index: number;
  message: string;
}

export interface AppendOutcome {
  /** Rows BigQuery refused; the request then wrote nothing. */
  rowErrors: RowError[];
}

export interface QueryOptions {
  /** Named string parameters (`@name`). */
  params?: Record<string, string>;
  /** Called with each page of result rows; pages keep memory bounded. */
  onRows?: (rows: Record<string, unknown>[]) => Promise<void> | void;
}

export interface BigQueryPort {
  /** The dataset, or undefined when it does not exist. */
  getDataset(): Promise<DatasetInfo | undefined>;
  /** The table's schema, or undefined when it does not exist. */
  getTable(tableId: string): Promise<TableInfo | undefined>;
  /** Runs a statement (DDL, DML or SELECT) as a query job and waits for it to finish. */
  query(sql: string, options?: QueryOptions): Promise<void>;
  /**
   * Appends serialized rows to the table's default stream and resolves when BigQuery has
   * acknowledged them (committed). `descriptor` describes the rows; it is sent with the
   * first request of a connection and whenever it changes.
   */
  append(tableId: string, descriptor: RowDescriptor, rows: Uint8Array[]): Promise<AppendOutcome>;
  close(): Promise<void>;
}
