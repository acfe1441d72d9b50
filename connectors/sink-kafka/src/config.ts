import { statSync } from 'node:fs';
import { z } from 'zod';
import { COMPRESSIONS, compressionUnavailable } from './compression.js';
import { MESSAGE_FORMATS, type MessageFormat } from './formats/codec.js';
import type { SchemaRegistryConfig } from './registry/client.js';
import { SUBJECT_STRATEGIES, type SubjectStrategy } from './registry/codec.js';

/**
 * Properties of a `type: kafka` sink. Core hands the connection's properties and the
 * pipeline's sink properties merged into one object, `${env:…}` already resolved; YAML
 * quoting means booleans and numbers may arrive as strings, so both forms are accepted.
 */

export const SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];
export type Compression = (typeof COMPRESSIONS)[number];

export const DEFAULT_TOPIC_PREFIX = 'nanosync.';

export const DELIVERY_MODES = ['at_least_once', 'exactly_once'] as const;
export type Delivery = (typeof DELIVERY_MODES)[number];

export interface KafkaSinkConfig {
  brokers: string[];
  clientId: string;
  sasl?: { mechanism: SaslMechanism; username: string; password: string };
  /** Present when TLS is on; the files are paths, read when connecting. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** All tables to this one topic. */
  topic?: string;
  /** Otherwise one topic per table: `<topicPrefix><schema>_<table>`. */
  topicPrefix: string;
  /** Per-table topic names (`schema.table` → topic), ahead of `topicPrefix`. */
  tableTopics?: Record<string, string>;
  /** Message-key columns; undefined = each table's own key columns. */
  primaryKeys?: string[];
  messageFormat: MessageFormat;
  compression: Compression;
  autoCreateTopics: boolean;
  /** -1 = the broker's default. */
  numPartitions: number;
  replicationFactor: number;
  maxRetries: number;
  retryBackoffMs: number;
  retryBackoffMaxMs: number;
  tombstones: boolean;
  maxBytesInFlight: number;
  requestTimeoutMs: number;
  /** Avro / Protobuf in the Confluent wire format with schemas in this registry; absent = schema embedded in each record. */
  schemaRegistry?: SchemaRegistryConfig & { subjectStrategy: SubjectStrategy };
  delivery: Delivery;
  /** Transactional id for `exactly_once`; undefined = derived from the pipeline and the sink's target. */
  transactionalId?: string;
  /** Topic whose consumer-group offset records each transaction's position (`exactly_once`). */
  checkpointTopic: string;
}

const bool = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);
const int = z.union([
  z.number().int(),
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, 'expected an integer')
    .transform(Number),
]);
const commaList = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter((s) => s.length > 0));
const nonEmpty = z.string().trim().min(1, 'must not be empty');
const defaultOrPositive = (what: string) =>
  int.refine((n) => n === -1 || n >= 1, `${what} must be a positive integer, or -1 for the broker's default`);

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;
const BROKER = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/,]+):\d{1,5}$/;

