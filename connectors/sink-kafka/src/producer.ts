import { ErrorCode, type Logger, NanosyncError, readTlsFile } from '@nanosync/core';
import kafkajs, {
  type Admin,
  type IHeaders,
  type Kafka,
  type KafkaConfig,
  type Producer,
  type SASLOptions,
  type Transaction,
} from 'kafkajs';
import { COMPRESSION_TYPES, registerCompressionCodecs } from './compression.js';
import { type KafkaSinkConfig, transactionTimeoutMs } from './config.js';
import {
  authError,
  classifyKafkaError,
  errorChain,
  KafkaErrorCode,
  rootMessage,
  tlsError,
  topicMissingError,
  transactionFailure,
} from './errors.js';

export { topicMissingError };

const { Kafka: KafkaClient, logLevel } = kafkajs;

/** One record on its way to the broker, with what an error message needs to name it. */
export interface OutgoingMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: IHeaders;
  /** `schema.table` and the key as text, for errors. */
  table: string;
  keyText: string;
  /** Bytes counted against `max_bytes_in_flight`. */
  size: number;
  /** Index of the event it came from in the `write()` batch, so a refusal can name that event. */
  event?: number;
}

/** Rough wire size of a record: key, value, headers and the per-record framing. */
export function recordSize(key: Buffer | null, value: Buffer | null, headers: IHeaders): number {
  let size = 24 + (key?.length ?? 0) + (value?.length ?? 0);
  for (const [name, v] of Object.entries(headers))
    size += 8 + name.length + (typeof v === 'string' ? Buffer.byteLength(v) : ((v as Buffer | undefined)?.length ?? 0));
  return size;
}

