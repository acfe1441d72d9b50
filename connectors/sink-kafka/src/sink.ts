import {
  type ChangeEvent,
  type CheckResult,
  type ConnectorContext,
  type DeadLetter,
  type DeadLetterTarget,
  blamingError,
  deadLetterJson,
  type EncodedBatch,
  type EncodedEvents,
  ErrorCode,
  eventError,
  eventIndexOf,
  type Logger,
  NanosyncError,
  recordError,
  type Sink,
  type TableRef,
  type TableSchema,
  qualifiedName,
} from '@nanosync/core';
import type { KafkaSinkConfig } from './config.js';
import { type EncodedMessage, keyText } from './formats/codec.js';
import { codecFor } from './formats/index.js';
import { createHash } from 'node:crypto';
import { kafkaChecks } from './check.js';
import { KafkaErrorCode, transactionRetriesExhausted } from './errors.js';
import {
  KafkaProducer,
  type OutgoingMessage,
  type RecordHeaders,
  type TransactionSettings,
  headersSize,
  recordSize,
} from './producer.js';
import { checkTopicCollisions, keyColumnsFor, messageKeyOf, topicFor } from './routing.js';
import { SchemaRegistryClient, registryError } from './registry/client.js';
import { RegistryCodec } from './registry/codec.js';
import { type FramedRecord, type FramedRecords, readFramed } from './encoded.js';
import { FramedRun } from './packed-records.js';

/** Headers on every record, so consumers can route and order without decoding the value. */
export const HEADER_TABLE = 'ns-table';
export const HEADER_OP = 'ns-op';
export const HEADER_POSITION = 'ns-position';
/** On snapshot records: the id of the chunk they were read in (the same when a chunk is read again after a crash). */
export const HEADER_CHUNK = 'ns-chunk';

/** Test seams of the Kafka sink, never set by nanosync itself. */
export interface KafkaSinkTestOptions {
  /**
   * Produce requests the sink keeps outstanding at once (default 1). More than one is not safe
   * with @platformatic/kafka 2.12.1 (see *One request in flight* in the README); the soak test
   * `inflight-soak.test.ts` sets it to show why. `delivery: exactly_once` always sends one at a time.
   */
  requestsInFlight?: number;
  /**
   * Instead of a client of `schema_registry_url`: the worker encoder's, which answers from the
   * ids the main thread registered (and the unit tests' in-memory registry).
   */
  registryClient?: SchemaRegistryClient;
}

/**
 * The Kafka sink. Each `write` turns events into records (one per event, plus a tombstone
 * after each delete when enabled), sends them in order in chunks of at most
 * `max_bytes_in_flight` bytes, and resolves only when the broker acknowledged all of them
 * with acks=all. Events of one row share a message key, hence a partition, hence their
 * order. A failed write leaves nothing to clean up: core retries the batch (retriable
 * errors) or marks the pipeline ERRORED, and a replay only repeats records, never skips.
 */
export class KafkaSink implements Sink {
  private readonly producer: KafkaProducer;
  private readonly codec;
  private readonly logger: Logger;
  /** Per table shape: its topic, name and key, worked out once (`routeOf`), not per event. */
  private readonly routes = new WeakMap<TableSchema, TableRoute>();
  /** Every table routed so far and its topic, to refuse two tables on one topic. */
  private readonly routedTables = new Map<string, { table: string; topic: string }>();
  private opened = false;
  private readonly exactlyOnce: boolean;
  /** With exactly_once: the last snapshot chunk committed is kept in the transaction and skipped when read again. */
  readonly skipsCommittedChunk: boolean;
  /** Set with `schema_registry_url`: Avro / Protobuf in the Confluent wire format. */
  private readonly registryClient: SchemaRegistryClient | undefined;
  private readonly registry: RegistryCodec | undefined;

