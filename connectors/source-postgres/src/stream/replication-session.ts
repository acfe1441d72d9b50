import { type Logger, NanosyncError } from '@nanosync/core';
import type pg from 'pg';
import { LogicalReplicationService } from 'pg-logical-replication';
import type { ClientConfigWithReplication } from '../connection.js';
import { quoteIdent, quoteLiteral, PgErrorCode } from '../errors.js';
import { formatLsn, parseLsn } from '../position.js';
import type { AcknowledgerInternals } from './acknowledger.js';
import { decodePgOutput, type PgOutputMessage } from './pgoutput.js';
import { isChangeTag, type RawChangeMessage, rawChangeMessage } from './raw-changes.js';

/** One XLogData payload, decoded where it arrived so that keepalives can be ordered after it. */
interface ReceivedMessage {
  sequence: number;
  bytes: number;
  message?: PgOutputMessage | RawChangeMessage;
  error?: unknown;
}

/** The plugin shape pg-logical-replication expects (its base class is not exported). */
type ReplicationPlugin = Parameters<LogicalReplicationService['subscribe']>[0];

/**
 * pg-logical-replication plugin that starts pgoutput and hands its payloads to our decoder,
 * which keeps column values as the server's text (see pgoutput.ts for why).
 */
class PgoutputTextPlugin {
  readonly options: { publication: string; messages: boolean };

  constructor(
    publication: string,
    messages: boolean,
    private readonly receive: (payload: Buffer) => ReceivedMessage,
  ) {
    this.options = { publication, messages };
  }

  get name(): string {
    return 'pgoutput';
  }

  /**
   * `0/0` lets the server start at the slot's confirmed_flush_lsn. Protocol version 1: the
   * server sends each transaction once it committed, which is what gives every event its
   * final position (the commit LSN) up front. Streaming of in-progress transactions
   * (version 2) would deliver changes before their commit LSN is known, and could deliver
   * changes of transactions that later abort.
   */
  start(client: pg.Client, slotName: string): Promise<unknown> {
    const publications = quoteLiteral(quoteIdent(this.options.publication));
    return client.query(
      `START_REPLICATION SLOT ${quoteIdent(slotName)} LOGICAL 0/0 (proto_version '1', publication_names ${publications}${this.options.messages ? ", messages 'true'" : ''})`,
    );
  }

  parse(payload: Buffer): ReceivedMessage {
    return this.receive(payload);
  }
}

const STOP_GRACE_MS = 2000;

/** The socket under the library's pg connection (not public API; used only to force a close). */
function socketOf(service: LogicalReplicationService): { destroy(): void } | undefined {
  const connection = (service as unknown as { _connection?: { stream?: { destroy?: () => void } } })._connection;
  const stream = connection?.stream;
  return stream && typeof stream.destroy === 'function' ? (stream as { destroy(): void }) : undefined;
}

export interface SessionCallbacks {
  /** Replication started: the server accepted START_REPLICATION. */
  started(): void;
  /** Each message in stream order; the next one waits until the promise settles (backpressure). */
  message(message: PgOutputMessage | RawChangeMessage, bytes: number): Promise<void>;
  /** The server's WAL position from a keepalive, delivered after every message received before it. */
  keepalive(walEnd: bigint): void;
}

export interface SessionOptions {
  clientConfig: ClientConfigWithReplication;
  slot: string;
  publication: string;
  /** Ask for logical decoding messages (`pg_logical_emit_message`; PostgreSQL 14 and later). */
  messages?: boolean;
  /** Payloads of logical messages with another prefix are not copied (see `decodePgOutput`). */
  keepMessagePrefix?: string;
  /** Leave Insert, Update and Delete messages undecoded (`RawChangeMessage`), for worker threads. */
  rawChanges?: boolean;
  acknowledger: AcknowledgerInternals;
  logger: Logger;
  /** Standby status updates at least this often, even while reading is paused (default 10 s). */
  statusIntervalMs: number;
  signal: AbortSignal;
  callbacks: SessionCallbacks;
}

/**
 * One replication connection, from START_REPLICATION until it fails or `signal` aborts.
 * Resolves only when aborted; every other end (server error, connection loss, the server
 * closing the stream) rejects, and the caller decides whether to reconnect.
 *
 * Flow control: pg-logical-replication pauses the socket while our message handler runs;
 * the handler waits for room in the batch queue, so a slow consumer stops reads, TCP's
 * window fills and the walsender blocks. Keepalives are answered and status updates sent on
 * a timer while paused, so the server never times the connection out for being quiet.
 *
 * Acknowledgement: automatic acknowledgement is off. Every status update reports the
 * acknowledger's flush LSN as write, flush and apply position, so the slot moves only to
 * what core confirmed.
 */
