/**
 * The change stream's raw batches (`ChangeBatch.raw`), for the pipeline's worker threads.
 *
 * With `raw` the replication session leaves Insert, Update and Delete messages undecoded
 * ({@link RawChangeMessage}: the message's bytes, copied where they arrived). The stream puts
 * each in its batch as a {@link pendingChange}: an event that knows its place (position, commit
 * time, table) but not its values. When the batch leaves the stream ({@link finishBatch}) and all
 * its events are pending, they are packed into one buffer of the batch's own, with the relations
 * they use as its setup, and the batch goes to core raw; a worker decodes it with
 * {@link createChangeDecoder}, which gives exactly the events the stream decodes itself (the same
 * `decodePgOutput` and `insertEvent` / `updateEvent` / `deleteEvent`). A batch that mixes them
 * with other events (a TRUNCATE, rows of an attached partition) is decoded here, in order.
 *
 * Pack, per change: u16 relation slot (index into the setup's relations), u8 position length,
 * position (latin1), u8 commit time length, commit time, u32 message length, the message
 * (little-endian lengths). Relations go in the setup with a key unique in this process per
 * relation version, so a worker decodes with one cached relation per version.
 */
import { type ChangeBatch, type ChangeEvent, NanosyncError, type RawChanges, type TableSchema } from '@nanosync/core';
import { PgErrorCode } from '../errors.js';
import { deleteEvent, type EventContext, insertEvent, updateEvent } from './change-events.js';
import { decodePgOutput, TAG_DELETE, TAG_INSERT, TAG_UPDATE } from './pgoutput.js';
import type { StreamRelation } from './relations.js';

/** An Insert, Update or Delete message the session left undecoded. */
export interface RawChangeMessage {
  tag: 'raw-change';
  relationId: number;
  /** The whole message, a copy of its own. */
  payload: Buffer;
}

/** Whether a message with this first byte is left undecoded in raw mode. */
export function isChangeTag(tag: number | undefined): boolean {
  return tag === TAG_INSERT || tag === TAG_UPDATE || tag === TAG_DELETE;
}

/**
 * A change message as it arrived: `data` from `start` to `end` (`data` may be the socket's
 * buffer, which is reused: the message is copied).
 */
export function rawChangeMessage(data: Buffer, start = 0, end = data.length): RawChangeMessage {
  const length = end - start;
  if (length < 5) throw new NanosyncError(PgErrorCode.PgProtocol, `pgoutput: a change message of ${length} bytes`);
  const payload = Buffer.allocUnsafe(length);
  data.copy(payload, 0, start, end);
  return { tag: 'raw-change', relationId: payload.readUInt32BE(1), payload };
}

const RAW: unique symbol = Symbol('nanosync raw change');

interface PendingChange extends ChangeEvent {
  [RAW]: { relation: StreamRelation; message: Buffer };
}

const OPS: Record<number, ChangeEvent['op']> = {
  [TAG_INSERT]: 'insert',
  [TAG_UPDATE]: 'update',
  [TAG_DELETE]: 'delete',
};
const NO_KEY = Object.freeze({}) as ChangeEvent['key'];

/** A change not decoded yet: its place in the stream and its message. */
export function pendingChange(relation: StreamRelation, message: RawChangeMessage, context: EventContext): ChangeEvent {
  const event: PendingChange = {
    op: OPS[message.payload[0]!]!,
    table: relation.table,
    key: NO_KEY,
    position: context.position,
    commitTime: context.commitTime,
    [RAW]: { relation, message: message.payload },
  };
  return event;
}

/** The event of a change message, decoded as the stream decodes it. */
export function decodeChange(relation: StreamRelation, payload: Buffer, context: EventContext): ChangeEvent {
  const message = decodePgOutput(payload);
  switch (message.tag) {
    case 'insert':
      return insertEvent(relation, message, context);
    case 'update':
      return updateEvent(relation, message, context);
    case 'delete':
      return deleteEvent(relation, message, context);
    default:
      throw new NanosyncError(PgErrorCode.PgProtocol, `pgoutput: a ${message.tag} message where a change was expected`);
  }
}

function decodePending(event: PendingChange): ChangeEvent {
  const { relation, message } = event[RAW];
  return decodeChange(relation, message, { position: event.position, commitTime: event.commitTime! });
}

const relationKeys = new WeakMap<StreamRelation, number>();
let nextRelationKey = 1;

function relationKey(relation: StreamRelation): number {
  let key = relationKeys.get(relation);
  if (key === undefined) {
    key = nextRelationKey++;
    relationKeys.set(relation, key);
  }
  return key;
}