export const kafkaSinkPropertiesSchema = z
  .object({
    dsn: z.string().optional(),
    brokers: commaList.optional(),
    client_id: nonEmpty.default('nanosync-sink'),
    sasl_mechanism: z
      .string()
      .optional()
      .transform((v) => v?.trim().toUpperCase() || undefined)
      .pipe(
        z
          .enum(SASL_MECHANISMS, { errorMap: () => ({ message: `must be one of ${SASL_MECHANISMS.join(', ')}` }) })
          .optional(),
      ),
    sasl_username: z.string().optional(),
    sasl_password: z.string().optional(),
    tls_enabled: bool.default(false),
    tls_ca_cert: z.string().optional(),
    tls_client_cert: z.string().optional(),
    tls_client_key: z.string().optional(),
    allow_insecure_plain: bool.default(false),

    topic: z.string().trim().optional(),
    topic_prefix: z.string().optional(),
    table_topics: z.record(z.string(), z.string().trim()).optional(),
    primary_keys: commaList.optional(),
    message_format: z.enum(MESSAGE_FORMATS).default('json'),
    compression: z.enum(COMPRESSIONS).default('snappy'),
    auto_create_topics: bool.default(true),
    num_partitions: defaultOrPositive('num_partitions').default(-1),
    replication_factor: defaultOrPositive('replication_factor').default(-1),
    max_retries: int.refine((n) => n >= 0, 'max_retries must be 0 or more').default(5),
    retry_backoff_ms: int.refine((n) => n >= 1, 'retry_backoff_ms must be at least 1').default(2000),
    retry_backoff_max_ms: int.refine((n) => n >= 1, 'retry_backoff_max_ms must be at least 1').default(60_000),
    tombstones: bool.default(true),
    max_bytes_in_flight: int.refine((n) => n >= 1024, 'max_bytes_in_flight must be at least 1024').default(1024 * 1024),
    request_timeout_ms: int.refine((n) => n >= 1000, 'request_timeout_ms must be at least 1000').default(30_000),
    schema_registry_url: z.string().trim().optional(),
    schema_registry_username: z.string().optional(),
    schema_registry_password: z.string().optional(),
    schema_registry_token: z.string().optional(),
    schema_registry_ca_cert: z.string().optional(),
    schema_registry_client_cert: z.string().optional(),
    schema_registry_client_key: z.string().optional(),
    subject_name_strategy: z.enum(SUBJECT_STRATEGIES).optional(),
    delivery: z.enum(DELIVERY_MODES).default('at_least_once'),
    transactional_id: z
      .string()
      .trim()
      .regex(/^[A-Za-z0-9._-]{1,200}$/, 'a transactional id is 1 to 200 letters, digits, ".", "_" or "-"')
      .optional(),
    checkpoint_topic: z
      .string()
      .trim()
      .regex(TOPIC_NAME, 'a topic name is 1 to 249 characters among letters, digits, ".", "_" and "-"')
      .default('nanosync.checkpoints'),
  })
  .strict()
  .superRefine((p, ctx) => {
    const issue = (path: string, message: string) =>
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: [path], message });

    const brokers = p.brokers ?? brokersFromDsn(p.dsn);
    if (!brokers || brokers.length === 0) issue('brokers', 'brokers is required: a comma-separated list of host:port');
    for (const broker of brokers ?? []) {
      if (!BROKER.test(broker)) issue('brokers', `"${broker}" is not host:port`);
    }

    if (p.sasl_mechanism) {
      if (!p.sasl_username) issue('sasl_username', `sasl_username is required with sasl_mechanism ${p.sasl_mechanism}`);
      if (p.sasl_password === undefined || p.sasl_password === '')
        issue('sasl_password', `sasl_password is required with sasl_mechanism ${p.sasl_mechanism}`);
      if (p.sasl_mechanism === 'PLAIN' && !p.tls_enabled && !p.allow_insecure_plain) {
        issue(
          'sasl_mechanism',
          'SASL PLAIN sends the password in clear text: set tls_enabled: true, or allow_insecure_plain: true to accept that risk',
        );
      }
    } else {
      if (p.sasl_username) issue('sasl_username', 'sasl_username is set but sasl_mechanism is not');
      if (p.sasl_password) issue('sasl_password', 'sasl_password is set but sasl_mechanism is not');
    }

    for (const key of ['tls_ca_cert', 'tls_client_cert', 'tls_client_key'] as const) {
      const file = p[key];
      if (file === undefined) continue;
      if (!p.tls_enabled) issue(key, `${key} is set but tls_enabled is false`);
      else if (!isFile(file)) issue(key, `file not found: ${file}`);
    }
    if (Boolean(p.tls_client_cert) !== Boolean(p.tls_client_key)) {
      issue(p.tls_client_cert ? 'tls_client_key' : 'tls_client_cert', 'tls_client_cert and tls_client_key go together');
    }

    if (p.topic !== undefined && p.topic_prefix !== undefined) {
      issue(
        'topic',
        'topic and topic_prefix are mutually exclusive: set topic for one topic, or topic_prefix for one topic per table',
      );
    }
    if (p.topic !== undefined && !TOPIC_NAME.test(p.topic)) {
      issue('topic', 'a topic name is 1 to 249 characters among letters, digits, ".", "_" and "-"');
    }
    if (p.topic_prefix !== undefined && !/^[A-Za-z0-9._-]{0,200}$/.test(p.topic_prefix)) {
      issue('topic_prefix', 'a topic prefix may use only letters, digits, ".", "_" and "-"');
    }
    if (p.table_topics !== undefined) {
      if (p.topic !== undefined)
        issue('table_topics', 'table_topics has no effect with topic, which sends every table to one topic');
      for (const [table, topic] of Object.entries(p.table_topics)) {
        if (!/^[^.]+\..+$/.test(table)) {
          ctx.addIssue({
            code: z.ZodIssueCode.custom,
            path: ['table_topics', table],
            message: `"${table}" is not schema.table`,
          });
        }
        if (!TOPIC_NAME.test(topic)) {
          ctx.addIssue({
            code: z.ZodIssueCode.custom,
            path: ['table_topics', table],
            message: 'a topic name is 1 to 249 characters among letters, digits, ".", "_" and "-"',
          });
        }
      }
    }
    if (p.primary_keys !== undefined && p.primary_keys.length === 0)
      issue('primary_keys', 'primary_keys lists no column');

    const registry = p.schema_registry_url;
    if (registry !== undefined) {
      let url: URL | undefined;
      try {
        url = new URL(registry);
      } catch {
        issue('schema_registry_url', `"${registry}" is not a URL (e.g. http://registry:8081)`);
      }
      if (url && url.protocol !== 'http:' && url.protocol !== 'https:')
        issue('schema_registry_url', 'schema_registry_url must start with http:// or https://');
      if (p.message_format !== 'avro' && p.message_format !== 'protobuf')
        issue(
          'schema_registry_url',
          `schema_registry_url applies to message_format avro or protobuf, not ${p.message_format}`,
        );
      if (Boolean(p.schema_registry_username) !== Boolean(p.schema_registry_password))
        issue(
          p.schema_registry_username ? 'schema_registry_password' : 'schema_registry_username',
          'schema_registry_username and schema_registry_password go together',
        );
      if (p.schema_registry_token && p.schema_registry_username)
        issue(
          'schema_registry_token',
          'use either schema_registry_token (bearer) or schema_registry_username/password (basic), not both',
        );
      for (const key of [
        'schema_registry_ca_cert',
        'schema_registry_client_cert',
        'schema_registry_client_key',
      ] as const) {
        const file = p[key];
        if (file === undefined) continue;
        if (url && url.protocol !== 'https:') issue(key, `${key} is set but schema_registry_url is not https://`);
        else if (!isFile(file)) issue(key, `file not found: ${file}`);
      }
      if (Boolean(p.schema_registry_client_cert) !== Boolean(p.schema_registry_client_key))
        issue(
          p.schema_registry_client_cert ? 'schema_registry_client_key' : 'schema_registry_client_cert',
          'schema_registry_client_cert and schema_registry_client_key go together',
        );
    } else {
      for (const key of [
        'schema_registry_username',
        'schema_registry_password',
        'schema_registry_token',
        'schema_registry_ca_cert',
        'schema_registry_client_cert',
        'schema_registry_client_key',
        'subject_name_strategy',
      ] as const) {
        if (p[key] !== undefined) issue(key, `${key} is set but schema_registry_url is not`);
      }
    }
    if (p.transactional_id !== undefined && p.delivery !== 'exactly_once')
      issue('transactional_id', 'transactional_id is used only with delivery: exactly_once');

    const unavailable = compressionUnavailable(p.compression);
    if (unavailable) issue('compression', unavailable);
    if (p.retry_backoff_max_ms < p.retry_backoff_ms)
      issue('retry_backoff_max_ms', 'retry_backoff_max_ms must not be below retry_backoff_ms');
  })
  .transform((p): KafkaSinkConfig => {
    const config: KafkaSinkConfig = {
      brokers: p.brokers ?? brokersFromDsn(p.dsn) ?? [],
      clientId: p.client_id,
      topicPrefix: p.topic_prefix ?? DEFAULT_TOPIC_PREFIX,
      messageFormat: p.message_format,
      compression: p.compression,
      autoCreateTopics: p.auto_create_topics,
      numPartitions: p.num_partitions,
      replicationFactor: p.replication_factor,
      maxRetries: p.max_retries,
      retryBackoffMs: p.retry_backoff_ms,
      retryBackoffMaxMs: p.retry_backoff_max_ms,
      tombstones: p.tombstones,
      maxBytesInFlight: p.max_bytes_in_flight,
      requestTimeoutMs: p.request_timeout_ms,
      delivery: p.delivery,
      checkpointTopic: p.checkpoint_topic,
    };
    if (p.transactional_id !== undefined) config.transactionalId = p.transactional_id;
    if (p.schema_registry_url !== undefined) {
      config.schemaRegistry = {
        url: p.schema_registry_url,
        subjectStrategy: p.subject_name_strategy ?? 'topic_name',
        requestTimeoutMs: p.request_timeout_ms,
      };
      if (p.schema_registry_username)
        config.schemaRegistry.basic = {
          username: p.schema_registry_username,
          password: p.schema_registry_password ?? '',
        };
      if (p.schema_registry_token) config.schemaRegistry.bearerToken = p.schema_registry_token;
      if (p.schema_registry_ca_cert || p.schema_registry_client_cert) {
        config.schemaRegistry.tls = {};
        if (p.schema_registry_ca_cert) config.schemaRegistry.tls.caFile = p.schema_registry_ca_cert;
        if (p.schema_registry_client_cert) config.schemaRegistry.tls.certFile = p.schema_registry_client_cert;
        if (p.schema_registry_client_key) config.schemaRegistry.tls.keyFile = p.schema_registry_client_key;
      }
    }
    if (p.topic !== undefined) config.topic = p.topic;
    if (p.table_topics !== undefined) config.tableTopics = p.table_topics;
    if (p.primary_keys !== undefined) config.primaryKeys = p.primary_keys;
    if (p.sasl_mechanism)
      config.sasl = { mechanism: p.sasl_mechanism, username: p.sasl_username ?? '', password: p.sasl_password ?? '' };
    if (p.tls_enabled) {
      config.tls = {};
      if (p.tls_ca_cert) config.tls.caFile = p.tls_ca_cert;
      if (p.tls_client_cert) config.tls.certFile = p.tls_client_cert;
      if (p.tls_client_key) config.tls.keyFile = p.tls_client_key;
    }
    return config;
  });

