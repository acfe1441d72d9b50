import { isIP } from 'node:net';
import { ErrorCode, type Logger, NanosyncError, readTlsFile } from '@nanosync/core';
import {
  Admin,
  type BaseOptions,
  type ClusterMetadata,
  ConfigResourceTypes,
  type Consumer,
  FindCoordinatorKeyTypes,
  kGetApi,
  kGetConnection,
  type MessageToProduce,
  Producer,
} from '@platformatic/kafka';
import { type KafkaSinkConfig, transactionTimeoutMs } from './config.js';
import { installFastProduce, takesPackedRecords } from './fast-produce.js';
import { FramedRun, headerBytes, packRecords } from './packed-records.js';
import { javaPartitioner } from './partitioner.js';
import {
  authError,
  classifyKafkaError,
  errorChain,
  KafkaErrorCode,
  leaseLapse,
  rootMessage,
  tlsError,
  topicMissingError,
  transactionFailure,
} from './errors.js';

export { topicMissingError };

/** An open transaction of the producer (the client does not export its class). */
type Transaction = Awaited<ReturnType<Producer['beginTransaction']>>;

/** Record headers as the sink builds them; sent as bytes. */
export type RecordHeaders = Record<string, string | Buffer | undefined>;

/** One record on its way to the broker, with what an error message needs to name it. */
export interface OutgoingMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: RecordHeaders;
  /**
   * `schema.table` and the key as text, for errors. Without `keyText` the key's own bytes are
   * its text (`messageKeyText`).
   */
  table: string;
  keyText?: string | undefined;
  /** Bytes counted against `max_bytes_in_flight`. */
  size: number;
  /** Index of the event it came from in the `write()` batch, so a refusal can name that event. */
  event?: number;
}

/** Rough wire size of a record: key, value, headers and the per-record framing. */
export function recordSize(
  key: Buffer | null,
  value: Buffer | null,
  headers: Readonly<Record<string, string | Buffer | readonly (string | Buffer)[] | undefined>>,
): number {
  return 24 + (key?.length ?? 0) + (value?.length ?? 0) + headersSize(headers);
}

/** The headers' part of `recordSize`. */
export function headersSize(
  headers: Readonly<Record<string, string | Buffer | readonly (string | Buffer)[] | undefined>>,
): number {
  let size = 0;
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    const v = headers[name];
    if (v === undefined) size += 8 + name.length;
    else if (Array.isArray(v))
      for (const item of v as readonly (string | Buffer)[]) size += 8 + name.length + bytes(item);
    else size += 8 + name.length + bytes(v as string | Buffer);
  }
  return size;
}

const bytes = (v: string | Buffer): number => (typeof v === 'string' ? Buffer.byteLength(v) : v.length);

/** The record's key as text, for error messages. */
export function messageKeyText(message: Pick<OutgoingMessage, 'key' | 'keyText'>): string {
  return message.keyText ?? message.key?.toString('utf8') ?? '{}';
}

/**
 * The client's in-request retries: a few, short (250 ms doubling to 2 s). The sink's own loop
 * (max_retries, backoff) decides when to give up. At least 2: the client turns an idempotent
 * producer's `retries` of 0 or 1 into "retry forever", which would make a wrong password or an
 * untrusted CA hang instead of failing.
 */
const CLIENT_RETRIES = 2;
const clientRetryDelay = (_client: unknown, _operation: string, attempt: number): number =>
  Math.min(2_000, 250 * 2 ** Math.max(0, attempt - 1));