/** The setup of a raw batch: the relations its changes use, by slot. */
export interface RawChangesSetup {
  relations: { key: number; relation: StreamRelation }[];
}

/**
 * A batch as it leaves the stream: raw when every event in it is pending, decoded when only
 * some are (`onMixed` is told), as it is otherwise.
 */
export function finishBatch(batch: ChangeBatch, onMixed: () => void): ChangeBatch {
  const events = batch.events;
  if (events.length === 0) return batch;
  let pending = 0;
  for (let i = 0; i < events.length; i++) if (RAW in events[i]!) pending++;
  if (pending === 0) return batch;
  if (pending < events.length) {
    onMixed();
    const decoded = events.map((e) => (RAW in e ? decodePending(e as PendingChange) : e));
    return batch.safePosition === undefined
      ? { events: decoded }
      : { events: decoded, safePosition: batch.safePosition };
  }
  const raw = pack(events as PendingChange[]);
  return batch.safePosition === undefined ? { events: [], raw } : { events: [], raw, safePosition: batch.safePosition };
}

function pack(events: readonly PendingChange[]): RawChanges {
  const slots = new Map<StreamRelation, number>();
  const setup: RawChangesSetup = { relations: [] };
  const tables: RawChanges['tables'] = [];
  const tableIndex = new Map<TableSchema, number>();
  let size = 0;
  for (const event of events) {
    const { relation, message } = event[RAW];
    if (!slots.has(relation)) {
      slots.set(relation, setup.relations.length);
      setup.relations.push({ key: relationKey(relation), relation });
    }
    const index = tableIndex.get(relation.table);
    if (index === undefined) {
      tableIndex.set(relation.table, tables.length);
      tables.push({ table: relation.table, events: 1 });
    } else tables[index]!.events++;
    size += 8 + event.position.length + event.commitTime!.length + message.length;
  }
  const bytes = new ArrayBuffer(size);
  const out = Buffer.from(bytes);
  let offset = 0;
  for (const event of events) {
    const { relation, message } = event[RAW];
    offset = out.writeUInt16LE(slots.get(relation)!, offset);
    offset = out.writeUInt8(event.position.length, offset);
    offset += out.write(event.position, offset, 'latin1');
    offset = out.writeUInt8(event.commitTime!.length, offset);
    offset += out.write(event.commitTime!, offset, 'latin1');
    offset = out.writeUInt32LE(message.length, offset);
    offset += message.copy(out, offset);
  }
  const last = events[events.length - 1]!;
  return {
    bytes,
    setup,
    count: events.length,
    first: events[0]!.position,
    last: last.position,
    commitTime: last.commitTime!,
    tables,
  };
}

/** Relations a decoder keeps (by key) before it forgets them all: more than any pipeline announces between two. */
const MAX_CACHED_RELATIONS = 4096;

/**
 * The relations of a batch's setup by slot, each the one this thread first saw for its key
 * (every batch of one relation version then shares one table schema object here).
 */
export function relationCache(): (setup: unknown) => StreamRelation[] {
  const cache = new Map<number, StreamRelation>();
  return (setup) =>
    (setup as RawChangesSetup).relations.map(({ key, relation }) => {
      let known = cache.get(key);
      if (known === undefined) {
        if (cache.size >= MAX_CACHED_RELATIONS) cache.clear();
        known = relation;
        cache.set(key, known);
      }
      return known;
    });
}

/**
 * A decoder of raw batches (`SourceWorkerModule.createChangeDecoder`): the events the stream
 * would have put in the batch, in order. Relations are cached by key, so every batch of one
 * relation version shares one table schema object in this thread.
 */
export function createChangeDecoder(): (raw: Uint8Array, setup: unknown) => ChangeEvent[] {
  const relationsOf = relationCache();
  return (raw, setup) => {
    const relations = relationsOf(setup);
    const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    const events: ChangeEvent[] = [];
    let offset = 0;
    while (offset < bytes.length) {
      const relation = relations[bytes.readUInt16LE(offset)];
      const positionLength = bytes.readUInt8(offset + 2);
      offset += 3;
      const position = bytes.toString('latin1', offset, offset + positionLength);
      offset += positionLength;
      const timeLength = bytes.readUInt8(offset);
      offset += 1;
      const commitTime = bytes.toString('latin1', offset, offset + timeLength);
      offset += timeLength;
      const length = bytes.readUInt32LE(offset);
      offset += 4;
      if (relation === undefined || offset + length > bytes.length)
        throw new NanosyncError(PgErrorCode.PgProtocol, 'a raw stream batch is cut short or names no relation');
      events.push(decodeChange(relation, bytes.subarray(offset, offset + length), { position, commitTime }));
      offset += length;
    }
    return events;
  };
}