/**
 * With `topic` every table writes to one topic, and the `topic_name` subject strategy names
 * subjects after the topic only: all tables' schemas would land in one subject, where each
 * table's schema reads as an incompatible change of the other's. A problem once the pipeline
 * lists more than one table (one table on its own topic is fine); undefined when there is none.
 */
export function sharedSubjectProblem(config: KafkaSinkConfig, tables: number): string | undefined {
  if (config.topic === undefined || config.schemaRegistry?.subjectStrategy !== 'topic_name' || tables < 2)
    return undefined;
  return (
    `with topic "${config.topic}" the ${tables} tables of this pipeline share one topic, so subject_name_strategy topic_name ` +
    `would register all their schemas under the one subject "${config.topic}-value", where each table's schema is an ` +
    "incompatible change of another's: set subject_name_strategy to record_name or topic_record_name (one subject per table), " +
    'or drop topic for one topic per table'
  );
}

/**
 * The transaction timeout the exactly-once producer asks the broker for. A transaction spans
 * at least five requests (a send, adding its partitions, adding the offsets, committing them,
 * ending the transaction); each may take up to three attempts of \`request_timeout_ms\` with
 * up to 2 s of backoff between them. The timeout is five such worst cases (470 s with the
 * default 30 s), so a slow but progressing batch is not aborted by the coordinator, capped at
 * 15 minutes, the brokers' default \`transaction.max.timeout.ms\`. The cost of a long timeout:
 * a transaction left open by a pipeline that never comes back holds read_committed consumers
 * until it expires (a restarted pipeline aborts it at once).
 */
export function transactionTimeoutMs(config: Pick<KafkaSinkConfig, 'requestTimeoutMs'>): number {
  const request = 3 * config.requestTimeoutMs + 2 * 2_000;
  return Math.min(15 * 60_000, 5 * request);
}

/** `kafka://host1:9092,host2:9092` (or a bare list) as a DSN, for connections that prefer one string. */
function brokersFromDsn(dsn: string | undefined): string[] | undefined {
  if (!dsn) return undefined;
  return dsn
    .replace(/^kafka:\/\//, '')
    .replace(/\/.*$/, '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export function parseKafkaSinkConfig(input: unknown): KafkaSinkConfig {
  return kafkaSinkPropertiesSchema.parse(input);
}
