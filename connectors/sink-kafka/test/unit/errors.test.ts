import { NanosyncError } from '@nanosync/core';
import {
  AuthenticationError,
  MultipleErrors,
  NetworkError,
  ProtocolError,
  ResponseError,
  TimeoutError,
  UserError,
} from '@platformatic/kafka';
import { describe, expect, test } from 'vitest';
import { parseKafkaSinkConfig, transactionTimeoutMs } from '../../src/config.js';
import {
  authError,
  classifyKafkaError,
  KafkaErrorCode,
  rootMessage,
  tlsError,
  transactionFailure,
  transactionRetriesExhausted,
} from '../../src/errors.js';

// Errors built with the client's own classes, shaped as it delivers them: a broker's refusal
// is a ResponseError holding one ProtocolError per partition, a request that failed after its
// retries is a MultipleErrors holding one error per attempt.
const PRODUCE = 0;
const refusal = (code: string, server: string | null = null) =>
  new ResponseError(PRODUCE, 11, { '/topics/0/partitions/0': [errorId(code), server] }, {});
const attempts = (...errors: Error[]) => new MultipleErrors(`produce failed ${errors.length} times.`, errors);
const socket = (code: string, message: string) => Object.assign(new Error(message), { code });
const unreachable = () =>
  new NetworkError('Connection to localhost:1 failed.', {
    cause: socket('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1'),
  });
/** A topic the broker does not know, after the client's retries (it retries UNKNOWN_TOPIC_OR_PARTITION itself). */
const unknownTopic = () =>
  attempts(Object.assign(refusal('UNKNOWN_TOPIC_OR_PARTITION'), {}), notRetriable('UNKNOWN_TOPIC_OR_PARTITION'));
/** A ProtocolError the broker marks as final (canRetry false), as metadata answers carry it. */
const notRetriable = (code: string) => new ProtocolError(code, null, { canRetry: false });

/** Kafka's numeric error code for a name, from the client's own table. */
function errorId(name: string): number {
  return new ProtocolError(name).apiCode as number;
}

const PASSWORD = 'Sup3r-s3cret';
const config = parseKafkaSinkConfig({
  brokers: 'b1:9093,b2:9093',
  sasl_mechanism: 'SCRAM-SHA-512',
  sasl_username: 'cdc',
  sasl_password: PASSWORD,
  delivery: 'exactly_once',
});
const step = (what: string, topics?: string[]) => ({
  what,
  transactionalId: 'nanosync.p.abc',
  timeoutMs: transactionTimeoutMs(config),
  ...(topics ? { topics } : {}),
});

