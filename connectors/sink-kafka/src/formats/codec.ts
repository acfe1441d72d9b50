import {
  type ChangeEvent,
  type ChangeOp,
  NanosyncError,
  type Row,
  type TableSchema,
  qualifiedName,
} from '@nanosync/core';
import { ValueError } from './json-values.js';
import { canonicalKeyValue } from './key.js';
import { KafkaErrorCode } from '../errors.js';

export const MESSAGE_FORMATS = ['json', 'avro', 'protobuf', 'cloudevents'] as const;
export type MessageFormat = (typeof MESSAGE_FORMATS)[number];

/** A Kafka record value produced from one change event. */
export interface EncodedMessage {
  value: Buffer;
  /** Format-specific headers (CloudEvents sets `content-type`). */
  headers?: Record<string, string>;
}

/** A change event read back from a record value: what a consumer of the topic sees. */
export interface DecodedChange {
  op: ChangeOp;
  /** `schema.table` */
  table: string;
  /** The source position of the event (`_ns_lsn`). */
  position: string;
  /** Commit time as canonical timestamptz text (microseconds, `Z`); absent for snapshot rows. */
  commitTime?: string;
  unchanged?: string[];
  before?: Row;
  after?: Row;
  /** Only for `truncate`: the statement's CASCADE and RESTART IDENTITY. */
  truncate?: { cascade: boolean; restartIdentity: boolean };
}

export interface DecodeOptions {
  /**
   * The table's schema. Avro and Protobuf messages carry their own and ignore it; JSON and
   * CloudEvents need it to turn base64 back into bytes and `"NaN"` back into a float. Without
   * it those formats return values as they appear in the JSON.
   */
  table?: TableSchema;
}

/**
 * The two-function contract every message format implements. `encode` is called once per
 * event, in order, on the hot path: it must not block and should cache whatever it derives
 * from a table schema. `decode` is its exact inverse on the values: `decode(encode(e))`
 * gives back `e`'s op, table, position, commit time, unchanged columns and row images.
 */
export interface MessageCodec {
  readonly format: MessageFormat;
  encode(event: ChangeEvent): EncodedMessage;
  decode(value: Uint8Array, options?: DecodeOptions): DecodedChange;
}

export const OP_NAMES: Record<ChangeOp, string> = {
  insert: 'INSERT',
  update: 'UPDATE',
  delete: 'DELETE',
  read: 'READ',
  truncate: 'TRUNCATE',
};

/** A truncate's flags, false when the source did not say. */
export function truncateFlags(event: ChangeEvent): { cascade: boolean; restartIdentity: boolean } {
  return { cascade: event.truncate?.cascade ?? false, restartIdentity: event.truncate?.restartIdentity ?? false };
}
const OPS_BY_NAME = new Map(Object.entries(OP_NAMES).map(([op, name]) => [name, op as ChangeOp]));

export function opFromName(name: unknown): ChangeOp {
  const op = typeof name === 'string' ? OPS_BY_NAME.get(name) : undefined;
  if (!op)
    throw new NanosyncError(
      KafkaErrorCode.KafkaEncode,
      `not a nanosync message: unknown operation ${JSON.stringify(name)}`,
    );
  return op;
}

/** The row image a message carries as `before`: a delete without an old image still names its key. */
export function beforeImage(event: ChangeEvent): Row | undefined {
  return event.before ?? (event.op === 'delete' ? event.key : undefined);
}

/**
 * The event's key as compact JSON text with column names and canonical key values
 * (`{"id":10}`), for error messages, the CloudEvents `subject` and ids.
 */
export function keyText(event: ChangeEvent): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(event.key)) {
    const column = event.table.columns.find((c) => c.name === name);
    let text: string;
    try {
      text = canonicalKeyValue(column?.type, value, name);
    } catch {
      text = JSON.stringify(String(value));
    }
    parts.push(`${JSON.stringify(name)}:${text}`);
  }
  return `{${parts.join(',')}}`;
}

/** Wrap anything thrown while encoding into the error core shows for the pipeline. */
export function encodeError(format: MessageFormat, event: ChangeEvent, err: unknown): NanosyncError {
  if (err instanceof NanosyncError) return err;
  const column = err instanceof ValueError ? err.column : undefined;
  const table = qualifiedName(event.table);
  const key = keyText(event);
  const where = column === undefined ? '' : ` column "${column}"`;
  return new NanosyncError(
    KafkaErrorCode.KafkaEncode,
    `cannot encode ${format} message for table "${table}"${where} key ${key} at position ${event.position}: ${(err as Error)?.message ?? String(err)}`,
    { cause: err, retriable: false, details: { table, column, key, position: event.position } },
  );
}
