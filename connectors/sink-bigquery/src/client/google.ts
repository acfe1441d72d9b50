import { readFileSync } from 'node:fs';
import { BigQuery } from '@google-cloud/bigquery';
import { managedwriter } from '@google-cloud/bigquery-storage';
import { NanosyncError } from '@nanosync/core';
import type { BigQuerySinkConfig } from '../config.js';
import type { RowDescriptor } from '../write/proto-rows.js';
import type { AppendOutcome, BigQueryPort, DatasetInfo, QueryOptions, TableInfo } from './port.js';
import { BigQueryErrorCode } from '../errors.js';

type Writer = InstanceType<typeof managedwriter.Writer>;
type StreamConnection = Awaited<ReturnType<InstanceType<typeof managedwriter.WriterClient>['createStreamConnection']>>;

/**
 * The port on Google's clients: `@google-cloud/bigquery` (REST: datasets, tables, query
 * jobs) and `@google-cloud/bigquery-storage`'s managed writer (gRPC: the Storage Write API
 * default stream, one connection per table). Credentials come from `credentials_file`,
 * `credentials_json` or Application Default Credentials; they are handed to the clients
 * and never kept or printed here.
 */
export class GoogleBigQuery implements BigQueryPort {
  private readonly bigquery: BigQuery;
  private readonly writerClient: InstanceType<typeof managedwriter.WriterClient>;
  private readonly writers = new Map<string, { connection: StreamConnection; writer: Writer; descriptor: string }>();

  constructor(private readonly config: BigQuerySinkConfig) {
    const auth = authOptions(config);
    this.bigquery = new BigQuery({
      projectId: config.projectId,
      ...(config.location ? { location: config.location } : {}),
      ...auth,
    });
    this.writerClient = new managedwriter.WriterClient({ projectId: config.projectId, ...auth });
  }

  async getDataset(): Promise<DatasetInfo | undefined> {
    try {
      const [metadata] = await this.bigquery.dataset(this.config.datasetId).getMetadata();
      return { location: String(metadata.location ?? '') };
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  async getTable(tableId: string): Promise<TableInfo | undefined> {
    try {
      const [metadata] = await this.bigquery.dataset(this.config.datasetId).table(tableId).getMetadata();
      const info: TableInfo = {
        fields: (metadata.schema?.fields ?? []).map(
          (f: { name: string; type?: string; mode?: string; precision?: string; scale?: string }) => ({
            name: f.name,
            type: f.type,
            mode: f.mode,
            precision: f.precision,
            scale: f.scale,
          }),
        ),
        primaryKey: metadata.tableConstraints?.primaryKey?.columns ?? [],
      };
      if (metadata.maxStaleness) info.maxStaleness = String(metadata.maxStaleness);
      return info;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  async query(sql: string, options: QueryOptions = {}): Promise<void> {
    const [job] = await this.bigquery.createQueryJob({
      query: sql,
      useLegacySql: false,
      ...(this.config.location ? { location: this.config.location } : {}),
      ...(options.params ? { params: options.params } : {}),
    });
    let pageToken: string | undefined;
    do {
      const [rows, next] = await job.getQueryResults({
        autoPaginate: false,
        maxResults: 10_000,
        ...(pageToken ? { pageToken } : {}),
      });
      if (options.onRows && rows.length > 0) await options.onRows(rows as Record<string, unknown>[]);
      pageToken = (next as { pageToken?: string } | null | undefined)?.pageToken;
    } while (pageToken);
  }

  async append(tableId: string, descriptor: RowDescriptor, rows: Uint8Array[]): Promise<AppendOutcome> {
    const writer = await this.writerFor(tableId, descriptor);
    const pending = writer.appendRows({ serializedRows: rows });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // The connection may be wedged: the retry opens a new one. A late acknowledgement of
        // this request only repeats rows, which every write method tolerates.
        this.dropWriter(tableId);
        reject(Object.assign(new Error(`no acknowledgement within ${this.config.requestTimeoutMs} ms`), { code: 4 }));
      }, this.config.requestTimeoutMs);
    });
    const response = await Promise.race([pending.getResult(), timeout]).finally(() => clearTimeout(timer));
    const rowErrors = (response.rowErrors ?? []).map((e) => ({
      index: Number(e.index ?? 0),
      message: String(e.message ?? ''),
    }));
    if (response.error && rowErrors.length === 0) {
      throw Object.assign(new Error(response.error.message ?? 'append failed'), { code: response.error.code ?? 2 });
    }
    return { rowErrors };
  }

  async close(): Promise<void> {
    for (const { writer } of this.writers.values()) writer.close();
    this.writers.clear();
    this.writerClient.close();
  }

  private dropWriter(tableId: string): void {
    const entry = this.writers.get(tableId);
    if (!entry) return;
    this.writers.delete(tableId);
    try {
      entry.writer.close();
    } catch {
      // already closed
    }
  }

  private async writerFor(tableId: string, descriptor: RowDescriptor): Promise<Writer> {
    const text = JSON.stringify(descriptor);
    const existing = this.writers.get(tableId);
    if (existing) {
      if (existing.descriptor !== text) {
        existing.writer.setProtoDescriptor(descriptor);
        existing.descriptor = text;
      }
      return existing.writer;
    }
    const destinationTable = `projects/${this.config.projectId}/datasets/${this.config.datasetId}/tables/${tableId}`;
    const connection = await this.writerClient.createStreamConnection({
      streamType: managedwriter.DefaultStream,
      destinationTable,
    });
    // Errors of the connection reach the pending writes; an unheard 'error' event must not crash the process.
    connection.onConnectionError(() => {});
    const writer = new managedwriter.Writer({ connection, protoDescriptor: descriptor });
    this.writers.set(tableId, { connection, writer, descriptor: text });
    return writer;
  }
}

/** Client options for the configured credentials; none means Application Default Credentials. */
function authOptions(config: BigQuerySinkConfig): { keyFilename?: string; credentials?: Record<string, unknown> } {
  if (config.credentialsFile) {
    try {
      JSON.parse(readFileSync(config.credentialsFile, 'utf8'));
    } catch (err) {
      throw new NanosyncError(
        BigQueryErrorCode.BigQueryAuth,
        `credentials_file ${config.credentialsFile} is not readable JSON (${(err as NodeJS.ErrnoException).code ?? 'parse error'}); ` +
          'create a key with: gcloud iam service-accounts keys create KEY.json --iam-account=SA_EMAIL',
        { retriable: false },
      );
    }
    return { keyFilename: config.credentialsFile };
  }
  if (config.credentialsJson) return { credentials: JSON.parse(config.credentialsJson) as Record<string, unknown> };
  return {};
}