describe('@platformatic/kafka failure classification', () => {
  test.each([
    ['message too large', attempts(refusal('MESSAGE_TOO_LARGE')), 'too-large'],
    ['record list too large', refusal('RECORD_LIST_TOO_LARGE'), 'too-large'],
    [
      'SASL failure',
      new AuthenticationError('SASL authentication failed.', { cause: refusal('SASL_AUTHENTICATION_FAILED') }),
      'auth',
    ],
    ['SASL mechanism not offered', refusal('UNSUPPORTED_SASL_MECHANISM'), 'auth'],
    ['topic ACL', attempts(refusal('TOPIC_AUTHORIZATION_FAILED')), 'auth'],
    ['transactional id ACL', refusal('TRANSACTIONAL_ID_AUTHORIZATION_FAILED'), 'auth'],
    [
      'untrusted certificate',
      new NetworkError('Connection to broker:9093 failed.', {
        cause: socket('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain'),
      }),
      'tls',
    ],
    [
      'certificate from another CA',
      new NetworkError('Connection to broker:9093 failed.', {
        cause: socket('UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'unable to get local issuer certificate'),
      }),
      'tls',
    ],
    ['lost producer id', attempts(refusal('UNKNOWN_PRODUCER_ID')), 'producer-state'],
    ['out of order sequence', refusal('OUT_OF_ORDER_SEQUENCE_NUMBER'), 'producer-state'],
    ['fenced or timed-out epoch', refusal('INVALID_PRODUCER_EPOCH'), 'producer-state'],
    ['broker down, retries exhausted', attempts(unreachable(), unreachable(), unreachable()), 'retriable'],
    ['request timeout', attempts(new TimeoutError('Request timed out.')), 'retriable'],
    ['leader moved', attempts(refusal('NOT_LEADER_OR_FOLLOWER')), 'retriable'],
    ['not enough replicas', refusal('NOT_ENOUGH_REPLICAS'), 'retriable'],
    ['coordinator busy', refusal('CONCURRENT_TRANSACTIONS'), 'retriable'],
    ['unknown topic, not retriable', unknownTopic(), 'topic-missing'],
    ['invalid record', refusal('INVALID_RECORD'), 'fatal'],
    ['invalid transaction state', refusal('INVALID_TXN_STATE'), 'fatal'],
    ['closed client', new NetworkError('Client is closed.', { canRetry: false, closed: true }), 'fatal'],
    ['misuse', new UserError('Cannot produce to an already completed transaction.'), 'fatal'],
  ])('%s → %s', (_, error, kind) => {
    expect(classifyKafkaError(error)).toBe(kind);
  });
});

describe('rootMessage: the cause, not the wrappers', () => {
  test("a broker's refusal names Kafka's error and the broker's reason", () => {
    const message = rootMessage(attempts(refusal('MESSAGE_TOO_LARGE', 'batch of 2000000 bytes')));
    expect(message).toMatch(/^MESSAGE_TOO_LARGE: /);
    expect(message).toContain('(batch of 2000000 bytes)');
    expect(message).not.toMatch(/failed \d times|Received response with error/);
  });

  test('a network failure names the broker and the socket error', () => {
    expect(rootMessage(attempts(unreachable(), unreachable()))).toBe(
      'Connection to localhost:1 failed. connect ECONNREFUSED 127.0.0.1:1',
    );
  });

  test('a SASL failure nested in MultipleErrors surfaces the broker reason', () => {
    const error = attempts(
      new AuthenticationError('SASL authentication failed.', {
        cause: refusal(
          'SASL_AUTHENTICATION_FAILED',
          'Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256',
        ),
      }),
    );
    expect(rootMessage(error)).toContain('SASL_AUTHENTICATION_FAILED');
    expect(rootMessage(error)).toContain('invalid credentials with SASL mechanism SCRAM-SHA-256');
  });
});

describe('exactly-once transaction failures', () => {
  /** [case, error, step, code, retriable, the message must match]. */
  test.each([
    [
      'an epoch no longer current: fenced, or timed out',
      refusal('INVALID_PRODUCER_EPOCH'),
      'produce',
      KafkaErrorCode.KafkaTransaction,
      false,
      /another producer started with the same transactional id.*second copy.*or the transaction ran longer than its timeout \(470000 ms\)/,
    ],
    [
      'a transactional id ACL is an auth failure, not a fencing',
      refusal('TRANSACTIONAL_ID_AUTHORIZATION_FAILED'),
      'begin a transaction',
      KafkaErrorCode.KafkaAuth,
      false,
      /denied User:cdc the transactional id "nanosync\.p\.abc".*not a fencing.*--transactional-id nanosync\.p\.abc/,
    ],
    [
      'a timeout the broker does not allow',
      refusal('INVALID_TRANSACTION_TIMEOUT'),
      'begin a transaction',
      KafkaErrorCode.KafkaTransaction,
      false,
      /transaction timeout of 470000 ms.*transaction\.max\.timeout\.ms.*request_timeout_ms/,
    ],
    [
      'a permanent failure is not retried',
      attempts(refusal('INVALID_TXN_STATE')),
      'commit',
      KafkaErrorCode.KafkaTransaction,
      false,
      /failed to commit .*retrying cannot change/,
    ],
    [
      'a busy coordinator is retried',
      refusal('CONCURRENT_TRANSACTIONS'),
      'begin a transaction',
      KafkaErrorCode.KafkaTransaction,
      true,
      /nothing of it is visible to read_committed consumers, and the batch is written again in a new transaction$/,
    ],
    [
      'a commit cut off has an unknown outcome, which the retry settles',
      new NetworkError('Connection closed'),
      'commit',
      KafkaErrorCode.KafkaTransaction,
      true,
      /failed to commit \(transactional id "nanosync\.p\.abc"\): Connection closed; whether the commit reached the broker is unknown: the next attempt reads the committed position back, skips the events if it did, and writes them in a new transaction if it did not$/,
    ],
    [
      'a lost producer id is retried with a new producer',
      refusal('UNKNOWN_PRODUCER_ID'),
      'produce',
      KafkaErrorCode.KafkaTransaction,
      true,
      /UNKNOWN_PRODUCER_ID/,
    ],
    ['a missing topic names it', unknownTopic(), 'produce', KafkaErrorCode.KafkaTopicMissing, false, /"orders"/],
  ] as const)('%s', (_, error, what, code, retriable, message) => {
    const failure = transactionFailure(error, step(what, ['orders']), config);
    expect(failure.code).toBe(code);
    expect(failure.retriable).toBe(retriable);
    expect(failure.message).toMatch(message);
    expect(failure.message).not.toContain(PASSWORD);
  });

  test('exhausted retries are not retriable and keep the last failure', () => {
    const last = transactionFailure(refusal('CONCURRENT_TRANSACTIONS'), step('begin a transaction'), config);
    const error = transactionRetriesExhausted(last, 5);
    expect(error.code).toBe(KafkaErrorCode.KafkaTransaction);
    expect(error.retriable).toBe(false);
    expect(error.message).toMatch(
      /^Kafka transaction still failing after 5 retries \(max_retries\): Kafka transaction/,
    );
    expect(error.details).toMatchObject({ attempts: 5, transactional_id: 'nanosync.p.abc' });
  });

  test('an error the sink already made passes through unchanged', () => {
    const own = new NanosyncError(KafkaErrorCode.KafkaMessageTooLarge, 'too large', { retriable: false });
    expect(transactionFailure(own, step('produce'), config)).toBe(own);
  });
});

describe('auth and TLS errors', () => {
  test('a failed login names the mechanism, the user and the broker, never the password', () => {
    const error = authError(
      attempts(
        new AuthenticationError('SASL authentication failed.', {
          cause: refusal('SASL_AUTHENTICATION_FAILED', 'invalid credentials with SASL mechanism SCRAM-SHA-512'),
        }),
      ),
      config,
      'connect to Kafka',
    );
    expect(error.code).toBe(KafkaErrorCode.KafkaAuth);
    expect(error.retriable).toBe(false);
    expect(error.message).toMatch(/^SASL SCRAM-SHA-512 authentication as user "cdc" failed at b1:9093,b2:9093/);
    expect(error.message).toContain('sasl_password');
    expect(error.message).not.toContain(PASSWORD);
    expect(error.details).toMatchObject({ mechanism: 'SCRAM-SHA-512', username: 'cdc' });
  });

  test('a broker wanting a login the config does not give says so', () => {
    const plain = parseKafkaSinkConfig({ brokers: 'b1:9093' });
    const error = authError(refusal('ILLEGAL_SASL_STATE'), plain, 'connect to Kafka');
    expect(error.message).toMatch(/asked for SASL authentication .* no sasl_mechanism is set/);
  });

  test('a denied topic names the principal', () => {
    const error = authError(attempts(refusal('TOPIC_AUTHORIZATION_FAILED')), config, 'produce');
    expect(error.message).toMatch(/^Kafka denied User:cdc produce at b1:9093,b2:9093/);
  });

  test('a TLS verification failure names the broker it talked to and the failure', () => {
    const error = tlsError(
      attempts(
        new NetworkError('Connection to b2:9093 failed.', {
          cause: socket('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain'),
        }),
      ),
      config.brokers,
    );
    expect(error.code).toBe(KafkaErrorCode.KafkaConnection);
    expect(error.retriable).toBe(false);
    expect(error.message).toMatch(
      /^TLS verification of the broker certificate at b2:9093 failed \(SELF_SIGNED_CERT_IN_CHAIN\): Connection to b2:9093 failed\. self-signed certificate in certificate chain\. Set tls_ca_cert/,
    );
  });
});

describe('transaction timeout', () => {
  test('five worst-case requests (3 attempts of request_timeout_ms and the backoff), at most 15 minutes', () => {
    expect(transactionTimeoutMs({ requestTimeoutMs: 30_000 })).toBe(470_000);
    expect(transactionTimeoutMs({ requestTimeoutMs: 5_000 })).toBe(95_000);
    expect(transactionTimeoutMs({ requestTimeoutMs: 120_000 })).toBe(900_000);
  });
});
