/**
 * Installs the sink's own Produce request encoder (produce-request.ts) on one producer of
 * @platformatic/kafka, through the client's extension point `kGetApi`: asked for 'Produce',
 * the producer gets an API of the version the broker negotiated whose request comes from
 * `encodeProduceRequest` and whose response the client's own parser reads. Everything else
 * (connections, retries, sequence numbers, transactions) stays the client's.
 *
 * Only for the client version the encoder was checked against (its bytes are compared with that
 * version's in test/unit/produce-request.test.ts); any other version keeps the client's encoder
 * and says so once. `NANOSYNC_KAFKA_CLIENT_ENCODER=1` keeps the client's encoder too.
 */
import type { Logger } from '@nanosync/core';
import * as kafka from '@platformatic/kafka';
import { clientSoftwareVersion, createAPI, kGetApi, type Producer, UserError } from '@platformatic/kafka';
import { RecordSequences } from './packed-records.js';
import { type CreateRequest, encodeProduceRequest, type RequestWriter } from './produce-request.js';

/** The client version whose Produce bytes produce-request.ts reproduces. */
export const CHECKED_CLIENT_VERSION = '2.12.1';

interface ProduceModule {
  createRequest: CreateRequest;
  createRequestAsync?: CreateRequest;
  parseResponse: (...args: never[]) => unknown;
}
type GetApi = (name: string, callback: (error: Error | null, api?: ApiFunction) => void) => void;
type ApiFunction = ((...args: unknown[]) => void) & { version: number };

const modules = kafka as unknown as Record<string, ProduceModule | undefined>;

/** The client's own Produce request of a version: gzip asynchronously where the client does so. */
export function clientProduceRequest(version: number): CreateRequest | undefined {
  const mod = modules[`produceV${version}`];
  if (!mod?.createRequest) return undefined;
  const { createRequest, createRequestAsync } = mod;
  return createRequestAsync
    ? (acks, timeout, topicData, options) =>
        options?.compression === 'gzip'
          ? createRequestAsync(acks, timeout, topicData, options)
          : createRequest(acks, timeout, topicData, options)
    : createRequest;
}

/**
 * The request of `version` as the sink encodes it (the client's for what it does not cover),
 * with one producer's record sequence numbers when given (needed for packs of records).
 * `beforeSend` runs once the request's bytes are ready (after compression, which for gzip takes
 * a turn of zlib's thread pool), just before the client hands them to the socket; a throw there
 * sends nothing and fails the request, which the client does not retry (the thrown error is the
 * failure's `cause`).
 */
export function fastProduceRequest(
  version: number,
  sequences?: RecordSequences,
  beforeSend?: () => void,
): CreateRequest | undefined {
  if (version < 3 || version > 11) return undefined;
  const fallback = clientProduceRequest(version);
  if (!fallback) return undefined;
  if (beforeSend === undefined)
    return (acks, timeout, topicData, options) =>
      encodeProduceRequest(version, fallback, acks, timeout, topicData, options, sequences);
  const ready = (request: RequestWriter): RequestWriter => {
    try {
      beforeSend();
    } catch (err) {
      // Wrapped in the client's own error that it does not retry (it retries anything else).
      throw new UserError(`Produce request not sent: ${(err as Error).message}`, { cause: err as Error });
    }
    return request;
  };
  return (acks, timeout, topicData, options) => {
    const request = encodeProduceRequest(version, fallback, acks, timeout, topicData, options, sequences);
    return request instanceof Promise ? request.then(ready) : ready(request);
  };
}

function fastApi(version: number, sequences: RecordSequences, beforeSend?: () => void): ApiFunction | undefined {
  const request = fastProduceRequest(version, sequences, beforeSend);
  const parse = modules[`produceV${version}`]?.parseResponse;
  const flexible = version >= 9;
  return request && parse
    ? (createAPI(0, version, request, parse as never, flexible, flexible) as unknown as ApiFunction)
    : undefined;
}

/**
 * Producers whose Produce requests the sink encodes: they take packs of records
 * (packed-records.ts). The checked client speaks Produce v3 to v11 only, and the sink encodes
 * each of them, so such a producer never hands a pack to the client's encoder.
 */
const fastProducers = new WeakSet<Producer>();

/** Whether `producer` encodes with the sink's encoder, so its `send` may take packs of records. */
export function takesPackedRecords(producer: Producer): boolean {
  return fastProducers.has(producer);
}

let reported = false;

/** Whether this process uses the sink's encoder: the checked client version, and not switched off. */
export function fastProduceEnabled(logger?: Logger): boolean {
  const off = process.env.NANOSYNC_KAFKA_CLIENT_ENCODER === '1';
  const enabled = !off && clientSoftwareVersion === CHECKED_CLIENT_VERSION;
  if (!enabled && !reported && logger) {
    reported = true;
    logger.info(
      off
        ? 'kafka produce requests encoded by the client (NANOSYNC_KAFKA_CLIENT_ENCODER=1)'
        : `kafka produce requests encoded by the client: @platformatic/kafka ${clientSoftwareVersion} is not the version the sink's encoder was checked against (${CHECKED_CLIENT_VERSION})`,
    );
  }
  return enabled;
}

/**
 * Make `producer` encode its Produce requests with the sink's encoder (see the module comment),
 * running `beforeSend` on each request's finished bytes (see `fastProduceRequest`).
 */
export function installFastProduce<P extends Producer>(producer: P, logger?: Logger, beforeSend?: () => void): P {
  if (!fastProduceEnabled(logger)) return producer;
  const internals = producer as unknown as { [kGetApi]: GetApi };
  const original = internals[kGetApi].bind(producer) as GetApi;
  // This producer's own APIs: its record sequence numbers are its own.
  const sequences = new RecordSequences();
  const apis = new Map<number, ApiFunction | null>();
  internals[kGetApi] = (name, callback) => {
    if (name !== 'Produce') return original(name, callback);
    original(name, (error, api) => {
      if (error || !api) return callback(error, api);
      let fast = apis.get(api.version);
      if (fast === undefined) {
        fast = fastApi(api.version, sequences, beforeSend) ?? null;
        apis.set(api.version, fast);
      }
      callback(null, fast ?? api);
    });
  };
  fastProducers.add(producer);
  return producer;
}
