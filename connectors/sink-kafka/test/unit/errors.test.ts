import kafkajs from 'kafkajs';
import { describe, expect, test } from 'vitest';
import { classifyKafkaError } from '../../src/errors.js';

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

describe('kafkajs failure classification', () => {
  test.each([
    ['message too large', protocol('MESSAGE_TOO_LARGE', false), 'too-large'],
    [
      'record list too large',
      new KafkaJSNonRetriableError!(protocol('RECORD_LIST_TOO_LARGE', false), {
        cause: protocol('RECORD_LIST_TOO_LARGE', false),
      }),
      'too-large',
    ],
    ['SASL failure', new KafkaJSSASLAuthenticationError!('SASL SCRAM SHA256 authentication failed'), 'auth'],
    ['topic ACL', protocol('TOPIC_AUTHORIZATION_FAILED', false), 'auth'],
    [
      'untrusted certificate',
      new KafkaJSConnectionError!('Connection error: self-signed certificate in certificate chain', {
        code: 'SELF_SIGNED_CERT_IN_CHAIN',
      }),
      'tls',
    ],
    ['lost producer id', protocol('UNKNOWN_PRODUCER_ID', false), 'producer-state'],
    [
      'broker down, retries exhausted',
      exceeded(new KafkaJSConnectionError!('Connection error: connect ECONNREFUSED', { code: 'ECONNREFUSED' })),
      'retriable',
    ],
    ['leader moved', protocol('NOT_LEADER_OR_FOLLOWER', true), 'retriable'],
    ['invalid record', protocol('INVALID_RECORD', false), 'fatal'],
  ])('%s → %s', (_, error, kind) => {
    expect(classifyKafkaError(error)).toBe(kind);
  });
});
