import type { ChangeEvent, ConnectorContext, TableSchema } from '@nanosync/core';
import { ProtocolError, ResponseError } from '@platformatic/kafka';
import { describe, expect, test } from 'vitest';
import { parseKafkaSinkConfig, transactionTimeoutMs } from '../../src/config.js';
import { KafkaErrorCode, transactionFailure } from '../../src/errors.js';
import type { KafkaProducer } from '../../src/producer.js';
import { KafkaSink } from '../../src/sink.js';

/** A coordinator's refusal as the client delivers it (a ResponseError holding the ProtocolError). */
const refusal = (code: string) =>
  new ResponseError(26, 3, { '/': [new ProtocolError(code).apiCode as number, null] }, {});

const table: TableSchema = {
  schema: 'public',
  name: 't',
  keyColumns: ['id'],
  columns: [{ name: 'id', type: { kind: 'int32' }, nullable: false }],
};
const insert = (id: number): ChangeEvent => ({ table, op: 'insert', key: { id }, after: { id }, position: `p${id}` });
const quiet = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

/**
 * A stand-in for the producer (named as such: a coordinator refusing every transaction for
 * as long as a test wants cannot be arranged on a real broker): every transaction start fails
 * with the error given, and the retry budget is `max_retries` as in KafkaProducer.retryAfter.
 */
function fakeProducer(maxRetries: number, failure: () => Error) {
  const calls = { begin: 0, abort: 0, retries: 0 };
  const config = parseKafkaSinkConfig({ brokers: 'b:9092', delivery: 'exactly_once', max_retries: maxRetries });
  const producer = {
    async connect() {},
    async ensureTopics() {},
    async disconnect() {},
    isCompacted: () => false,
    async beginTransaction() {
      calls.begin += 1;
      throw transactionFailure(
        failure(),
        { what: 'begin a transaction', transactionalId: 'tx', timeoutMs: transactionTimeoutMs(config) },
        config,
      );
    },
    async abortTransaction() {
      calls.abort += 1;
    },
    async retryAfter(_what: string, attempt: number) {
      if (attempt >= maxRetries) return false;
      calls.retries += 1;
      return true;
    },
  };
  const context: ConnectorContext = { pipeline: 'p', logger: quiet, signal: new AbortController().signal };
  return { sink: new KafkaSink(config, context, producer as unknown as KafkaProducer), calls };
}

describe('exactly_once transaction retries', () => {
  test('a transient refusal is retried max_retries times, then stops the pipeline (not retriable)', async () => {
    const { sink, calls } = fakeProducer(3, () => refusal('CONCURRENT_TRANSACTIONS'));
    await sink.open([table]);
    const error = await sink.write([insert(1)]).catch((e: unknown) => e);
    expect(calls).toEqual({ begin: 4, abort: 0, retries: 3 });
    expect(error).toMatchObject({ code: KafkaErrorCode.KafkaTransaction, retriable: false });
    expect((error as Error).message).toMatch(/^Kafka transaction still failing after 3 retries \(max_retries\)/);
  });

  test('a fatal refusal is not retried at all', async () => {
    const { sink, calls } = fakeProducer(3, () => refusal('INVALID_TXN_STATE'));
    await sink.open([table]);
    const error = await sink.write([insert(1)]).catch((e: unknown) => e);
    expect(calls.begin).toBe(1);
    expect(error).toMatchObject({ code: KafkaErrorCode.KafkaTransaction, retriable: false });
  });
});
