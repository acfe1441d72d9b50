import protobuf from 'protobufjs';
import type { AppendOutcome, BigQueryPort, DatasetInfo, QueryOptions, TableInfo } from '../../src/client/port.js';
import type { RowDescriptor } from '../../src/write/proto-rows.js';

/**
 * FakeBigQuery: an in-memory stand-in for the sink's BigQuery port, for the write path's
 * control flow only (which calls happen in which order, retries, refused rows). It does not
 * parse SQL and does not apply CDC or MERGE semantics, so nothing it shows is evidence that
 * data lands correctly in BigQuery — the live suite is.
 */
const TYPES: Record<number, string> = { 1: 'double', 3: 'int64', 5: 'int32', 8: 'bool', 9: 'string', 12: 'bytes' };

export interface RecordedAppend {
  tableId: string;
  rows: Record<string, unknown>[];
}

export class FakeBigQuery implements BigQueryPort {
  dataset: DatasetInfo | undefined = { location: 'US' };
  readonly tables = new Map<string, TableInfo>();
  readonly queries: { sql: string; params?: Record<string, string> }[] = [];
  readonly appends: RecordedAppend[] = [];
  /** Everything in call order, for ordering assertions. */
  readonly calls: string[] = [];
  /** Rows handed to `onRows` of the next SELECT. */
  selectRows: Record<string, unknown>[] = [];
  private readonly failures: { op: 'append' | 'query'; error: unknown; times: number }[] = [];
  rowErrorsOnce: { index: number; message: string }[] | undefined;
  closed = false;

  failNext(op: 'append' | 'query', error: unknown, times = 1): void {
    this.failures.push({ op, error, times });
  }

  async getDataset(): Promise<DatasetInfo | undefined> {
    return this.dataset;
  }

  async getTable(tableId: string): Promise<TableInfo | undefined> {
    return this.tables.get(tableId);
  }

  async query(sql: string, options: QueryOptions = {}): Promise<void> {
    this.calls.push(`query:${sql.split('\n')[0]}`);
    this.maybeFail('query');
    this.queries.push(options.params ? { sql, params: options.params } : { sql });
    const created = /^CREATE TABLE IF NOT EXISTS `[^.]+\.[^.]+\.([^`]+)`/.exec(sql);
    if (created?.[1]) this.tables.set(created[1], { fields: [], primaryKey: [] });
    if (/^SELECT /.test(sql) && options.onRows && this.selectRows.length > 0) await options.onRows(this.selectRows);
  }

  async append(tableId: string, descriptor: RowDescriptor, rows: Uint8Array[]): Promise<AppendOutcome> {
    this.calls.push(`append:${tableId}`);
    this.maybeFail('append');
    if (this.rowErrorsOnce) {
      const rowErrors = this.rowErrorsOnce;
      this.rowErrorsOnce = undefined;
      return { rowErrors };
    }
    const type = new protobuf.Type(descriptor.name);
    for (const f of descriptor.field)
      type.add(new protobuf.Field(f.name, f.number, TYPES[f.type] as string, f.label === 3 ? 'repeated' : 'optional'));
    new protobuf.Root().add(type);
    const names = new Map(
      descriptor.field.map((f) => [
        f.name,
        (f.options?.['.google.cloud.bigquery.storage.v1.columnName'] as string | undefined) ?? f.name,
      ]),
    );
    const decoded = rows.map((bytes) => {
      const object = type.toObject(type.decode(bytes), { longs: String, bytes: Array });
      return Object.fromEntries(Object.entries(object).map(([k, v]) => [names.get(k) ?? k, v]));
    });
    this.appends.push({ tableId, rows: decoded });
    return { rowErrors: [] };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private maybeFail(op: 'append' | 'query'): void {
    const failure = this.failures.find((f) => f.op === op && f.times > 0);
    if (failure) {
      failure.times--;
      throw failure.error;
    }
  }
}
