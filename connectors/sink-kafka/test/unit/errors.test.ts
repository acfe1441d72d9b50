import { NanosyncError } from '@nanosync/core';
import kafkajs from 'kafkajs';
import { describe, expect, test } from 'vitest';
import { parseKafkaSinkConfig, transactionTimeoutMs } from '../../src/config.js';
import {
  authError,
  classifyKafkaError,
  KafkaErrorCode,
  tlsError,
  transactionFailure,
  transactionRetriesExhausted,
} from '../../src/errors.js';

const {
  KafkaJSProtocolError,
  KafkaJSConnectionError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSSASLAuthenticationError,
  KafkaJSNonRetriableError,
} = kafkajs as unknown as Record<string, new (...args: unknown[]) => Error>;

const protocol = (type: string, retriable: boolean) =>
  new KafkaJSProtocolError!({ message: type, type, code: 1, retriable });
const exceeded = (cause: Error) => new KafkaJSNumberOfRetriesExceeded!(cause, { retryCount: 2, retryTime: 100 });
const nonRetriable = (cause: Error) => new KafkaJSNonRetriableError!(cause, { cause });

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

describe('kafkajs failure classification', () => {
  test.each([
    ['message too large', protocol('MESSAGE_TOO_LARGE', false), 'too-large'],
    ['record list too large', nonRetriable(protocol('RECORD_LIST_TOO_LARGE', false)), 'too-large'],
    ['SASL failure', new KafkaJSSASLAuthenticationError!('SASL SCRAM SHA256 authentication failed'), 'auth'],
    ['SASL mechanism not offered', protocol('UNSUPPORTED_SASL_MECHANISM', false), 'auth'],
    ['topic ACL', protocol('TOPIC_AUTHORIZATION_FAILED', false), 'auth'],
    ['transactional id ACL', protocol('TRANSACTIONAL_ID_AUTHORIZATION_FAILED', false), 'auth'],
    [
      'untrusted certificate',
      new KafkaJSConnectionError!('Connection error: self-signed certificate in certificate chain', {
        code: 'SELF_SIGNED_CERT_IN_CHAIN',
      }),
      'tls',
    ],
    [
      'certificate from another CA',
      new KafkaJSConnectionError!('Connection error: unable to get local issuer certificate', {
        code: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
      }),
      'tls',
    ],
    ['lost producer id', protocol('UNKNOWN_PRODUCER_ID', false), 'producer-state'],
    ['fenced or timed-out epoch', protocol('INVALID_PRODUCER_EPOCH', false), 'producer-state'],
    [
      'broker down, retries exhausted',
      exceeded(new KafkaJSConnectionError!('Connection error: connect ECONNREFUSED', { code: 'ECONNREFUSED' })),
      'retriable',
    ],
    ['leader moved', protocol('NOT_LEADER_OR_FOLLOWER', true), 'retriable'],
    ['coordinator busy', protocol('CONCURRENT_TRANSACTIONS', true), 'retriable'],
    ['unknown topic, not retriable', protocol('UNKNOWN_TOPIC_OR_PARTITION', false), 'topic-missing'],
    ['invalid record', protocol('INVALID_RECORD', false), 'fatal'],
    ['invalid transaction state', protocol('INVALID_TXN_STATE', false), 'fatal'],
  ])('%s → %s', (_, error, kind) => {
    expect(classifyKafkaError(error)).toBe(kind);
  });
});

