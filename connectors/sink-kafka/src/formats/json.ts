import { type ChangeEvent, NanosyncError, qualifiedName } from '@nanosync/core';
import {
  type DecodeOptions,
  type DecodedChange,
  type MessageCodec,
  OP_NAMES,
  beforeImage,
  encodeError,
  opFromName,
  truncateFlags,
} from './codec.js';
import { type JsonValue, rowFromJson, rowToJson } from './json-values.js';
import { jsonEnvelopeText } from './json-writer.js';
import { commitTimeToMicros, microsToTimestamp } from './temporal.js';
import { KafkaErrorCode } from '../errors.js';

/**
 * The JSON envelope:
 *
 *   { "_ns_op": "INSERT" | "UPDATE" | "DELETE" | "READ" | "TRUNCATE",
 *     "_ns_table": "schema.table",
 *     "_ns_committed_at": <microseconds since the epoch> | null,
 *     "_ns_lsn": "<source position>",
 *     "_ns_unchanged": ["col", …],          only when the source left columns out
 *     "_ns_truncate": { "cascade": bool, "restart_identity": bool },   only on TRUNCATE
 *     "before": { … } | null,
 *     "after":  { … } | null }
 *
 * Values follow json-values.ts: int64 and decimal as strings, bytes as base64, float
 * specials as strings, everything temporal in its canonical text.
 */
export interface JsonEnvelope {
  _ns_op: string;
  _ns_table: string;
  _ns_committed_at: number | string | null;
  _ns_lsn: string;
  _ns_unchanged?: string[];
  _ns_truncate?: { cascade: boolean; restart_identity: boolean };
  before: Record<string, JsonValue> | null;
  after: Record<string, JsonValue> | null;
}

/** Microseconds as a JSON number while exact (until the year 2255), else as a string. */
export function committedAtMicros(event: ChangeEvent): number | string | null {
  return commitTimeMicros(event.commitTime);
}

/** `committedAtMicros` of an event with this commit time. */
export function commitTimeMicros(commitTime: string | undefined): number | string | null {
  if (!commitTime) return null;
  // Every event of a transaction carries the same commit time: parsed once, not per event.
  if (commitTime === lastCommitTime) return lastCommittedAt;
  const exact = commitTimeMicrosFast(commitTime);
  let result: number | string | null;
  if (exact !== undefined) result = exact;
  else {
    const micros = commitTimeToMicros(commitTime);
    result = micros === undefined ? null : Number.isSafeInteger(Number(micros)) ? Number(micros) : micros.toString();
  }
  lastCommitTime = commitTime;
  lastCommittedAt = result;
  return result;
}
let lastCommitTime: string | undefined;
let lastCommittedAt: number | string | null = null;

/** The `YYYY-MM-DDTHH:MM:SS` of the last commit time parsed in full, and its microseconds. */
let lastSecond = '';
let lastSecondMicros = 0;

/**
 * The microseconds of a commit time in the form the sources write
 * (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) when its second is the last one parsed in full: only the six
 * digits of the fraction are read. With one-change transactions every event has its own
 * commit time, and the full parse (a regular expression, BigInt arithmetic) with the text the
 * envelope made of it were 6% of a backlog drain's main thread (apps/bench/README.md, "Less
 * work per transaction in the change stream"). Undefined when the text is in another
 * form or its second is outside the exact range of a number: the full parse decides then.
 */
function commitTimeMicrosFast(commitTime: string): number | undefined {
  if (commitTime.length !== 27 || commitTime.charCodeAt(19) !== 46 || commitTime.charCodeAt(26) !== 90)
    return undefined;
  let fraction = 0;
  for (let i = 20; i < 26; i++) {
    const digit = commitTime.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    fraction = fraction * 10 + digit;
  }
  if (!commitTime.startsWith(lastSecond) || lastSecond === '') {
    const second = commitTime.slice(0, 19);
    const micros = commitTimeToMicros(`${second}Z`);
    if (micros === undefined || !Number.isSafeInteger(Number(micros) + 999_999)) return undefined;
    lastSecond = second;
    lastSecondMicros = Number(micros);
  }
  return lastSecondMicros + fraction;
}

export function commitTimeFromMicros(value: unknown): string | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  return microsToTimestamp(BigInt(value as string | number), true);
}

export function toEnvelope(event: ChangeEvent): JsonEnvelope {
  const envelope: JsonEnvelope = {
    _ns_op: OP_NAMES[event.op],
    _ns_table: qualifiedName(event.table),
    _ns_committed_at: committedAtMicros(event),
    _ns_lsn: event.position,
    before: rowToJson(event.table, beforeImage(event)),
    after: rowToJson(event.table, event.after),
  };
  if (event.unchanged?.length) {
    const { before, after, ...head } = envelope;
    return { ...head, _ns_unchanged: [...event.unchanged], before, after };
  }
  if (event.op === 'truncate') {
    const { cascade, restartIdentity } = truncateFlags(event);
    const { before, after, ...head } = envelope;
    return { ...head, _ns_truncate: { cascade, restart_identity: restartIdentity }, before, after };
  }
  return envelope;
}

export function fromEnvelope(envelope: JsonEnvelope, options: DecodeOptions = {}): DecodedChange {
  const decoded: DecodedChange = {
    op: opFromName(envelope._ns_op),
    table: envelope._ns_table,
    position: envelope._ns_lsn,
  };
  const commitTime = commitTimeFromMicros(envelope._ns_committed_at);
  if (commitTime !== undefined) decoded.commitTime = commitTime;
  if (envelope._ns_unchanged?.length) decoded.unchanged = envelope._ns_unchanged;
  if (decoded.op === 'truncate') {
    decoded.truncate = {
      cascade: envelope._ns_truncate?.cascade === true,
      restartIdentity: envelope._ns_truncate?.restart_identity === true,
    };
  }
  const before = rowFromJson(options.table, envelope.before);
  const after = rowFromJson(options.table, envelope.after);
  if (before) decoded.before = before;
  if (after) decoded.after = after;
  return decoded;
}

export function parseJson(value: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8'));
  } catch (err) {
    throw new NanosyncError(KafkaErrorCode.KafkaEncode, `not a nanosync ${what} message: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export const jsonCodec: MessageCodec = {
  format: 'json',
  encode(event) {
    try {
      return { value: Buffer.from(jsonEnvelopeText(event), 'utf8') };
    } catch (err) {
      throw encodeError('json', event, err);
    }
  },
  decode(value, options) {
    return fromEnvelope(parseJson(value, 'json') as JsonEnvelope, options);
  },
};

/** Read a JSON-format record value back into a change; pass the table schema for exact values. */
export function decodeJsonMessage(value: Uint8Array, options?: DecodeOptions): DecodedChange {
  return jsonCodec.decode(value, options);
}
