import { defineErrorArea, ErrorCode, NanosyncError } from '@nanosync/core';
import type { KafkaSinkConfig } from './config.js';

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
      meaning:
        'SASL authentication failed (the message names the mechanism and the user), or an ACL denies the sink an operation it needs.',
      fix: 'Check `sasl_mechanism`, `sasl_username` and `sasl_password`, and grant the user Write (plus Describe/Create to create topics; Write/Describe on the transactional id with `exactly_once`).',
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
        'With `delivery: exactly_once`, a Kafka transaction could not be started or committed, another producer with the same transactional id fenced this one, or the transaction outlived its timeout.',
      fix: 'Check that the brokers allow transactions (`transaction.state.log.replication.factor` <= brokers), that no second copy of the pipeline runs, and that `transaction.max.timeout.ms` allows the timeout the message names; resume the pipeline.',
    },
  },
});
export const KafkaErrorCode = kafkaErrors.code;

/**
 * What a Kafka client failure means for the sink. The client (@platformatic/kafka) wraps the
 * error that matters: a failed request after its retries arrives as `MultipleErrors` holding
 * one error per attempt, a broker's refusal as a `ResponseError` holding one `ProtocolError`
 * per partition (`apiId` is Kafka's error name), a network failure as a `NetworkError` whose
 * `cause` is Node's socket or TLS error. The chain is walked through `cause` and `errors`
 * and the most specific meaning wins.
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
/** The login failed: wrong credentials, or a mechanism the broker does not offer. */
const SASL = new Set(['SASL_AUTHENTICATION_FAILED', 'ILLEGAL_SASL_STATE', 'UNSUPPORTED_SASL_MECHANISM']);
/**
 * The login worked but an ACL denies the operation. TRANSACTIONAL_ID_AUTHORIZATION_FAILED is
 * one of these (the user lacks Write/Describe on the transactional id), not a fencing.
 */
const DENIED = new Set([
  'TOPIC_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
]);
const AUTH = new Set([...SASL, ...DENIED]);
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
const NETWORK_CODES = /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND)$/;
/** The client's own wrappers: their messages ("produce failed 3 times.") say nothing about the cause. */
const WRAPPER_CODES = new Set(['PLT_KFK_MULTIPLE', 'PLT_KFK_RESPONSE']);

interface KafkaLikeError {
  name?: string;
  /** Kafka's error name (a `ProtocolError`'s `apiId`, e.g. MESSAGE_TOO_LARGE). */
  type?: string;
  code?: string | number;
  message?: string;
  retriable?: boolean;
  serverErrorMessage?: string | null;
  closed?: boolean;
  cause?: unknown;
  /** The error itself where it is one of ours (thrown inside the client, e.g. by the request encoder). */
  nanosync?: NanosyncError;
}