/** Connection, TLS, SASL and retry options shared by the sink's producer and admin clients. */
export function kafkaClientOptions(config: KafkaSinkConfig, retries = CLIENT_RETRIES): BaseOptions {
  const options: BaseOptions = {
    clientId: config.clientId,
    bootstrapBrokers: config.brokers,
    connectTimeout: 10_000,
    requestTimeout: config.requestTimeoutMs,
    timeout: config.requestTimeoutMs,
    retries,
    retryDelay: clientRetryDelay,
  };
  if (config.tls) {
    options.tls = {
      rejectUnauthorized: true,
      ...(config.tls.caFile ? { ca: [readTlsFile('tls_ca_cert', config.tls.caFile)] } : {}),
      ...(config.tls.certFile ? { cert: readTlsFile('tls_client_cert', config.tls.certFile) } : {}),
      ...(config.tls.keyFile ? { key: readTlsFile('tls_client_key', config.tls.keyFile) } : {}),
    };
    // SNI with the broker's host name, as the Java client sends it (not for IP addresses,
    // which SNI does not carry).
    if (config.brokers.some((b) => isIP(b.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')) === 0))
      options.tlsServerName = true;
  }
  if (config.sasl) {
    options.sasl = {
      mechanism: config.sasl.mechanism,
      username: config.sasl.username,
      password: config.sasl.password,
    };
  }
  return options;
}

/**
 * One request of a Kafka API the client has no method for (or none that sends every field),
 * over the client's own authenticated connection to `broker`, in the highest version both
 * sides speak. Uses the client's documented extension points (`kGetConnection`, `kGetApi`).
 */
export async function rawRequest<T>(
  client: Producer | Admin,
  broker: { host: string; port: number },
  api: string,
  ...args: unknown[]
): Promise<T> {
  const internals = client as unknown as {
    [kGetConnection]: (broker: { host: string; port: number }, cb: (err: Error | null, c: unknown) => void) => void;
    [kGetApi]: (
      name: string,
      cb: (err: Error | null, api: (connection: unknown, ...args: unknown[]) => void) => void,
    ) => void;
  };
  const call = <V>(fn: (cb: (err: Error | null, value: V) => void) => void) =>
    new Promise<V>((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
  const connection = await call<unknown>((cb) => internals[kGetConnection](broker, cb));
  const send = await call<(connection: unknown, ...args: unknown[]) => void>((cb) => internals[kGetApi](api, cb));
  return call<T>((cb) => send(connection, ...args, cb));
}

/**
 * `delivery: exactly_once`: the transactional id, and where each transaction records the
 * position it wrote up to: the consumer-group offset of `checkpointTopic` partition 0 for
 * `groupId`, committed inside the transaction (its metadata holds the position).
 */
export interface TransactionSettings {
  transactionalId: string;
  groupId: string;
  checkpointTopic: string;
}

export interface ProducerOptions {
  config: KafkaSinkConfig;
  /** Set for `delivery: exactly_once`. */
  transaction?: TransactionSettings;
  logger: Logger;
  signal: AbortSignal;
  /** Test seam: replaces the real sleep between retries (never used by the sink itself). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** The pipeline's lease check (`ConnectorContext.mayWrite`): no retry once it says no. */
  mayWrite?: () => boolean;
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(stopped(signal));
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(stopped(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function stopped(signal: AbortSignal): NanosyncError {
  return new NanosyncError(ErrorCode.PipelineStopped, 'Kafka sink stopped while waiting to retry', {
    cause: signal.reason,
    retriable: true,
  });
}

/**
 * The sink's connection to Kafka (@platformatic/kafka): an idempotent producer (acks=all,
 * one request in flight per broker — the client's idempotent mode allows no more, and the
 * sink awaits each send before the next) placing keys on partitions like the Java client
 * (murmur2, `javaPartitioner`: the numbers of the client's `compatibilityPartitioner`), and
 * an admin client for topics. `send` resolves only when the broker acknowledged every record.
 */
export class KafkaProducer {
  private producer: Producer | undefined;
  private admin: Admin | undefined;
  private readonly config: KafkaSinkConfig;
  private readonly logger: Logger;
  private readonly signal: AbortSignal;
  private readonly mayWrite: (() => boolean) | undefined;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly knownTopics = new Set<string>();
  private readonly compactedTopics = new Set<string>();
  private readonly txSettings: TransactionSettings | undefined;
  private tx: Transaction | undefined;
  /** The position the last committed transaction wrote up to (read back at start). */
  private committed: string | undefined;
  /** The id of the last snapshot chunk a committed transaction holds (read back at start). */
  private chunk: string | undefined;
  /**
   * `chunk` was read back from the broker and no transaction of this producer has named
   * another since: events of it that come now are a replay of a committed chunk.
   */
  private chunkRecovered = false;
  private sequence = 0;
  /** A transaction failed: start a new producer and read the checkpoint again before the next one. */
  private recover = true;
  /**
   * A send inside a transaction was refused as too large: the client has counted that
   * request's records into its sequence numbers, so the transaction is aborted and the next
   * attempt sends record by record, which names the record that is too large.
   */
  private singleRecordSends = false;
  /** A send went as packs of records (packed-records.ts): logged once. */
  private packing = false;

  constructor(options: ProducerOptions) {
    this.config = options.config;
    this.logger = options.logger;
    this.signal = options.signal;
    this.sleep = options.sleep ?? abortableSleep;
    this.txSettings = options.transaction;
    this.mayWrite = options.mayWrite;
  }

  private newProducer(): Producer {
    // Produce requests encoded by the sink (fast-produce.ts): the client's bytes, built in one
    // buffer. The lease is checked once they are ready, right before they go to the socket: a
    // gzip request is compressed in zlib's thread pool after sendOnce's check, and a freeze
    // past the lease can fall in between.
    return installFastProduce(
      this.newClientProducer(),
      this.logger,
      this.mayWrite === undefined ? undefined : () => this.checkLease(),
    );
  }

  /** Throws (retriable) once the lease has expired locally. */
  private checkLease(): void {
    if (this.mayWrite === undefined || this.mayWrite()) return;
    throw new NanosyncError(
      ErrorCode.PipelineLeaseHeld,
      'Kafka produce: lease expired locally; not sending until renewed (another server may run the pipeline now)',
      { retriable: true },
    );
  }

  private newClientProducer(): Producer {
    return new Producer({
      ...kafkaClientOptions(this.config),
      idempotent: true,
      acks: -1,
      compression: this.config.compression,
      partitioner: javaPartitioner,
      autocreateTopics: false,
      // InitProducerId without a known producer: "none" is -1/-1. The client would send 0/0
      // otherwise, which the transaction coordinator reads as "the producer 0 at epoch 0
      // retrying": a restarted transactional producer then gets its predecessor's epoch
      // back instead of a new one, and neither is fenced (OUT_OF_ORDER_SEQUENCE_NUMBER).
      producerId: -1n,
      producerEpoch: -1,
      ...(this.txSettings
        ? {
            transactionalId: this.txSettings.transactionalId,
            // The client sends `timeout` as the transaction timeout (and as the produce
            // request's ack timeout): the coordinator aborts a transaction open longer than
            // this, so it is the sink's worst-case transaction time (transactionTimeoutMs).
            timeout: transactionTimeoutMs(this.config),
          }
        : {}),
    });
  }

  private newAdmin(retries = CLIENT_RETRIES): Admin {
    return new Admin(kafkaClientOptions(this.config, retries));
  }

  /** Connect producer and admin client, retrying transient failures like a send does. */
  async connect(): Promise<void> {
    await this.withRetries('connect to Kafka', async () => {
      this.admin ??= this.newAdmin();
      await this.admin.metadata({ topics: [] });
      this.producer ??= this.newProducer();
      await this.producer.metadata({ topics: [] });
    });
  }

  /**
   * Make sure every topic exists: create the missing ones when `auto_create_topics` is on,
   * else fail naming them. Topics confirmed once are not asked about again.
   */
  async ensureTopics(topics: Iterable<string>): Promise<void> {
    const wanted = [...new Set(topics)].filter((t) => !this.knownTopics.has(t));
    if (wanted.length === 0) return;
    const admin = this.requireAdmin();
    const existing = new Set(await this.withRetries('list topics', () => admin.listTopics()));
    const missing = wanted.filter((t) => !existing.has(t));
    if (missing.length > 0) {
      if (!this.config.autoCreateTopics) throw topicMissingError(missing);
      await this.withRetries(createTopicsWhat(missing, this.config), async () => {
        const present = new Set(await admin.listTopics());
        const toCreate = missing.filter((t) => !present.has(t));
        if (toCreate.length > 0)
          await admin.createTopics({
            topics: toCreate.map((topic) => ({
              topic,
              partitions: this.config.numPartitions > 0 ? this.config.numPartitions : -1,
              replicas: this.config.replicationFactor > 0 ? this.config.replicationFactor : -1,
            })),
          });
        await this.waitForLeaders(admin, missing);
      });
      this.logger.info('kafka topics created', {
        topics: missing.join(','),
        partitions: this.config.numPartitions,
        replication: this.config.replicationFactor,
      });
    }
    const present = wanted.filter((t) => existing.has(t));
    if (present.length > 0) {
      const described = await this.withRetries('describe topic configs', () =>
        admin.describeConfigs({
          includeSynonyms: false,
          resources: present.map((name) => ({
            resourceType: ConfigResourceTypes.TOPIC,
            resourceName: name,
            configurationKeys: ['cleanup.policy'],
          })),
        }),
      );
      for (const resource of described) {
        const policy = resource.configs.find((e) => e.name === 'cleanup.policy')?.value ?? '';
        if (policy.split(',').includes('compact')) this.compactedTopics.add(resource.resourceName);
      }
    }
    for (const t of wanted) this.knownTopics.add(t);
    // The producer learns the topics' partition counts now, so its first send can go packed.
    const producer = this.producer;
    if (producer !== undefined)
      await this.withRetries('read topic metadata', () => producer.metadata({ topics: wanted }));
  }

  /** Created topics have no leaders for a moment; the first send should not meet that. */
  private async waitForLeaders(admin: Admin, topics: string[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      let metadata: ClusterMetadata | undefined;
      try {
        metadata = await admin.metadata({ topics, forceUpdate: true });
      } catch (err) {
        if (attempt >= 50 || classifyKafkaError(err) !== 'retriable') throw err;
      }
      const ready =
        metadata !== undefined &&
        topics.every((t) => {
          const topic = metadata.topics.get(t);
          return topic !== undefined && topic.partitions.length > 0 && topic.partitions.every((p) => p.leader >= 0);
        });
      if (ready || attempt >= 50) return;
      await this.sleep(100, this.signal);
    }
  }

  /** Whether the topic (seen by `ensureTopics`) compacts: such a topic refuses records without a key. */
  isCompacted(topic: string): boolean {
    return this.compactedTopics.has(topic);
  }

  /**
   * Send records in order and resolve once all are acknowledged (acks=all). The caller
   * keeps `messages` within `max_bytes_in_flight`. A batch the broker refuses as too
   * large is split in halves, in order, until the offending record stands alone; that
   * record fails the write with an error naming its table and key. A `FramedRun` (records a
   * worker encoded) is packed without an object per record where the producer takes packs.
   */
  async send(input: OutgoingMessage[] | FramedRun): Promise<void> {
    if (input.length === 0) return;
    if (this.tx) {
      const messages = input instanceof FramedRun ? input.messages() : input;
      const tx = this.tx;
      if (this.singleRecordSends && messages.length > 1) {
        for (const m of messages) await this.send([m]);
        return;
      }
      try {
        await this.sendOnce(messages, tx);
      } catch (err) {
        if (classifyKafkaError(err) === 'too-large' && !NanosyncError.is(err)) {
          this.recover = true;
          if (messages.length === 1) throw tooLargeError(messages[0]!, err);
          // The client's sequence numbers now count the refused records: this transaction
          // cannot go on. The next attempt sends record by record.
          this.singleRecordSends = true;
        }
        throw this.transactionError('produce', err, messages);
      }
      return;
    }
    try {
      await this.withRetries('produce', () => this.sendOnce(input), input);
    } catch (err) {
      if (classifyKafkaError(err) !== 'too-large' || NanosyncError.is(err)) throw err;
      const split = splitForRetry(input);
      if (!split) throw tooLargeError(input instanceof FramedRun ? input.message(0) : input[0]!, err);
      await this.send(split[0]);
      await this.send(split[1]);
    }
  }

  // -------------------------------------------------------------------------------------------
  // exactly_once

  /**
   * Start a transaction and return the position the last committed one wrote up to. The
   * first call (and the first after a failed transaction) starts a new producer with the
   * transactional id: the broker then finishes whatever transaction a predecessor with the
   * same id left open (aborts it, or completes a commit it had begun) and fences that
   * predecessor; only after that is the checkpoint read, so it is final.
   */
  async beginTransaction(): Promise<string | undefined> {
    const settings = this.requireTxSettings();
    if (this.recover) {
      await this.withRetries('start the transactional producer', async () => {
        const open = this.tx;
        this.tx = undefined;
        if (open && !open.completed) await open.abort().catch(() => undefined);
        const old = this.producer;
        this.producer = this.newProducer();
        await old?.close(true).catch(() => undefined);
        // InitProducerId under the transactional id: fences the predecessor and finishes its transaction.
        this.tx = await this.producer.beginTransaction();
      });
      const groups = await this.withRetries('read the exactly-once checkpoint', () =>
        this.requireAdmin().listConsumerGroupOffsets({
          groups: [{ groupId: settings.groupId, topics: [{ name: settings.checkpointTopic, partitionIndexes: [0] }] }],
          requireStable: true,
        }),
      );
      const partition = groups
        .find((g) => g.groupId === settings.groupId)
        ?.topics.find((t) => t.name === settings.checkpointTopic)
        ?.partitions.find((p) => p.partitionIndex === 0);
      if (partition?.metadata && partition.committedOffset >= 0n) {
        this.sequence = Number(partition.committedOffset);
        const metadata = JSON.parse(partition.metadata) as { position?: string; chunk?: string };
        this.committed = metadata.position;
        this.chunk = metadata.chunk;
        this.chunkRecovered = metadata.chunk !== undefined;
      }
      this.recover = false;
      this.logger.info('kafka exactly-once producer ready', {
        transactional_id: settings.transactionalId,
        committed_position: this.committed ?? 'none',
        ...(this.chunk !== undefined ? { committed_snapshot_chunk: this.chunk } : {}),
      });
      return this.committed;
    }
    try {
      this.tx = await this.requireProducer().beginTransaction();
    } catch (err) {
      throw this.transactionError('begin a transaction', err);
    }
    return this.committed;
  }

  /** The id of the last snapshot chunk a committed transaction holds, as of the last `beginTransaction`. */
  get committedChunk(): string | undefined {
    return this.chunk;
  }

  /**
   * The committed chunk whose events are replays: the one read back from the broker, until
   * a transaction names another. A chunk this producer committed itself in this run is not
   * one (its events may come in two writes when core set an event of it aside).
   */
  get replayedChunk(): string | undefined {
    return this.chunkRecovered ? this.chunk : undefined;
  }

  /**
   * Record `position` (and `chunk`, the last snapshot chunk committed so far, this
   * transaction's or an earlier one's) in the transaction and commit it: the records and the
   * checkpoint become visible together.
   */
  async commitTransaction(position: string, chunk?: string): Promise<void> {
    const settings = this.requireTxSettings();
    const tx = this.tx;
    if (!tx) throw new NanosyncError(ErrorCode.Internal, 'Kafka sink commit without a transaction');
    try {
      // AddOffsetsToTxn: the group's offsets become part of the transaction. The client
      // reads only the group id from the consumer it is given.
      await tx.addConsumer({ groupId: settings.groupId } as unknown as Consumer);
      const metadata = chunk === undefined ? { position } : { position, chunk };
      await this.commitOffsetInTransaction(tx, settings, BigInt(this.sequence + 1), JSON.stringify(metadata));
      await tx.commit();
    } catch (err) {
      throw this.transactionError('commit', err);
    } finally {
      this.tx = undefined;
    }
    this.sequence += 1;
    this.committed = position;
    if (chunk !== this.chunk) this.chunkRecovered = false;
    this.chunk = chunk;
    this.singleRecordSends = false;
  }

  /**
   * TxnOffsetCommit of `checkpointTopic` partition 0 for `groupId`, with the position as the
   * offset's metadata (the client's own `addOffset` takes a consumed message and sends no
   * metadata). No consumer group member: generation -1 and an empty member id, as the Java
   * client's `sendOffsetsToTransaction(offsets, groupId)` sends them.
   */
  private async commitOffsetInTransaction(
    tx: Transaction,
    settings: TransactionSettings,
    offset: bigint,
    metadata: string,
  ): Promise<void> {
    const producer = this.requireProducer();
    for (let attempt = 0; ; attempt++) {
      try {
        const [coordinator] = await this.requireAdmin().findCoordinator({
          keyType: FindCoordinatorKeyTypes.GROUP,
          keys: [settings.groupId],
        });
        if (!coordinator) throw new Error(`no coordinator for group ${settings.groupId}`);
        await rawRequest(
          producer,
          { host: coordinator.host, port: coordinator.port },
          'TxnOffsetCommit',
          tx.id,
          settings.groupId,
          producer.producerId,
          producer.producerEpoch,
          -1,
          '',
          null,
          [
            {
              name: settings.checkpointTopic,
              partitions: [
                { partitionIndex: 0, committedOffset: offset, committedLeaderEpoch: -1, committedMetadata: metadata },
              ],
            },
          ],
        );
        return;
      } catch (err) {
        // The group coordinator moved or is loading: ask again (the client's own retry count).
        const moving = errorChain(err).some(
          (e) =>
            e.type === 'NOT_COORDINATOR' ||
            e.type === 'COORDINATOR_NOT_AVAILABLE' ||
            e.type === 'COORDINATOR_LOAD_IN_PROGRESS' ||
            e.type === 'CONCURRENT_TRANSACTIONS',
        );
        if (!moving || attempt >= CLIENT_RETRIES) throw err;
        await this.sleep(clientRetryDelay(undefined, 'TxnOffsetCommit', attempt + 1), this.signal);
      }
    }
  }

  /** Abort the open transaction (after a failed write); the next one starts from a fresh producer. */
  async abortTransaction(): Promise<void> {
    const tx = this.tx;
    this.tx = undefined;
    this.recover = true;
    if (tx && !tx.completed) await tx.abort().catch(() => undefined);
  }

  private transactionError(what: string, err: unknown, messages?: OutgoingMessage[]): NanosyncError {
    this.recover = true;
    return transactionFailure(
      err,
      {
        what,
        transactionalId: this.txSettings?.transactionalId,
        timeoutMs: transactionTimeoutMs(this.config),
        ...(messages ? { topics: [...new Set(messages.map((m) => m.topic))] } : {}),
      },
      this.config,
    );
  }

  private requireTxSettings(): TransactionSettings {
    if (!this.txSettings) throw new NanosyncError(ErrorCode.Internal, 'Kafka sink transaction without exactly_once');
    return this.txSettings;
  }

  private async sendOnce(input: OutgoingMessage[] | FramedRun, via?: Transaction): Promise<void> {
    // Core checks the lease before each sink write, but one write can take several requests
    // (and a freeze can fall between them): a request sent after the lease ran out could land
    // after the new holder's writes. Checked again on each request's finished bytes (newProducer).
    this.checkLease();
    const producer = this.requireProducer();
    // One pack of records per partition (packed-records.ts) where the sink encodes the
    // requests and the client has the topics' partition counts; else a message per record.
    if (takesPackedRecords(producer)) {
      const metadata = producer.currentMetadata;
      const packs =
        metadata === undefined ? undefined : packRecords(input, (topic) => metadata.topics.get(topic)?.partitionsCount);
      if (packs !== undefined) {
        if (!this.packing) {
          this.packing = true;
          this.logger.debug('kafka producer sends its records packed, one message per partition', {
            records: input.length,
            partitions: packs.length,
          });
        }
        await (via ?? producer).send({ messages: packs as unknown as MessageToProduce[] });
        return;
      }
    }
    // The client places and encodes the records itself: it takes them as objects.
    const messages = input instanceof FramedRun ? input.messages() : input;
    const records: MessageToProduce[] = new Array(messages.length);
    // A value equal to the previous record's value of the same header (a snapshot's position
    // and chunk, a transaction's table) reuses its bytes.
    const previous = new Map<string, { text: string; bytes: Buffer }>();
    // Records that share one headers object (the sink's records of a snapshot chunk) share
    // one map of the client's (which only reads it).
    let lastHeaders: RecordHeaders | undefined;
    let lastMap: Map<Buffer, Buffer> | undefined;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      if (m.headers === lastHeaders && lastMap !== undefined) {
        records[i] = { topic: m.topic, key: m.key ?? undefined, value: m.value as Buffer, headers: lastMap };
        continue;
      }
      const headers = new Map<Buffer, Buffer>();
      lastHeaders = m.headers;
      lastMap = headers;
      for (const name in m.headers) {
        const v = m.headers[name];
        if (v === undefined) continue;
        if (typeof v !== 'string') {
          headers.set(headerBytes(name), v);
          continue;
        }
        if (REPEATED_VALUES.has(name)) {
          headers.set(headerBytes(name), headerBytes(v));
          continue;
        }
        let last = previous.get(name);
        if (last === undefined) {
          last = { text: v, bytes: Buffer.from(v) };
          previous.set(name, last);
        } else if (last.text !== v) {
          last.text = v;
          last.bytes = Buffer.from(v);
        }
        headers.set(headerBytes(name), last.bytes);
      }
      records[i] = { topic: m.topic, key: m.key ?? undefined, value: m.value as Buffer, headers };
    }
    await (via ?? producer).send({ messages: records });
  }

  /**
   * Run `operation`, retrying transient failures up to `max_retries` times with
   * exponential backoff (`retry_backoff_ms` doubling up to `retry_backoff_max_ms`, ±20%).
   * Authentication, TLS and too-large failures are not retried; a lost producer id gets a
   * fresh producer. When retries run out the error is non-retriable: the pipeline goes
   * ERRORED with the cause instead of spinning.
   */
  private async withRetries<T>(
    what: string,
    operation: () => Promise<T>,
    messages?: OutgoingMessage[] | FramedRun,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await operation();
      } catch (err) {
        if (err instanceof NanosyncError) throw err;
        const lapse = leaseLapse(err);
        if (lapse !== undefined) throw lapse;
        const kind = classifyKafkaError(err);
        if (kind === 'too-large') throw err;
        if (kind === 'auth') throw authError(err, this.config, what);
        if (kind === 'tls') throw tlsError(err, this.config.brokers);
        if (kind === 'topic-missing' && messages) throw topicMissingError(topicsOf(messages), err);
        if (kind === 'fatal') {
          throw new NanosyncError(KafkaErrorCode.KafkaProduce, `Kafka ${what} failed: ${rootMessage(err)}`, {
            cause: err,
            retriable: false,
          });
        }
        if (attempt >= this.config.maxRetries) throw this.gaveUp(what, attempt, err, messages);
        if (kind === 'producer-state' && !this.txSettings) await this.resetProducer(err);
        await this.pauseBeforeRetry(what, attempt, err);
      }
    }
  }

  /**
   * Wait before attempt `attempt + 1` of `what` (backoff with jitter, cut short by close)
   * and log why; false once `max_retries` attempts are spent. For retries outside this
   * class, e.g. the sink's whole exactly-once transaction.
   */
  async retryAfter(what: string, attempt: number, err: unknown): Promise<boolean> {
    if (attempt >= this.config.maxRetries) return false;
    await this.pauseBeforeRetry(what, attempt, err);
    return true;
  }

  private async pauseBeforeRetry(what: string, attempt: number, err: unknown): Promise<void> {
    const delay = this.backoff(attempt);
    this.logger.warn(`kafka ${what} failed, retrying`, {
      attempt: attempt + 1,
      max_retries: this.config.maxRetries,
      delay_ms: delay,
      error: rootMessage(err),
    });
    await this.sleep(delay, this.signal);
    // Frozen past the lease meanwhile: a retry now could land after the new holder's writes.
    if (this.mayWrite !== undefined && !this.mayWrite())
      throw new NanosyncError(
        ErrorCode.PipelineLeaseHeld,
        `Kafka ${what}: lease expired locally; not retrying until renewed (another server may run the pipeline now)`,
        { cause: err, retriable: true },
      );
  }

  private backoff(attempt: number): number {
    const base = Math.min(this.config.retryBackoffMaxMs, this.config.retryBackoffMs * 2 ** attempt);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  private gaveUp(
    what: string,
    attempts: number,
    err: unknown,
    messages?: OutgoingMessage[] | FramedRun,
  ): NanosyncError {
    const topics = messages ? topicsOf(messages) : [];
    if (errorChain(err).some((e) => e.type === 'UNKNOWN_TOPIC_OR_PARTITION') && topics.length)
      return topicMissingError(topics, err);
    const where = topics.length ? ` to topic ${topics.map((t) => `"${t}"`).join(', ')}` : '';
    return new NanosyncError(
      KafkaErrorCode.KafkaConnection,
      `Kafka ${what}${where} at ${this.config.brokers.join(',')} still failing after ${attempts} retries (max_retries): ${rootMessage(err)}`,
      { cause: err, retriable: false, details: { attempts } },
    );
  }

  /** The broker forgot or fenced our producer id: a new producer gets a new id and fresh sequences. */
  private async resetProducer(err: unknown): Promise<void> {
    this.logger.warn('kafka idempotent producer state lost, starting a new producer', { error: rootMessage(err) });
    const old = this.producer;
    this.producer = this.newProducer();
    await old?.close(true).catch(() => undefined);
  }

  /** A short-lived admin client of its own (no retries), for checks; closed afterwards. */
  async withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
    const admin = this.newAdmin(0);
    try {
      return await fn(admin);
    } finally {
      await admin.close().catch(() => undefined);
    }
  }

  async disconnect(): Promise<void> {
    const producer = this.producer;
    const admin = this.admin;
    this.producer = undefined;
    this.admin = undefined;
    this.tx = undefined;
    await Promise.allSettled([producer?.close(true), admin?.close()]);
  }

  private requireProducer(): Producer {
    if (!this.producer) throw new NanosyncError(ErrorCode.Internal, 'Kafka sink used before open()');
    return this.producer;
  }

  private requireAdmin(): Admin {
    if (!this.admin) throw new NanosyncError(ErrorCode.Internal, 'Kafka sink used before open()');
    return this.admin;
  }
}

/** Headers whose values repeat from record to record (the table, the operation). */
const REPEATED_VALUES = new Set(['ns-table', 'ns-op']);

/** The create-topics step as errors name it: the topics and the settings asked for. */
export function createTopicsWhat(topics: string[], config: KafkaSinkConfig): string {
  const setting = (name: string, n: number) => `${name} ${n > 0 ? n : "-1 (the broker's default)"}`;
  return `create topic ${topics.map((t) => `"${t}"`).join(', ')} with ${setting('num_partitions', config.numPartitions)} and ${setting('replication_factor', config.replicationFactor)}`;
}

/** Two halves in the original order, or undefined for a single record. */
export function splitForRetry<T extends OutgoingMessage[] | FramedRun>(messages: T): [T, T] | undefined {
  if (messages.length < 2) return undefined;
  const mid = Math.ceil(messages.length / 2);
  return [messages.slice(0, mid) as T, messages.slice(mid, messages.length) as T];
}

/** The topics records go to, each once. */
function topicsOf(messages: OutgoingMessage[] | FramedRun): string[] {
  const topics = new Set<string>();
  if (messages instanceof FramedRun) for (let i = 0; i < messages.length; i++) topics.add(messages.topic(i));
  else for (const m of messages) topics.add(m.topic);
  return [...topics];
}

export function tooLargeError(message: OutgoingMessage, cause: unknown): NanosyncError {
  return new NanosyncError(
    KafkaErrorCode.KafkaMessageTooLarge,
    `Kafka refused the message for table "${message.table}" key ${messageKeyText(message)} on topic "${message.topic}" as too large ` +
      `(${message.size} bytes before compression): raise the topic's max.message.bytes (and the broker's), or use a more compact message_format (avro, protobuf) or compression`,
    {
      cause,
      retriable: false,
      details: {
        table: message.table,
        key: messageKeyText(message),
        topic: message.topic,
        bytes: message.size,
        eventIndex: message.event,
      },
    },
  );
}
