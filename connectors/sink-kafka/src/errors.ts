import { ErrorCode, NanosyncError } from '@nanosync/core';

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
const PRODUCER_STATE = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH', 'INVALID_PRODUCER_ID_MAPPING']);
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
  if (chain.some((e) => e.name === 'KafkaJSSASLAuthenticationError' || (e.type !== undefined && AUTH.has(e.type)))) return 'auth';
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
      (typeof e.code === 'string' && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND)$/.test(e.code)),
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
    ErrorCode.KafkaAuth,
    `Kafka refused ${what} at ${brokers.join(',')}: ${rootMessage(err)}. ` +
      'Check sasl_mechanism, sasl_username and sasl_password against the broker, and that the user has Write (and Describe/Create for topic creation) ACLs.',
    { cause: err, retriable: false },
  );
}

export function tlsError(err: unknown, brokers: string[]): NanosyncError {
  return new NanosyncError(
    ErrorCode.KafkaConnection,
    `TLS handshake with ${brokers.join(',')} failed: ${rootMessage(err)}. Set tls_ca_cert to the CA that signed the broker certificate, and connect by the name the certificate is issued for.`,
    { cause: err, retriable: false },
  );
}