  /** Produce requests `write()` and `writeEncoded()` keep outstanding; 1 outside tests (see *One request in flight* in the README). */
  private readonly requestsInFlight: number;
  /** Schema ids this sink registered, by subject and schema text: what `encoderSetup` hands a worker. */
  private readonly registeredIds = new Map<string, number>();

  constructor(
    private readonly config: KafkaSinkConfig,
    context: ConnectorContext,
    producer?: KafkaProducer,
    options: KafkaSinkTestOptions = {},
  ) {
    this.logger = context.logger.child({ sink: 'kafka' });
    const inFlight = options.requestsInFlight ?? 1;
    if (!Number.isInteger(inFlight) || inFlight < 1)
      throw new NanosyncError(
        ErrorCode.Internal,
        `Kafka sink requestsInFlight must be a whole number ≥ 1, got ${inFlight}`,
      );
    this.requestsInFlight = inFlight;
    this.codec = codecFor(config.messageFormat);
    if (config.schemaRegistry && (config.messageFormat === 'avro' || config.messageFormat === 'protobuf')) {
      this.registryClient = recordingIds(
        options.registryClient ?? new SchemaRegistryClient(config.schemaRegistry),
        this.registeredIds,
      );
      this.registry = new RegistryCodec(
        config.messageFormat,
        this.registryClient,
        config.schemaRegistry.subjectStrategy,
      );
    }
    this.exactlyOnce = config.delivery === 'exactly_once';
    this.skipsCommittedChunk = this.exactlyOnce;
    this.producer =
      producer ??
      new KafkaProducer({
        config,
        logger: this.logger,
        signal: context.signal,
        ...(context.mayWrite !== undefined ? { mayWrite: context.mayWrite } : {}),
        ...(this.exactlyOnce ? { transaction: transactionSettings(config, context.pipeline) } : {}),
      });
  }

  async open(tables: TableSchema[]): Promise<void> {
    checkTopicCollisions(tables, this.config, this.routedTables);
    for (const table of tables) this.checkKeyColumns(table);
    await this.producer.connect();
    await this.producer.ensureTopics(tables.map((t) => topicFor(t, this.config)));
    if (this.exactlyOnce) await this.producer.ensureTopics([this.config.checkpointTopic]);
    this.opened = true;
    this.logger.info('kafka sink open', {
      brokers: this.config.brokers.join(','),
      format: this.config.messageFormat,
      compression: this.config.compression,
      topics: [...new Set(tables.map((t) => topicFor(t, this.config)))].join(','),
    });
  }