/** The error and everything it wraps (`cause`, `errors` of an AggregateError), outermost first. */
export function errorChain(err: unknown): KafkaLikeError[] {
  const chain: KafkaLikeError[] = [];
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  while (queue.length && chain.length < 32) {
    const e = queue.shift();
    if (!e || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const k = e as Record<string, unknown>;
    const apiId = typeof k.apiId === 'string' ? k.apiId : undefined;
    const canRetry = typeof k.canRetry === 'boolean' ? k.canRetry : undefined;
    chain.push({
      name: typeof k.name === 'string' ? k.name : undefined,
      type: apiId ?? (typeof k.type === 'string' ? k.type : undefined),
      code: typeof k.code === 'string' || typeof k.code === 'number' ? k.code : undefined,
      message: typeof k.message === 'string' ? k.message : undefined,
      retriable: canRetry ?? (typeof k.retriable === 'boolean' ? k.retriable : undefined),
      serverErrorMessage: typeof k.serverErrorMessage === 'string' ? k.serverErrorMessage : undefined,
      closed: k.closed === true,
      cause: k.cause,
    });
    if (e instanceof NanosyncError) chain[chain.length - 1]!.nanosync = e;
    queue.push(k.cause, k.originalError, ...(Array.isArray(k.errors) ? k.errors : []));
  }
  return chain;
}

export function classifyKafkaError(err: unknown): FailureKind {
  const chain = errorChain(err);
  const has = (set: Set<string>) => chain.some((e) => e.type !== undefined && set.has(e.type));
  if (has(TOO_LARGE)) return 'too-large';
  if (chain.some((e) => e.code === 'PLT_KFK_AUTHENTICATION') || has(AUTH)) return 'auth';
  if (chain.some((e) => typeof e.code === 'string' && TLS_CODES.has(e.code))) return 'tls';
  if (has(PRODUCER_STATE)) return 'producer-state';
  if (chain.some((e) => e.type === 'UNKNOWN_TOPIC_OR_PARTITION' && e.retriable === false)) return 'topic-missing';
  if (chain.some((e) => (e as { nanosync?: boolean }).nanosync)) return 'fatal';
  const transient = chain.some(
    (e) =>
      (e.type !== undefined && e.retriable === true) ||
      // Network errors, request timeouts included (the client marks a timeout as not
      // retriable for itself; for the sink a broker that does not answer is an outage).
      (e.code === 'PLT_KFK_NETWORK' && !e.closed) ||
      (typeof e.code === 'string' && NETWORK_CODES.test(e.code)),
  );
  return transient ? 'retriable' : 'fatal';
}

/**
 * The sink's own "lease expired locally" refusal where the client wrapped it (a request refused
 * just before it went out fails the client's send): it is passed on as it is, retriable, never
 * reported as a Kafka failure.
 */
export function leaseLapse(err: unknown): NanosyncError | undefined {
  if (err instanceof NanosyncError) return NanosyncError.is(err, ErrorCode.PipelineLeaseHeld) ? err : undefined;
  return errorChain(err).find(
    (e) => e.nanosync !== undefined && NanosyncError.is(e.nanosync, ErrorCode.PipelineLeaseHeld),
  )?.nanosync;
}

/**
 * The message of the error that caused the failure, not of the wrappers around it: for a
 * broker's refusal its Kafka error name and reason ("MESSAGE_TOO_LARGE: The request included
 * a message larger than…"), for a network failure Node's message ("connect ECONNREFUSED …").
 */
export function rootMessage(err: unknown): string {
  const chain = errorChain(err);
  const protocol = [...chain].reverse().find((e) => e.type !== undefined && e.message);
  const cause =
    protocol ??
    [...chain]
      .reverse()
      .find(
        (e) =>
          e.message &&
          !(typeof e.code === 'string' && WRAPPER_CODES.has(e.code)) &&
          !/ failed \d+ times\.$/.test(e.message),
      );
  if (!cause?.message) return String(err).replace(/\s+/g, ' ').trim();
  let text = cause.message;
  if (cause.type !== undefined && !text.includes(cause.type)) text = `${cause.type}: ${text}`;
  if (cause.serverErrorMessage) text += ` (${cause.serverErrorMessage})`;
  // A wrapper that names the broker ("Connection to host:port failed.") adds where it happened.
  const where = chain.find((e) => e.message && /^Connection to \S+ failed\.$/.test(e.message));
  if (where && where !== cause && !text.includes(where.message as string)) text = `${where.message} ${text}`;
  return text.replace(/\s+/g, ' ').trim();
}

/** The broker an error names (the client's "Connection to host:port failed."), else all configured. */
function brokersOf(err: unknown, brokers: readonly string[]): string {
  for (const e of errorChain(err)) {
    const named = e.message?.match(/^Connection to (\S+) failed\.$/);
    if (named) return named[1] as string;
  }
  return brokers.join(',');
}

function typesOf(err: unknown): Set<string> {
  return new Set(errorChain(err).flatMap((e) => (typeof e.type === 'string' ? [e.type] : [])));
}

/**
 * An `auth` failure as the user should read it: a failed login names the SASL mechanism and
 * the user (never the password); a denied operation names the principal and the ACL to grant.
 */
export function authError(
  err: unknown,
  config: Pick<KafkaSinkConfig, 'brokers' | 'sasl' | 'transactionalId'>,
  what: string,
  transactionalId?: string,
): NanosyncError {
  const brokers = brokersOf(err, config.brokers);
  const types = typesOf(err);
  const login = errorChain(err).some((e) => e.code === 'PLT_KFK_AUTHENTICATION') || [...types].some((t) => SASL.has(t));
  const sasl = config.sasl;
  const user = sasl ? `User:${sasl.username}` : 'User:ANONYMOUS';
  let message: string;
  if (login && sasl) {
    message =
      `SASL ${sasl.mechanism} authentication as user "${sasl.username}" failed at ${brokers} (${what}): ${rootMessage(err)}. ` +
      `Check sasl_password, and that the user exists on the brokers for sasl_mechanism ${sasl.mechanism} (SCRAM users are created per mechanism); not retried.`;
  } else if (login) {
    message = `The brokers at ${brokers} asked for SASL authentication (${what}) but no sasl_mechanism is set: ${rootMessage(err)}. Set sasl_mechanism, sasl_username and sasl_password.`;
  } else if (types.has('TRANSACTIONAL_ID_AUTHORIZATION_FAILED')) {
    const id = transactionalId ?? config.transactionalId ?? '<transactional id>';
    message =
      `Kafka denied ${user} the transactional id "${id}" at ${brokers} (${what}): ${rootMessage(err)}. ` +
      `This is a missing ACL, not a fencing: grant Write and Describe on it (kafka-acls.sh --add --allow-principal ${user} --operation Write --operation Describe --transactional-id ${id}).`;
  } else {
    message =
      `Kafka denied ${user} ${what} at ${brokers}: ${rootMessage(err)}. ` +
      'Grant the user Write on the topics (and Describe/Create to create topics; Read on the group with exactly_once).';
  }
  return new NanosyncError(KafkaErrorCode.KafkaAuth, message, {
    cause: err,
    retriable: false,
    details: { mechanism: sasl?.mechanism ?? 'none', username: sasl?.username ?? '', broker: brokers },
  });
}

export function tlsError(err: unknown, brokers: readonly string[]): NanosyncError {
  const at = brokersOf(err, brokers);
  const code = errorChain(err).find((e) => typeof e.code === 'string' && TLS_CODES.has(e.code))?.code;
  return new NanosyncError(
    KafkaErrorCode.KafkaConnection,
    `TLS verification of the broker certificate at ${at} failed${code ? ` (${code})` : ''}: ${rootMessage(err)}. ` +
      'Set tls_ca_cert to the CA that signed the broker certificate, and connect by the name the certificate is issued for; not retried.',
    { cause: err, retriable: false, details: { broker: at, ...(code ? { tls_error: String(code) } : {}) } },
  );
}

export function topicMissingError(topics: string[], cause?: unknown): NanosyncError {
  const list = topics.map((t) => `"${t}"`).join(', ');
  return new NanosyncError(
    KafkaErrorCode.KafkaTopicMissing,
    `Kafka topic ${list} does not exist and auto_create_topics is false: create it (kafka-topics.sh --create --topic ${topics[0]}) or set auto_create_topics: true`,
    { cause, retriable: false, details: { topic: topics.join(',') } },
  );
}

/**
 * Errors after which this producer may not write again: its epoch is no longer current.
 * Brokers answer older protocol versions with INVALID_PRODUCER_EPOCH and the versions this
 * client speaks (Produce v9+, EndTxn v3+, TxnOffsetCommit v3+) with PRODUCER_FENCED.
 */
const FENCED = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED']);

/** What `transactionFailure` needs to know about the failed step. */
export interface TransactionStep {
  /** The step, in words: "begin a transaction", "produce", "commit". */
  what: string;
  transactionalId: string | undefined;
  /** The transaction timeout the producer asked for, for the message. */
  timeoutMs: number;
  /** Topics of the records being sent, when the step was a send. */
  topics?: string[];
}

/**
 * A failed step of an exactly-once transaction, as the error the sink throws: a fencing or an
 * epoch bump is fatal and names both possible causes, auth and TLS read as elsewhere, a
 * failure retrying cannot change is non-retriable, and a transient one is retried from the
 * broker's checkpoint (the caller aborts the transaction and starts a new producer).
 */
export function transactionFailure(
  err: unknown,
  step: TransactionStep,
  config: Pick<KafkaSinkConfig, 'brokers' | 'sasl' | 'transactionalId'>,
): NanosyncError {
  if (err instanceof NanosyncError) return err;
  const lapse = leaseLapse(err);
  if (lapse !== undefined) return lapse;
  const id = step.transactionalId;
  const details = { transactional_id: id ?? '' };
  const types = typesOf(err);
  if ([...types].some((t) => FENCED.has(t))) {
    return new NanosyncError(
      KafkaErrorCode.KafkaTransaction,
      `Kafka refused the transaction (${step.what}) of transactional id "${id}": this producer's epoch is no longer current. ` +
        `Either another producer started with the same transactional id and fenced this one (is a second copy of this pipeline running?), ` +
        `or the transaction ran longer than its timeout (${step.timeoutMs} ms) and the coordinator aborted it: ${rootMessage(err)}`,
      { cause: err, retriable: false, details },
    );
  }
  if (types.has('INVALID_TRANSACTION_TIMEOUT')) {
    return new NanosyncError(
      KafkaErrorCode.KafkaTransaction,
      `Kafka refused the transaction timeout of ${step.timeoutMs} ms for transactional id "${id}" (${rootMessage(err)}): ` +
        "raise the brokers' transaction.max.timeout.ms to at least that, or lower request_timeout_ms (the timeout is derived from it)",
      { cause: err, retriable: false, details },
    );
  }
  const kind = classifyKafkaError(err);
  if (kind === 'auth') return authError(err, config, `the transaction (${step.what})`, id);
  if (kind === 'tls') return tlsError(err, config.brokers);
  if (kind === 'topic-missing' && step.topics?.length) return topicMissingError(step.topics, err);
  if (kind === 'fatal' || kind === 'too-large') {
    return new NanosyncError(
      KafkaErrorCode.KafkaTransaction,
      `Kafka transaction failed to ${step.what} (transactional id "${id}") with an error retrying cannot change: ${rootMessage(err)}; ` +
        'the transaction is aborted, nothing of it is visible to read_committed consumers',
      { cause: err, retriable: false, details },
    );
  }
  const outcome =
    step.what === 'commit'
      ? 'whether the commit reached the broker is unknown: the next attempt reads the committed position back, skips the events if it did, and writes them in a new transaction if it did not'
      : 'the transaction is aborted, nothing of it is visible to read_committed consumers, and the batch is written again in a new transaction';
  return new NanosyncError(
    KafkaErrorCode.KafkaTransaction,
    `Kafka transaction failed to ${step.what} (transactional id "${id}"): ${rootMessage(err)}; ${outcome}`,
    { cause: err, retriable: true, details },
  );
}

/** The sink's transaction retries (`max_retries`) ran out: the pipeline stops with the last failure. */
export function transactionRetriesExhausted(err: NanosyncError, attempts: number): NanosyncError {
  return new NanosyncError(
    KafkaErrorCode.KafkaTransaction,
    `Kafka transaction still failing after ${attempts} retries (max_retries): ${err.message}`,
    { cause: err, retriable: false, details: { ...(err.details ?? {}), attempts } },
  );
}
