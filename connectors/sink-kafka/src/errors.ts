import { defineErrorArea, NanosyncError } from '@nanosync/core';

/** The Kafka sink's error codes (block NS_K6000–NS_K6999). */
export const kafkaErrors = defineErrorArea({
  area: 'Kafka sink',
  letter: 'K',
  range: [6000, 6999],
  codes: {
    KafkaConnection: {
      code: 'NS_K6001',
      meaning:
        'The brokers cannot be reached, the TLS handshake failed, or sends kept failing until `max_retries` ran out.',
      fix: 'Check `brokers`, the network path and the TLS settings (`tls_ca_cert`, the name the certificate is issued for); resume the pipeline once Kafka answers.',
    },
    KafkaTopicMissing: {
      code: 'NS_K6002',
      meaning: 'A target topic does not exist and the sink may not create it.',
      fix: 'Create the topic (the message prints the command) or set `auto_create_topics: true`.',
    },
    KafkaMessageTooLarge: {
      code: 'NS_K6003',
      meaning: 'The broker refused a message as larger than it accepts; the message names the table, key and topic.',
      fix: "Raise the topic's `max.message.bytes` (and the broker's `message.max.bytes`), or use a more compact `message_format` (avro, protobuf) or compression.",
    },
    KafkaProduce: {
      code: 'NS_K6004',
      meaning: 'The broker refused a send with an error that retrying will not change.',
      fix: "Read the broker's reason in the message; fix the topic or broker setting it names, then resume the pipeline.",
    },
    KafkaAuth: {
      code: 'NS_K6005',
      meaning: 'SASL authentication failed, or an ACL denies the sink an operation it needs.',
      fix: 'Check `sasl_mechanism`, `sasl_username` and `sasl_password`, and grant the user Write (plus Describe/Create to create topics).',
    },
    KafkaEncode: {
      code: 'NS_K6006',
      meaning:
        'A row could not be encoded in the chosen message format, or a message read back is not a nanosync message; the message names the table, column, key and position.',
      fix: 'Check the column type against the format (see the Kafka sink README); report it if the value is valid at the source.',
    },
    KafkaSchemaRegistry: {
      code: 'NS_K6007',
      meaning:
        'The Schema Registry could not be reached, refused the credentials, or answered with an error while the sink registered a schema.',
      fix: 'Check `schema_registry_url`, the credentials (`schema_registry_username` / `schema_registry_password` or `schema_registry_token`) and `schema_registry_ca_cert`; outages are retried.',
    },
    KafkaSchemaIncompatible: {
      code: 'NS_K6008',
      meaning:
        "A table's new schema breaks the compatibility rule of its registry subject; the message names the subject, the rule and the columns that changed.",
      fix: "Revert the column change, or relax the subject's compatibility (`PUT /config/<subject>`), or send the table to a new topic (`table_topics`); then resume the pipeline.",
    },
    KafkaTransaction: {
      code: 'NS_K6009',
      meaning:
        'With `delivery: exactly_once`, a Kafka transaction could not be started or committed, or another producer with the same transactional id fenced this one.',
      fix: 'Check that the brokers allow transactions (`transaction.state.log.replication.factor` <= brokers) and that no second copy of the pipeline runs; resume the pipeline.',
    },
  },
});
export const KafkaErrorCode = kafkaErrors.code;

/**
 * What a kafkajs failure means for the sink. kafkajs wraps errors (retries exceeded,
 * non-retriable wrappers) around the one that matters, so the chain is walked through
 * `cause` / `originalError` and the most specific meaning wins.
 */
export type FailureKind =
  | 'too-large' // the broker refused a record (batch) as larger than it accepts
  | 'auth' // SASL failed or an ACL denies the operation
  | 'tls' // the broker's certificate is not trusted / does not match
  | 'topic-missing' // the topic does not exist (and we are not allowed to create it)
  | 'producer-state' // the broker lost or fenced our idempotent producer id: start a new one
  | 'retriable' // connection refused/closed, timeouts, leader moves, not enough replicas…
  | 'fatal';

const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);
const AUTH = new Set([
  'SASL_AUTHENTICATION_FAILED',
  'TOPIC_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'ILLEGAL_SASL_STATE',
  'UNSUPPORTED_SASL_MECHANISM',
]);
const PRODUCER_STATE = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
]);
const TLS_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

interface KafkaLikeError {
  name?: string;
  type?: string;
  code?: string | number;
  message?: string;
  retriable?: boolean;
  cause?: unknown;
  originalError?: unknown;
}

export function errorChain(err: unknown): KafkaLikeError[] {
  const chain: KafkaLikeError[] = [];
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  while (queue.length && chain.length < 16) {
    const e = queue.shift();
    if (!e || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const k = e as KafkaLikeError & { errors?: unknown[] };
    chain.push(k);
    queue.push(k.cause, k.originalError, ...(Array.isArray(k.errors) ? k.errors : []));
  }
  return chain;
}

export function classifyKafkaError(err: unknown): FailureKind {
  const chain = errorChain(err);
  if (chain.some((e) => e.type !== undefined && TOO_LARGE.has(e.type))) return 'too-large';
  if (chain.some((e) => e.name === 'KafkaJSSASLAuthenticationError' || (e.type !== undefined && AUTH.has(e.type))))
    return 'auth';
  if (chain.some((e) => typeof e.code === 'string' && TLS_CODES.has(e.code))) return 'tls';
  if (chain.some((e) => e.type !== undefined && PRODUCER_STATE.has(e.type))) return 'producer-state';
  if (chain.some((e) => e.type === 'UNKNOWN_TOPIC_OR_PARTITION' && e.retriable === false)) return 'topic-missing';
  if (chain.some((e) => e instanceof NanosyncError)) return 'fatal';
  const transient = chain.some(
    (e) =>
      e.retriable === true ||
      /^KafkaJS(Connection|ConnectionClosed|RequestTimeout|BrokerNotFound|MetadataNotLoaded|TopicMetadataNotLoaded|StaleTopicMetadataAssignment|LockTimeout)Error?$/.test(
        e.name ?? '',
      ) ||
      (typeof e.code === 'string' &&
        /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND)$/.test(e.code)),
  );
  return transient ? 'retriable' : 'fatal';
}

/** The innermost message, which is usually the useful one ("Connection error: connect ECONNREFUSED …"). */
export function rootMessage(err: unknown): string {
  const chain = errorChain(err);
  const specific = [...chain].reverse().find((e) => e.message && !/^KafkaJSNumberOfRetriesExceeded/.test(e.name ?? ''));
  return (specific?.message ?? String(err)).replace(/\s+/g, ' ').trim();
}

export function authError(err: unknown, brokers: string[], what: string): NanosyncError {
  return new NanosyncError(
    KafkaErrorCode.KafkaAuth,
    `Kafka refused ${what} at ${brokers.join(',')}: ${rootMessage(err)}. ` +
      'Check sasl_mechanism, sasl_username and sasl_password against the broker, and that the user has Write (and Describe/Create for topic creation) ACLs.',
    { cause: err, retriable: false },
  );
}

export function tlsError(err: unknown, brokers: string[]): NanosyncError {
  return new NanosyncError(
    KafkaErrorCode.KafkaConnection,
    `TLS handshake with ${brokers.join(',')} failed: ${rootMessage(err)}. Set tls_ca_cert to the CA that signed the broker certificate, and connect by the name the certificate is issued for.`,
    { cause: err, retriable: false },
  );
}