  async write(events: ChangeEvent[]): Promise<void> {
    if (!this.opened) throw new NanosyncError(ErrorCode.Internal, 'Kafka sink write() before open()');
    if (events.length === 0) return;
    if (!this.exactlyOnce) return this.writeEvents(events);
    // A transaction the coordinator refuses for a while (CONCURRENT_TRANSACTIONS while it
    // still completes the previous transaction of this id, a coordinator moving) is tried
    // again under the sink's retry settings, as Kafka's own clients do; each attempt restarts
    // from the checkpoint the broker holds, so a commit that did land before its answer was
    // lost is not repeated.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.writeTransaction(events);
      } catch (err) {
        const transient =
          NanosyncError.is(err, KafkaErrorCode.KafkaTransaction) && err.retriable && eventIndexOf(err) === undefined;
        if (!transient) throw err;
        if (!(await this.producer.retryAfter('transaction', attempt, err)))
          throw transactionRetriesExhausted(err, attempt);
      }
    }
  }

  /**
   * exactly_once: one transaction per batch, committed together with the position it wrote
   * up to and the id of the last snapshot chunk committed so far. Events a committed
   * transaction already holds (a replay after a crash between Kafka's commit and nanosync's
   * checkpoint) are skipped: stream events by position (positions of one pipeline sort as
   * strings), snapshot events by chunk — the events of the chunk the last committed
   * transaction names. Core keeps at most one chunk in the sinks that is not recorded as done
   * (`skipsCommittedChunk`) and reads such a chunk again within its bounds under its id, so
   * that is the only chunk a restart can repeat. Snapshot rows without a chunk id (a source
   * that reads partitions whole) are never skipped: their position does not identify them.
   */
  private async writeTransaction(events: ChangeEvent[]): Promise<void> {
    const committed = await this.producer.beginTransaction();
    const { fresh, last, lastChunk } = this.notYetCommitted(events, committed, (e) => e.op === 'read');
    try {
      if (fresh.length > 0) await this.writeEvents(fresh);
      await this.producer.commitTransaction(last ?? events[events.length - 1]!.position, lastChunk);
    } catch (err) {
      await this.producer.abortTransaction();
      // An event refused alone is named by its index in `events`, not in `fresh`.
      const index = eventIndexOf(err);
      if (index !== undefined && fresh.length < events.length && NanosyncError.is(err))
        eventError(err, events.indexOf(fresh[index]!));
      throw err;
    }
  }

  /**
   * Encode `events` and send them (see {@link sendInChunks}) while the next chunk is encoded:
   * a chunk is handed to the client as soon as it is full and the one before it is acknowledged.
   */
  private writeEvents(events: ChangeEvent[]): Promise<void> {
    return this.sendInChunks((push) => this.encodeInto(events, push));
  }

  /**
   * The one send path of `write()` and `writeEncoded()`: the records `fill` pushes, in order, in
   * requests of at most `max_bytes_in_flight` bytes, one request at a time (with
   * @platformatic/kafka 2.12.1 the idempotent producer keeps order only that way; `requestsInFlight`
   * is a test seam). `push` returns a promise only when a full request has to wait for the one
   * before it. Nothing is left in flight when this returns or throws; when several sends fail,
   * the earliest one's error is reported.
   */
  private async sendInChunks(
    fill: (
      push: (message: OutgoingMessage) => Promise<void> | undefined,
      pushRun: (run: FramedRun) => Promise<void>,
    ) => Promise<void>,
  ): Promise<void> {
    const limit = this.exactlyOnce ? 1 : this.requestsInFlight;
    let chunk: OutgoingMessage[] = [];
    let chunkBytes = 0;
    const maxBytes = this.config.maxBytesInFlight;
    /** Sends not yet awaited, oldest first. */
    const pending: Promise<void>[] = [];
    let sendFailed = false;
    const awaitOldest = async () => {
      try {
        await pending.shift();
      } catch (err) {
        sendFailed = true;
        throw err;
      }
    };
    const sendUnit = async (unit: OutgoingMessage[] | FramedRun) => {
      while (pending.length >= limit) await awaitOldest();
      const sent = this.producer.send(unit);
      // Awaited before a later send or at the end; until then it must not count as unhandled.
      sent.catch(() => {});
      pending.push(sent);
    };
    const sendChunk = () => {
      const full = chunk;
      chunk = [];
      chunkBytes = 0;
      return sendUnit(full);
    };
    /** A run of framed records, already cut to one request: sent as it is, after any records pushed before it. */
    const pushRun = async (run: FramedRun) => {
      if (chunk.length > 0) await sendChunk();
      await sendUnit(run);
    };
    // Only a full chunk makes the encoder wait (for the send before it): every other record
    // is added without a promise.
    const pushAny = (message: OutgoingMessage): Promise<void> | undefined => {
      if (chunk.length > 0 && chunkBytes + message.size > maxBytes)
        return sendChunk().then(() => {
          chunk.push(message);
          chunkBytes += message.size;
        });
      chunk.push(message);
      chunkBytes += message.size;
      return undefined;
    };
    try {
      await fill(pushAny, pushRun);
      if (chunk.length > 0) await sendChunk();
      while (pending.length > 0) await awaitOldest();
    } catch (err) {
      // Every send still on its way ends first. A failed send wins over an encoding failure
      // (its records come earlier), and the earliest failed send over later ones.
      const outcomes = await Promise.allSettled(pending.splice(0));
      if (sendFailed) throw err;
      const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      throw failed ? failed.reason : err;
    }
  }

  private async encodeInto(
    events: ChangeEvent[],
    push: (message: OutgoingMessage) => Promise<void> | undefined,
  ): Promise<void> {
    const registry = this.registry;
    const tombstones = this.config.tombstones;
    /** The headers of the last record made without format headers, to share while they repeat. */
    let last: RecordHeaders | undefined;
    let lastSize = 0;
    for (let index = 0; index < events.length; index++) {
      const event = events[index]!;
      try {
        const route = this.routes.get(event.table) ?? (await this.routeOf(event.table));
        const { topic, table } = route;
        if (registry && !registry.isReady(event.table, topic))
          await registry.prepare(event.table, topic, route.keyColumns);
        // No closures here: one per event is an allocation (and, under tsx, a __name call) per event.
        const key = event.op === 'truncate' ? this.truncateKey(topic, table) : this.keyOf(event, route);
        if (event.op === 'update' && event.before && key) {
          // An update that changed the key moves the row: the old key must not keep its last
          // value in a compacted topic, so it gets a delete (and tombstone) of its own first.
          const oldKey = this.keyOf({ ...event, after: undefined }, route);
          if (oldKey && !oldKey.equals(key)) {
            const moved: ChangeEvent = { ...event, op: 'delete', after: undefined, unchanged: undefined };
            const encodedDelete = this.encode(moved, topic);
            const deleteHeaders: RecordHeaders = {
              ...encodedDelete.headers,
              [HEADER_TABLE]: table,
              [HEADER_OP]: 'delete',
              [HEADER_POSITION]: event.position,
            };
            const oldText = registry ? keyText({ ...event, after: undefined }) : oldKey.toString('utf8');
            const waitDelete = push({
              topic,
              key: oldKey,
              value: encodedDelete.value,
              headers: deleteHeaders,
              table,
              keyText: oldText,
              size: recordSize(oldKey, encodedDelete.value, deleteHeaders),
              event: index,
            });
            if (waitDelete) await waitDelete;
            if (tombstones) {
              const tombstoneHeaders: RecordHeaders = { [HEADER_TABLE]: table, [HEADER_POSITION]: event.position };
              const waitTombstone = push({
                topic,
                key: oldKey,
                value: null,
                headers: tombstoneHeaders,
                table,
                keyText: oldText,
                size: recordSize(oldKey, null, tombstoneHeaders),
                event: index,
              });
              if (waitTombstone) await waitTombstone;
            }
          }
        }
        const encoded = this.encode(event, topic);
        let headers: RecordHeaders;
        if (encoded.headers !== undefined) {
          headers = {
            ...encoded.headers,
            [HEADER_TABLE]: table,
            [HEADER_OP]: event.op,
            [HEADER_POSITION]: event.position,
          };
          if (event.chunk !== undefined) headers[HEADER_CHUNK] = event.chunk;
        } else {
          // The records of a snapshot chunk (and of a run of one table's inserts in a
          // transaction) carry the same headers: one object for all of them, which the
          // producer also turns into the client's header map once (headers are never changed
          // after they are made).
          headers = sameHeaders(last, table, event.op, event.position, event.chunk);
          if (headers !== last) {
            last = headers;
            lastSize = headersSize(headers);
          }
        }
        // The key's text is only for error messages: without a registry it is the key's own
        // bytes, read when needed (`messageKeyText`), not decoded per record.
        const text = key && !registry ? undefined : keyText(event);
        const wait = push({
          topic,
          key,
          value: encoded.value,
          headers,
          table,
          keyText: text,
          size:
            headers === last
              ? 24 + (key?.length ?? 0) + encoded.value.length + lastSize
              : recordSize(key, encoded.value, headers),
          event: index,
        });
        if (wait) await wait;
        if (event.op === 'delete' && tombstones && key) {
          const tombstoneHeaders: RecordHeaders = { [HEADER_TABLE]: table, [HEADER_POSITION]: event.position };
          const waitTombstone = push({
            topic,
            key,
            value: null,
            headers: tombstoneHeaders,
            table,
            keyText: text,
            size: recordSize(key, null, tombstoneHeaders),
            event: index,
          });
          if (waitTombstone) await waitTombstone;
        }
      } catch (err) {
        // A value this format cannot carry belongs to this event alone: core's on_error decides.
        if (NanosyncError.is(err) && err.code === KafkaErrorCode.KafkaEncode) throw eventError(err, index);
        throw err;
      }
    }
  }

  private keyOf(event: ChangeEvent, route: TableRoute): Buffer | null {
    return this.registry ? this.registry.encodeKey(event, route.topic) : route.key(event);
  }

  private encode(event: ChangeEvent, topic: string): EncodedMessage {
    return this.registry ? { value: this.registry.encodeValue(event, topic) } : this.codec.encode(event);
  }

  /**
   * Encode `events` into `push` exactly as `write()` does (the worker encoder, `./worker`,
   * runs this on a sink built for encoding only).
   */
  encodeEvents(events: ChangeEvent[], push: (message: OutgoingMessage) => Promise<void>): Promise<void> {
    return this.encodeInto(events, push);
  }

  /**
   * What the worker encoder needs for these tables (see `./worker`): the config, which topics
   * compact, and the schema ids registered for them — registered here, on the main thread,
   * the first time. Topics are created or checked and key columns checked, as the first
   * `write()` of a table does.
   */
  async encoderSetup(tables: TableSchema[]): Promise<KafkaEncoderSetup> {
    if (!this.opened) throw new NanosyncError(ErrorCode.Internal, 'Kafka sink encoderSetup() before open()');
    const compacted: string[] = [];
    for (const table of tables) {
      checkTopicCollisions([table], this.config, this.routedTables);
      this.checkKeyColumns(table);
      const topic = topicFor(table, this.config);
      await this.producer.ensureTopics([topic]);
      if (this.producer.isCompacted(topic)) compacted.push(topic);
      if (this.registry) await this.registry.prepare(table, topic, keyColumnsFor(table, this.config));
    }
    return { config: this.config, compacted, registryIds: [...this.registeredIds] };
  }

  /**
   * Write records a worker encoded (see `encoderSetup`): sent like `write()` sends what it
   * encodes — in order, in requests of at most `max_bytes_in_flight`, one in flight — and with
   * exactly_once in one transaction that skips what an earlier one committed. A record the
   * broker refuses on its own (too large) is named by `recordError`; core then writes the
   * batch's events with `write()`, where `on_error` applies.
   */
  writeEncoded(batch: EncodedBatch, events: EncodedEvents): Promise<void> {
    return this.writeEncodedParts([{ batch, events }]);
  }

  /**
   * Consecutive stream batches a worker encoded, as one write (see `writeEncoded`): their
   * records in one run of requests of at most `max_bytes_in_flight` (and with exactly_once in
   * one transaction), so small batches fill requests instead of each sending its own.
   */
  async writeEncodedParts(parts: readonly { batch: EncodedBatch; events: EncodedEvents }[]): Promise<void> {
    if (!this.opened) throw new NanosyncError(ErrorCode.Internal, 'Kafka sink writeEncoded() before open()');
    const offsets: number[] = new Array(parts.length);
    let eventOffset = 0;
    for (let p = 0; p < parts.length; p++) {
      offsets[p] = eventOffset;
      eventOffset += parts[p]!.events.count;
    }
    // One typed array of numbers for every record of the write: no object per record on the
    // at-least-once path (exactly_once makes them objects, to skip what a transaction committed).
    const framed = readFramed(
      parts.map((part) => part.batch.bytes),
      offsets,
    );
    let expected = 0;
    for (const { batch } of parts) expected += batch.records;
    if (framed.length !== expected)
      throw new NanosyncError(
        ErrorCode.Internal,
        `Kafka sink: encoded batches say ${expected} records but hold ${framed.length}`,
      );
    const events: EncodedEvents =
      parts.length === 1
        ? parts[0]!.events
        : { count: eventOffset, first: parts[0]!.events.first, last: parts[parts.length - 1]!.events.last };
    try {
      if (framed.length === 0) return;
      if (!this.exactlyOnce) return await this.sendFramed(framed);
      const records = framed.records();
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.writeEncodedTransaction(records, events);
        } catch (err) {
          const transient =
            NanosyncError.is(err, KafkaErrorCode.KafkaTransaction) && err.retriable && eventIndexOf(err) === undefined;
          if (!transient) throw err;
          if (!(await this.producer.retryAfter('transaction', attempt, err)))
            throw transactionRetriesExhausted(err, attempt);
        }
      }
    } catch (err) {
      // The producer names the event a refused record came from; core wants the record here.
      const blamed = blamingError(err) as
        | { details: Record<string, string | number | boolean | undefined> }
        | undefined;
      if (blamed !== undefined) {
        const event = blamed.details.eventIndex;
        blamed.details.eventIndex = undefined;
        recordError(blamed, typeof event === 'number' ? framed.indexOfEvent(event) : -1);
      }
      throw err;
    }
  }

  /**
   * What of a batch an earlier committed transaction does not hold yet (see
   * {@link writeTransaction}): events or their encoded records, each with its position and
   * snapshot chunk; `isRead` says which are snapshot rows. Logs what it skipped.
   */
  private notYetCommitted<T extends { position: string; chunk?: string | undefined }>(
    items: readonly T[],
    committed: string | undefined,
    isRead: (item: T) => boolean,
  ): { fresh: T[]; last: string | undefined; lastChunk: string | undefined } {
    const committedChunk = this.producer.replayedChunk;
    let last = committed;
    let lastChunk = this.producer.committedChunk;
    let skippedChunk = 0;
    let skipped = 0;
    const fresh: T[] = [];
    for (const item of items) {
      if (item.chunk !== undefined) {
        if (item.chunk === committedChunk) {
          skippedChunk++;
          continue;
        }
        lastChunk = item.chunk;
      } else if (!isRead(item) && committed !== undefined && item.position <= committed) {
        skipped++;
        continue;
      }
      fresh.push(item);
      if (last === undefined || item.position > last) last = item.position;
    }
    if (skippedChunk > 0)
      this.logger.warn('kafka exactly-once: skipped a snapshot chunk an earlier transaction already committed', {
        skipped: skippedChunk,
        chunk: committedChunk ?? '',
      });
    if (skipped > 0)
      this.logger.warn('kafka exactly-once: skipped replayed events an earlier transaction already committed', {
        skipped,
        committed_position: committed ?? '',
      });
    return { fresh, last, lastChunk };
  }

  /** {@link writeTransaction} for encoded records: the same skipping, per record of each event. */
  private async writeEncodedTransaction(records: FramedRecord[], events: EncodedEvents): Promise<void> {
    const committed = await this.producer.beginTransaction();
    const { fresh, last, lastChunk } = this.notYetCommitted(records, committed, (r) => r.read);
    try {
      if (fresh.length > 0) await this.sendRecords(fresh);
      await this.producer.commitTransaction(last ?? events.last, lastChunk);
    } catch (err) {
      await this.producer.abortTransaction();
      throw err;
    }
  }

  /**
   * Send a write's framed records in runs of at most `max_bytes_in_flight` (cut where
   * `write()`'s chunks are cut), each packed by the producer straight from the batches' bytes,
   * through the same path as `write()`'s (see {@link sendInChunks}).
   */
  private sendFramed(framed: FramedRecords): Promise<void> {
    const maxBytes = this.config.maxBytesInFlight;
    return this.sendInChunks(async (_push, pushRun) => {
      let start = 0;
      let bytes = 0;
      for (let i = 0; i < framed.length; i++) {
        const size = framed.size(i);
        if (i > start && bytes + size > maxBytes) {
          await pushRun(new FramedRun(framed, start, i));
          start = i;
          bytes = 0;
        }
        bytes += size;
      }
      await pushRun(new FramedRun(framed, start, framed.length));
    });
  }

  /** Send records a worker encoded, through the same path as `write()`'s (see {@link sendInChunks}). */
  private sendRecords(records: FramedRecord[]): Promise<void> {
    return this.sendInChunks(async (push) => {
      for (const record of records) {
        const wait = push(record);
        if (wait) await wait;
      }
    });
  }

  /**
   * Dead letters go to the topic `<topic_prefix>dlq` (`nanosync.dlq` by default), keyed like
   * the event's row, the value one JSON object (see `DeadLetter`). A letter too large for
   * that topic is sent again without the row images (`imagesOmitted: true`), so the key,
   * position and error are always recorded.
   */
  deadLetters(): DeadLetterTarget {
    const topic = `${this.config.topicPrefix}dlq`.slice(0, 249);
    return {
      write: async (letters: DeadLetter[]) => {
        await this.producer.ensureTopics([topic]);
        for (const letter of letters) {
          try {
            await this.producer.send([this.deadLetterMessage(topic, letter)]);
          } catch (err) {
            if (!NanosyncError.is(err, KafkaErrorCode.KafkaMessageTooLarge)) throw err;
            const { before: _before, after: _after, ...rest } = letter;
            await this.producer.send([this.deadLetterMessage(topic, { ...rest, imagesOmitted: true } as DeadLetter)]);
          }
        }
      },
    };
  }

  private deadLetterMessage(topic: string, letter: DeadLetter): OutgoingMessage {
    const key = Buffer.from(JSON.stringify(letter.key), 'utf8');
    const value = Buffer.from(deadLetterJson(letter), 'utf8');
    const headers: RecordHeaders = {
      [HEADER_TABLE]: letter.table,
      [HEADER_OP]: letter.op,
      [HEADER_POSITION]: letter.position,
      'ns-sink': letter.sink,
      ...(letter.error.code !== undefined ? { 'ns-error-code': letter.error.code } : {}),
    };
    return {
      topic,
      key,
      value,
      headers,
      table: letter.table,
      keyText: key.toString('utf8'),
      size: recordSize(key, value, headers),
    };
  }

  async close(): Promise<void> {
    this.opened = false;
    this.registryClient?.close();
    await this.producer.disconnect();
  }

  async check(tables?: TableRef[]): Promise<CheckResult[]> {
    const results = await kafkaChecks((fn) => this.producer.withAdmin(fn), this.config, tables);
    if (this.registryClient) {
      const url = this.registryClient.url;
      try {
        const subjects = await this.registryClient.probe();
        results.push({
          name: 'schema registry reachable',
          ok: true,
          message: `${url} answers (${subjects} subject(s))`,
        });
      } catch (err) {
        const error = registryError(err, this.registryClient, 'list subjects');
        results.push({
          name: 'schema registry reachable',
          ok: false,
          message: error.message,
          fix: 'check schema_registry_url, its credentials and schema_registry_ca_cert',
          retriable: error.retriable,
        });
      }
    }
    return results;
  }

  /**
   * A truncate has no row, hence no key. A compacted topic refuses records without a key,
   * so there it is keyed `{"_ns_truncate":"<schema.table>"}`: an object, which no row key
   * (always a JSON array) can equal, and one per table, so compaction keeps the latest.
   */
  private truncateKey(topic: string, table: string): Buffer | null {
    return this.producer.isCompacted(topic) ? Buffer.from(JSON.stringify({ _ns_truncate: table }), 'utf8') : null;
  }

  /**
   * The table's route: its topic (created or checked the first time the table shows up), its
   * `schema.table` name and its key columns. Each new shape of a table (after DDL) is checked
   * again: a renamed or dropped `primary_keys` column must stop the pipeline, not turn every
   * key into [null].
   */
  private async routeOf(table: TableSchema): Promise<TableRoute> {
    checkTopicCollisions([table], this.config, this.routedTables);
    const topic = topicFor(table, this.config);
    await this.producer.ensureTopics([topic]);
    this.checkKeyColumns(table);
    const keyColumns = keyColumnsFor(table, this.config);
    const route: TableRoute = { topic, table: qualifiedName(table), keyColumns, key: messageKeyOf(table, keyColumns) };
    this.routes.set(table, route);
    return route;
  }

  private checkKeyColumns(table: TableSchema): void {
    const columns = keyColumnsFor(table, this.config);
    const name = qualifiedName(table);
    for (const column of columns) {
      if (!table.columns.some((c) => c.name === column)) {
        throw new NanosyncError(
          ErrorCode.ConfigInvalid,
          `primary_keys names column "${column}", which table "${name}" does not have (columns: ${table.columns.map((c) => c.name).join(', ')})`,
          { retriable: false, details: { table: name, column } },
        );
      }
    }
    if (columns.length === 0) {
      this.logger.warn(
        'table has no key and primary_keys is not set: its messages have no key, so per-row order is not kept across partitions',
        { table: name },
      );
    }
  }
}

