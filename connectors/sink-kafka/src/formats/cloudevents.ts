import { createHash } from 'node:crypto';
import { type ChangeEvent, qualifiedName } from '@nanosync/core';
import { CloudEvent, Kafka } from 'cloudevents';
import {
  type DecodeOptions,
  type DecodedChange,
  type MessageCodec,
  OP_NAMES,
  beforeImage,
  encodeError,
  keyText,
  opFromName,
  truncateFlags,
} from './codec.js';
import { rowFromJson, rowToJson } from './json-values.js';
import { commitTimeFromMicros, committedAtMicros, parseJson } from './json.js';

/**
 * CloudEvents 1.0 in structured mode (the whole event is the JSON record value, header
 * `content-type: application/cloudevents+json`), built and serialised by the official SDK.
 *
 *   type    io.nanosync.cdc.<INSERT|UPDATE|DELETE|READ|TRUNCATE>
 *   source  /nanosync/<schema>/<table>
 *   id      hex SHA-256 prefix of (table, position, key): a redelivered change keeps its id,
 *           so consumers can deduplicate on it
 *   time    the commit time (the SDK prints milliseconds; `nscommittedat` has the microseconds)
 *   subject the key columns and values as JSON (`{"id":10}`); absent on TRUNCATE
 *   data    { before, after } with the values of the JSON format; a TRUNCATE has
 *           { before: null, after: null, truncate: { cascade, restart_identity } }
 * Extensions: `nstable` (schema.table), `nsposition` (the position, as `_ns_lsn`),
 * `nscommittedat` (microseconds since the epoch, as text), `nsunchanged` (JSON array text,
 * only when the source left columns out).
 */

export const CLOUDEVENT_TYPE_PREFIX = 'io.nanosync.cdc.';

export function cloudEventId(event: ChangeEvent): string {
  return createHash('sha256')
    .update(qualifiedName(event.table))
    .update('\u0000')
    .update(event.position)
    .update('\u0000')
    .update(keyText(event))
    .digest('hex')
    .slice(0, 32);
}

function sourcePath(event: ChangeEvent): string {
  return `/nanosync/${encodeURIComponent(event.table.schema)}/${encodeURIComponent(event.table.name)}`;
}

export function toCloudEvent(event: ChangeEvent): CloudEvent<{ before: unknown; after: unknown; truncate?: unknown }> {
  const micros = committedAtMicros(event);
  const attributes: Record<string, unknown> = {
    specversion: '1.0',
    type: CLOUDEVENT_TYPE_PREFIX + OP_NAMES[event.op],
    source: sourcePath(event),
    id: cloudEventId(event),
    datacontenttype: 'application/json',
    data: { before: rowToJson(event.table, beforeImage(event)), after: rowToJson(event.table, event.after) },
    nstable: qualifiedName(event.table),
    nsposition: event.position,
  };
  if (event.op === 'truncate') {
    const { cascade, restartIdentity } = truncateFlags(event);
    attributes.data = { before: null, after: null, truncate: { cascade, restart_identity: restartIdentity } };
  } else {
    attributes.subject = keyText(event);
  }
  if (event.commitTime) attributes.time = event.commitTime;
  if (micros !== null) attributes.nscommittedat = String(micros);
  if (event.unchanged?.length) attributes.nsunchanged = JSON.stringify(event.unchanged);
  return new CloudEvent(attributes as ConstructorParameters<typeof CloudEvent>[0]) as CloudEvent<{
    before: unknown;
    after: unknown;
    truncate?: unknown;
  }>;
}

interface StructuredCloudEvent {
  type?: string;
  nstable?: string;
  nsposition?: string;
  nscommittedat?: string;
  nsunchanged?: string;
  data?: { before?: unknown; after?: unknown; truncate?: { cascade?: boolean; restart_identity?: boolean } };
}

export const cloudEventsCodec: MessageCodec = {
  format: 'cloudevents',
  encode(event) {
    try {
      const message = Kafka.structured(toCloudEvent(event));
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(message.headers))
        if (value !== undefined) headers[name] = String(value);
      return { value: Buffer.from(message.value as string, 'utf8'), headers };
    } catch (err) {
      throw encodeError('cloudevents', event, err);
    }
  },
  decode(value, options: DecodeOptions = {}) {
    const ce = parseJson(value, 'cloudevents') as StructuredCloudEvent;
    const type = String(ce.type ?? '');
    const decoded: DecodedChange = {
      op: opFromName(type.startsWith(CLOUDEVENT_TYPE_PREFIX) ? type.slice(CLOUDEVENT_TYPE_PREFIX.length) : type),
      table: String(ce.nstable ?? ''),
      position: String(ce.nsposition ?? ''),
    };
    const commitTime = commitTimeFromMicros(ce.nscommittedat);
    if (commitTime !== undefined) decoded.commitTime = commitTime;
    if (ce.nsunchanged) decoded.unchanged = JSON.parse(ce.nsunchanged) as string[];
    if (decoded.op === 'truncate') {
      decoded.truncate = {
        cascade: ce.data?.truncate?.cascade === true,
        restartIdentity: ce.data?.truncate?.restart_identity === true,
      };
    }
    const before = rowFromJson(options.table, ce.data?.before as never);
    const after = rowFromJson(options.table, ce.data?.after as never);
    if (before) decoded.before = before;
    if (after) decoded.after = after;
    return decoded;
  },
};

/** Read a structured CloudEvents record value back into a change. */
export function decodeCloudEventMessage(value: Uint8Array, options?: DecodeOptions): DecodedChange {
  return cloudEventsCodec.decode(value, options);
}