describe('exactly-once transaction failures', () => {
  /** [case, error, step, code, retriable, the message must match]. */
  test.each([
    [
      'an epoch no longer current: fenced, or timed out',
      protocol('INVALID_PRODUCER_EPOCH', false),
      'produce',
      KafkaErrorCode.KafkaTransaction,
      false,
      /another producer started with the same transactional id.*second copy.*or the transaction ran longer than its timeout \(470000 ms\)/,
    ],
    [
      'a transactional id ACL is an auth failure, not a fencing',
      protocol('TRANSACTIONAL_ID_AUTHORIZATION_FAILED', false),
      'begin a transaction',
      KafkaErrorCode.KafkaAuth,
      false,
      /denied User:cdc the transactional id "nanosync\.p\.abc".*not a fencing.*--transactional-id nanosync\.p\.abc/,
    ],
    [
      'a timeout the broker does not allow',
      protocol('INVALID_TRANSACTION_TIMEOUT', false),
      'begin a transaction',
      KafkaErrorCode.KafkaTransaction,
      false,
      /transaction timeout of 470000 ms.*transaction\.max\.timeout\.ms.*request_timeout_ms/,
    ],
    [
      'a permanent failure is not retried',
      nonRetriable(protocol('INVALID_TXN_STATE', false)),
      'commit',
      KafkaErrorCode.KafkaTransaction,
      false,
      /failed to commit .*retrying cannot change/,
    ],
    [
      'a busy coordinator is retried',
      protocol('CONCURRENT_TRANSACTIONS', true),
      'begin a transaction',
      KafkaErrorCode.KafkaTransaction,
      true,
      /nothing of it is visible to read_committed consumers, and the batch is written again in a new transaction$/,
    ],
    [
      'a commit cut off has an unknown outcome, which the retry settles',
      new KafkaJSConnectionError!('Connection closed', { code: 'ECONNRESET' }),
      'commit',
      KafkaErrorCode.KafkaTransaction,
      true,
      /failed to commit \(transactional id "nanosync\.p\.abc"\): Connection closed; whether the commit reached the broker is unknown: the next attempt reads the committed position back, skips the events if it did, and writes them in a new transaction if it did not$/,
    ],
    [
      'a lost producer id is retried with a new producer',
      protocol('UNKNOWN_PRODUCER_ID', false),
      'produce',
      KafkaErrorCode.KafkaTransaction,
      true,
      /UNKNOWN_PRODUCER_ID/,
    ],
    [
      'a missing topic names it',
      protocol('UNKNOWN_TOPIC_OR_PARTITION', false),
      'produce',
      KafkaErrorCode.KafkaTopicMissing,
      false,
      /"orders"/,
    ],
  ] as const)('%s', (_, error, what, code, retriable, message) => {
    const failure = transactionFailure(error, step(what, ['orders']), config);
    expect(failure.code).toBe(code);
    expect(failure.retriable).toBe(retriable);
    expect(failure.message).toMatch(message);
    expect(failure.message).not.toContain(PASSWORD);
  });

  test('exhausted retries are not retriable and keep the last failure', () => {
    const last = transactionFailure(protocol('CONCURRENT_TRANSACTIONS', true), step('begin a transaction'), config);
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
      new KafkaJSSASLAuthenticationError!('SASL SCRAM SHA512 authentication failed: invalid credentials'),
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
    const error = authError(protocol('ILLEGAL_SASL_STATE', false), plain, 'connect to Kafka');
    expect(error.message).toMatch(/asked for SASL authentication .* no sasl_mechanism is set/);
  });

  test('a denied topic names the principal', () => {
    const error = authError(protocol('TOPIC_AUTHORIZATION_FAILED', false), config, 'produce');
    expect(error.message).toMatch(/^Kafka denied User:cdc produce at b1:9093,b2:9093/);
  });

  test('a TLS verification failure names the broker it talked to and the failure', () => {
    const error = tlsError(
      new KafkaJSConnectionError!('Connection error: self-signed certificate in certificate chain', {
        broker: 'b2:9093',
        code: 'SELF_SIGNED_CERT_IN_CHAIN',
      }),
      config.brokers,
    );
    expect(error.code).toBe(KafkaErrorCode.KafkaConnection);
    expect(error.retriable).toBe(false);
    expect(error.message).toMatch(
      /^TLS verification of the broker certificate at b2:9093 failed \(SELF_SIGNED_CERT_IN_CHAIN\): Connection error: self-signed certificate in certificate chain\. Set tls_ca_cert/,
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