/**
 * `{ ns-table, ns-op, ns-position[, ns-chunk] }`: `previous` itself when it holds exactly
 * these (in this order), else a new object.
 */
function sameHeaders(
  previous: RecordHeaders | undefined,
  table: string,
  op: string,
  position: string,
  chunk: string | undefined,
): RecordHeaders {
  if (
    previous !== undefined &&
    previous[HEADER_TABLE] === table &&
    previous[HEADER_OP] === op &&
    previous[HEADER_POSITION] === position &&
    previous[HEADER_CHUNK] === chunk &&
    (chunk !== undefined || !Object.hasOwn(previous, HEADER_CHUNK))
  )
    return previous;
  const headers: RecordHeaders = { [HEADER_TABLE]: table, [HEADER_OP]: op, [HEADER_POSITION]: position };
  if (chunk !== undefined) headers[HEADER_CHUNK] = chunk;
  return headers;
}

/** What the sink needs of a table for each of its events (see `KafkaSink.routeOf`). */
interface TableRoute {
  topic: string;
  /** `schema.table` */
  table: string;
  keyColumns: string[];
  /** The message key of an event of this table shape (see `messageKey`). */
  key: (event: ChangeEvent) => Buffer | null;
}

/** What `KafkaSink.encoderSetup` gives the worker encoder (structured-cloneable). */
export interface KafkaEncoderSetup {
  config: KafkaSinkConfig;
  /** Topics that compact (a truncate is keyed there). */
  compacted: string[];
  /** `[subject + NUL + schema text, id]` of every schema this sink registered. */
  registryIds: [string, number][];
}

/** The key of `registeredIds`. */
export function registryIdKey(subject: string, schema: string): string {
  return `${subject}\u0000${schema}`;
}

/** `client`, noting the id of every schema it registers in `ids`. */
function recordingIds(client: SchemaRegistryClient, ids: Map<string, number>): SchemaRegistryClient {
  const register = client.register.bind(client);
  client.register = async (subject, schema, type) => {
    const id = await register(subject, schema, type);
    ids.set(registryIdKey(subject, schema), id);
    return id;
  };
  return client;
}

/**
 * The transactional id (unless `transactional_id` is set) is derived from the pipeline and
 * the sink's target, so it survives restarts and two sinks of one pipeline do not share it.
 */
export function transactionSettings(config: KafkaSinkConfig, pipeline: string): TransactionSettings {
  const target = createHash('sha256')
    .update(JSON.stringify([config.topic ?? null, config.topicPrefix, config.tableTopics ?? null]))
    .digest('hex')
    .slice(0, 10);
  const transactionalId = config.transactionalId ?? `nanosync.${pipeline}.${target}`;
  return { transactionalId, groupId: `nanosync-eos.${transactionalId}`, checkpointTopic: config.checkpointTopic };
}