export function kafkaClientConfig(config: KafkaSinkConfig, logger: Logger): KafkaConfig {
  const client: KafkaConfig = {
    clientId: config.clientId,
    brokers: config.brokers,
    connectionTimeout: 10_000,
    authenticationTimeout: 10_000,
    requestTimeout: config.requestTimeoutMs,
    // Short in-request retries: the sink's own loop (max_retries, backoff) decides when to give up.
    retry: { retries: 2, initialRetryTime: 250, maxRetryTime: 2_000 },
    logLevel: logLevel.WARN,
    // kafkajs reports every failed attempt loudly; the sink logs its own retries, so these go to debug.
    logCreator: () => (entry) => {
      const { message, ...rest } = entry.log;
      const fields: Record<string, string | number | boolean | undefined> = {};
      for (const key of ['broker', 'topic', 'retryCount', 'retryTime', 'error'] as const) {
        const v = (rest as Record<string, unknown>)[key];
        if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') fields[key] = v;
      }
      logger.debug(`kafkajs ${entry.namespace}: ${message}`, fields);
    },
  };
  if (config.tls) {
    client.ssl = {
      rejectUnauthorized: true,
      ...(config.tls.caFile ? { ca: [readTlsFile('tls_ca_cert', config.tls.caFile)] } : {}),
      ...(config.tls.certFile ? { cert: readTlsFile('tls_client_cert', config.tls.certFile) } : {}),
      ...(config.tls.keyFile ? { key: readTlsFile('tls_client_key', config.tls.keyFile) } : {}),
    };
  }
  if (config.sasl) {
    const mechanism = config.sasl.mechanism.toLowerCase() as 'plain' | 'scram-sha-256' | 'scram-sha-512';
    client.sasl = { mechanism, username: config.sasl.username, password: config.sasl.password } as SASLOptions;
  }
  return client;
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
 * The sink's connection to Kafka: an idempotent producer (acks=all, at most one request
 * in flight per broker, which kafkajs' idempotent mode serialises anyway) and an admin
 * client for topics. `send` resolves only when the broker acknowledged every record.
 */
export class KafkaProducer {
  private readonly kafka: Kafka;
  private producer: Producer | undefined;
  private admin: Admin | undefined;
  private readonly config: KafkaSinkConfig;
  private readonly logger: Logger;
  private readonly signal: AbortSignal;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly knownTopics = new Set<string>();
  private readonly compactedTopics = new Set<string>();
  private readonly txSettings: TransactionSettings | undefined;
  private tx: Transaction | undefined;
  /** The position the last committed transaction wrote up to (read back at start). */
  private committed: string | undefined;
  private sequence = 0;
  /** A transaction failed: start a new producer and read the checkpoint again before the next one. */
  private recover = true;

  constructor(options: ProducerOptions) {
    registerCompressionCodecs();
    this.config = options.config;
    this.logger = options.logger;
    this.signal = options.signal;
    this.sleep = options.sleep ?? abortableSleep;
    this.txSettings = options.transaction;
    this.kafka = new KafkaClient(kafkaClientConfig(this.config, this.logger));
  }

  private newProducer(): Producer {
    if (this.txSettings) {
      return this.kafka.producer({
        transactionalId: this.txSettings.transactionalId,
        idempotent: true,
        maxInFlightRequests: 1,
        transactionTimeout: transactionTimeoutMs(this.config),
        allowAutoTopicCreation: false,
        retry: { retries: 2, initialRetryTime: 250, maxRetryTime: 2_000 },
      });
    }
    return this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      retry: { retries: 2, initialRetryTime: 250, maxRetryTime: 2_000 },
    });
  }

  /** Connect producer and admin client, retrying transient failures like a send does. */
  async connect(): Promise<void> {
    await this.withRetries('connect to Kafka', async () => {
      this.admin ??= this.kafka.admin({ retry: { retries: 2, initialRetryTime: 250, maxRetryTime: 2_000 } });
      await this.admin.connect();
      this.producer ??= this.newProducer();
      await this.producer.connect();
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
        await admin.createTopics({
          waitForLeaders: true,
          topics: missing.map((topic) => ({
            topic,
            numPartitions: this.config.numPartitions,
            replicationFactor: this.config.replicationFactor,
          })),
        });
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
            type: kafkajs.ConfigResourceTypes.TOPIC,
            name,
            configNames: ['cleanup.policy'],
          })),
        }),
      );
      for (const resource of described.resources) {
        const policy = resource.configEntries.find((e) => e.configName === 'cleanup.policy')?.configValue ?? '';
        if (policy.split(',').includes('compact')) this.compactedTopics.add(resource.resourceName);
      }
    }
    for (const t of wanted) this.knownTopics.add(t);
  }

  /** Whether the topic (seen by `ensureTopics`) compacts: such a topic refuses records without a key. */
  isCompacted(topic: string): boolean {
    return this.compactedTopics.has(topic);
  }

  /**
   * Send records in order and resolve once all are acknowledged (acks=all). The caller
   * keeps `messages` within `max_bytes_in_flight`. A batch the broker refuses as too
   * large is split in halves, in order, until the offending record stands alone; that
   * record fails the write with an error naming its table and key.
   */
  async send(messages: OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    if (this.tx) {
      try {
        await this.sendOnce(messages, this.tx);
      } catch (err) {
        if (classifyKafkaError(err) === 'too-large' && !NanosyncError.is(err)) {
          const split = splitForRetry(messages);
          if (!split) throw tooLargeError(messages[0]!, err);
          await this.send(split[0]);
          await this.send(split[1]);
          return;
        }
        throw this.transactionError('produce', err, messages);
      }
      return;
    }
    try {
      await this.withRetries('produce', () => this.sendOnce(messages), messages);
    } catch (err) {
      if (classifyKafkaError(err) !== 'too-large' || NanosyncError.is(err)) throw err;
      const split = splitForRetry(messages);
      if (!split) throw tooLargeError(messages[0]!, err);
      await this.send(split[0]);
      await this.send(split[1]);
    }
  }

  // -------------------------------------------------------------------------------------------
  // exactly_once

  /**
   * Start a transaction and return the position the last committed one wrote up to. The
   * first call (and the first after a failed transaction) starts the producer's
   * transactional id: the broker then finishes whatever transaction a predecessor with
   * the same id left open (aborts it, or completes a commit it had begun) and fences that
   * predecessor; only after that is the checkpoint read, so it is final.
   */
  async beginTransaction(): Promise<string | undefined> {
    const settings = this.requireTxSettings();
    if (this.recover) {
      await this.withRetries('start the transactional producer', async () => {
        if (this.tx?.isActive()) await this.tx.abort().catch(() => undefined);
        this.tx = undefined;
        const old = this.producer;
        this.producer = this.newProducer();
        await old?.disconnect().catch(() => undefined);
        await this.producer.connect();
        const init = await this.producer.transaction();
        await init.abort();
      });
      const groups = await this.withRetries('read the exactly-once checkpoint', () =>
        this.requireAdmin().fetchOffsets({ groupId: settings.groupId, topics: [settings.checkpointTopic] }),
      );
      const partition = groups
        .find((g) => g.topic === settings.checkpointTopic)
        ?.partitions.find((p) => p.partition === 0) as { offset: string; metadata?: string | null } | undefined;
      if (partition?.metadata && Number(partition.offset) >= 0) {
        this.sequence = Number(partition.offset);
        this.committed = (JSON.parse(partition.metadata) as { position?: string }).position;
      }
      this.recover = false;
      this.logger.info('kafka exactly-once producer ready', {
        transactional_id: settings.transactionalId,
        committed_position: this.committed ?? 'none',
      });
    }
    try {
      this.tx = await this.requireProducer().transaction();
    } catch (err) {
      throw this.transactionError('begin a transaction', err);
    }
    return this.committed;
  }

  /** Record `position` in the transaction and commit it: the records and the position become visible together. */
  async commitTransaction(position: string): Promise<void> {
    const settings = this.requireTxSettings();
    const tx = this.tx;
    if (!tx) throw new NanosyncError(ErrorCode.Internal, 'Kafka sink commit without a transaction');
    try {
      await tx.sendOffsets({
        consumerGroupId: settings.groupId,
        topics: [
          {
            topic: settings.checkpointTopic,
            // kafkajs passes the metadata through to TxnOffsetCommit.
            partitions: [
              { partition: 0, offset: String(this.sequence + 1), metadata: JSON.stringify({ position }) } as {
                partition: number;
                offset: string;
              },
            ],
          },
        ],
      });
      await tx.commit();
    } catch (err) {
      throw this.transactionError('commit', err);
    } finally {
      this.tx = undefined;
    }
    this.sequence += 1;
    this.committed = position;
  }

  /** Abort the open transaction (after a failed write); the next one starts from a fresh producer. */
  async abortTransaction(): Promise<void> {
    const tx = this.tx;
    this.tx = undefined;
    this.recover = true;
    if (tx?.isActive()) await tx.abort().catch(() => undefined);
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

  private async sendOnce(messages: OutgoingMessage[], via?: Transaction): Promise<void> {
    const byTopic = new Map<string, { key: Buffer | null; value: Buffer | null; headers: IHeaders }[]>();
    for (const m of messages) {
      let list = byTopic.get(m.topic);
      if (!list) {
        list = [];
        byTopic.set(m.topic, list);
      }
      list.push({ key: m.key, value: m.value, headers: m.headers });
    }
    await (via ?? this.requireProducer()).sendBatch({
      acks: -1,
      timeout: this.config.requestTimeoutMs,
      compression: COMPRESSION_TYPES[this.config.compression],
      topicMessages: [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })),
    });
  }

  /**
   * Run `operation`, retrying transient failures up to `max_retries` times with
   * exponential backoff (`retry_backoff_ms` doubling up to `retry_backoff_max_ms`, ±20%).
   * Authentication, TLS and too-large failures are not retried; a lost producer id gets a
   * fresh producer. When retries run out the error is non-retriable: the pipeline goes
   * ERRORED with the cause instead of spinning.
   */
  private async withRetries<T>(what: string, operation: () => Promise<T>, messages?: OutgoingMessage[]): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await operation();
      } catch (err) {
        if (err instanceof NanosyncError) throw err;
        const kind = classifyKafkaError(err);
        if (kind === 'too-large') throw err;
        if (kind === 'auth') throw authError(err, this.config, what);
        if (kind === 'tls') throw tlsError(err, this.config.brokers);
        if (kind === 'topic-missing' && messages)
          throw topicMissingError([...new Set(messages.map((m) => m.topic))], err);
        if (kind === 'fatal') {
          throw new NanosyncError(KafkaErrorCode.KafkaProduce, `Kafka ${what} failed: ${rootMessage(err)}`, {
            cause: err,
            retriable: false,
          });
        }
        if (attempt >= this.config.maxRetries) throw this.gaveUp(what, attempt, err, messages);
        if (kind === 'producer-state') await this.resetProducer(err);
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
  }

  private backoff(attempt: number): number {
    const base = Math.min(this.config.retryBackoffMaxMs, this.config.retryBackoffMs * 2 ** attempt);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  private gaveUp(what: string, attempts: number, err: unknown, messages?: OutgoingMessage[]): NanosyncError {
    const topics = messages ? [...new Set(messages.map((m) => m.topic))] : [];
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
    await old?.disconnect().catch(() => undefined);
    await this.producer.connect();
  }

  /** A short-lived admin client of its own (no retries), for checks; disconnected afterwards. */
  async withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
    const admin = this.kafka.admin({ retry: { retries: 0 } });
    try {
      await admin.connect();
      return await fn(admin);
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  async disconnect(): Promise<void> {
    const producer = this.producer;
    const admin = this.admin;
    this.producer = undefined;
    this.admin = undefined;
    await Promise.allSettled([producer?.disconnect(), admin?.disconnect()]);
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

/** The create-topics step as errors name it: the topics and the settings asked for. */
export function createTopicsWhat(topics: string[], config: KafkaSinkConfig): string {
  const setting = (name: string, n: number) => `${name} ${n > 0 ? n : "-1 (the broker's default)"}`;
  return `create topic ${topics.map((t) => `"${t}"`).join(', ')} with ${setting('num_partitions', config.numPartitions)} and ${setting('replication_factor', config.replicationFactor)}`;
}

/** Two halves in the original order, or undefined for a single record. */
export function splitForRetry(messages: OutgoingMessage[]): [OutgoingMessage[], OutgoingMessage[]] | undefined {
  if (messages.length < 2) return undefined;
  const mid = Math.ceil(messages.length / 2);
  return [messages.slice(0, mid), messages.slice(mid)];
}

export function tooLargeError(message: OutgoingMessage, cause: unknown): NanosyncError {
  return new NanosyncError(
    KafkaErrorCode.KafkaMessageTooLarge,
    `Kafka refused the message for table "${message.table}" key ${message.keyText} on topic "${message.topic}" as too large ` +
      `(${message.size} bytes before compression): raise the topic's max.message.bytes (and the broker's), or use a more compact message_format (avro, protobuf) or compression`,
    {
      cause,
      retriable: false,
      details: {
        table: message.table,
        key: message.keyText,
        topic: message.topic,
        bytes: message.size,
        eventIndex: message.event,
      },
    },
  );
}