export function runReplicationSession(options: SessionOptions): Promise<void> {
  const { acknowledger, callbacks, logger } = options;
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let receivedSequence = 0;
    let handledSequence = 0;
    let waitingKeepalive: { afterSequence: number; walEnd: bigint } | undefined;

    const service = new LogicalReplicationService(options.clientConfig, {
      acknowledge: { auto: false, timeoutSeconds: 0 },
      flowControl: { enabled: true },
    });

    const sendStatus = () => {
      if (settled) return;
      const flush = acknowledger.flushLsn;
      if (flush === 0n) return;
      // The library reports "last byte received + 1": pass the byte before our flush LSN.
      service.acknowledge(formatLsn(flush - 1n)).catch((err: unknown) => {
        logger.debug('standby status update failed', { error: (err as Error).message });
      });
    };

    const releaseKeepalive = () => {
      if (waitingKeepalive && waitingKeepalive.afterSequence <= handledSequence) {
        const { walEnd } = waitingKeepalive;
        waitingKeepalive = undefined;
        callbacks.keepalive(walEnd);
      }
    };

    const timer = setInterval(sendStatus, options.statusIntervalMs);
    timer.unref();
    const stopListening = acknowledger.onChange(sendStatus);
    const onAbort = () => finish();
    options.signal.addEventListener('abort', onAbort, { once: true });

    function finish(error?: unknown): void {
      if (settled) return;
      settled = true;
      clearInterval(timer);
      stopListening();
      options.signal.removeEventListener('abort', onAbort);
      // stop() ends the client politely and waits for the socket to close, which never
      // happens while the library's flow control keeps the socket paused (a handler still
      // waiting for queue space): destroy the socket if the polite way takes too long.
      const socket = socketOf(service);
      const stopped = service.stop().catch(() => {});
      let forceTimer: NodeJS.Timeout | undefined;
      const forced = new Promise<void>((done) => {
        forceTimer = setTimeout(() => {
          socket?.destroy();
          done();
        }, STOP_GRACE_MS);
      });
      void Promise.race([stopped, forced]).then(() => {
        clearTimeout(forceTimer);
        if (error === undefined) resolve();
        else reject(error);
      });
    }

    const decodeOptions =
      options.keepMessagePrefix !== undefined ? { keepMessagePrefix: options.keepMessagePrefix } : {};
    const plugin = new PgoutputTextPlugin(options.publication, options.messages === true, (payload) => {
      const sequence = ++receivedSequence;
      try {
        if (options.rawChanges === true && isChangeTag(payload[0]))
          return { sequence, bytes: payload.length, message: rawChangeMessage(payload) };
        return { sequence, bytes: payload.length, message: decodePgOutput(payload, decodeOptions) };
      } catch (error) {
        return { sequence, bytes: payload.length, error };
      }
    });

    service.on('start', () => {
      if (settled) return;
      callbacks.started();
      sendStatus();
    });

    service.on('data', async (_lsn: string, received: ReceivedMessage) => {
      if (settled) return;
      try {
        if (received.error !== undefined) throw received.error;
        await callbacks.message(received.message as PgOutputMessage | RawChangeMessage, received.bytes);
      } catch (error) {
        finish(error);
        return;
      }
      handledSequence = received.sequence;
      releaseKeepalive();
    });

    service.on('heartbeat', (lsn: string, _timestamp: number, shouldRespond: boolean) => {
      if (settled) return;
      if (shouldRespond) sendStatus();
      waitingKeepalive = { afterSequence: receivedSequence, walEnd: parseLsn(lsn) };
      releaseKeepalive();
    });

    service.on('error', (error: Error) => finish(error));

    if (options.signal.aborted) {
      finish();
      return;
    }
    service.subscribe(plugin satisfies ReplicationPlugin, options.slot).then(
      () =>
        finish(
          new NanosyncError(
            PgErrorCode.PgConnection,
            `the server ended the replication stream of slot "${options.slot}"`,
            { retriable: true },
          ),
        ),
      (error: unknown) => finish(error),
    );
  });
}
