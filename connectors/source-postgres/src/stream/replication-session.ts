import { type Logger, NanosyncError } from '@nanosync/core';
import pg from 'pg';
import type { ClientConfigWithReplication } from '../connection.js';
import { quoteIdent, quoteLiteral, PgErrorCode } from '../errors.js';
import type { AcknowledgerInternals } from './acknowledger.js';
import { CopyDataReader } from './copy-data-reader.js';
import { type DecodeOptions, decodePgOutput, type PgOutputMessage } from './pgoutput.js';
import { isChangeTag, type RawChangeMessage, rawChangeMessage } from './raw-changes.js';

const STOP_GRACE_MS = 2000;

/** CopyData payloads of the streaming replication protocol: XLogData and the primary keepalive. */
const XLOG_DATA = 0x77; // 'w'
const PRIMARY_KEEPALIVE = 0x6b; // 'k'
/** 'w' · WAL start (8) · WAL end (8) · send time (8), then the pgoutput message. */
const XLOG_HEADER_BYTES = 25;

/** Microseconds between 1970-01-01 and 2000-01-01, the epoch of the protocol's timestamps. */
const POSTGRES_EPOCH_MS = 946_684_800_000;

export interface SessionCallbacks {
  /** Replication started: the server accepted START_REPLICATION. */
  started(): void;
  /**
   * Each message in stream order. Return a promise to hold the stream back: the next
   * message is handed over only once it settles (backpressure); `undefined` lets the next
   * one come at once.
   */
  message(message: PgOutputMessage | RawChangeMessage, bytes: number): Promise<void> | undefined;
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

/** The pg internals a replication connection needs (not in @types/pg). */
export interface ReplicationConnection {
  on(event: 'copyData', listener: (message: { chunk: Buffer }) => void): void;
  once(event: 'replicationStart', listener: () => void): void;
  removeAllListeners(event?: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  stream: {
    pause(): void;
    resume(): void;
    destroy(): void;
    listeners(event: 'data'): ((chunk: Buffer) => void)[];
    removeListener(event: 'data', listener: (chunk: Buffer) => void): void;
    on(event: 'data', listener: (chunk: Buffer) => void): void;
  };
}

/** A message or keepalive received while the previous message's handler was still busy. */
type Received = { message: PgOutputMessage | RawChangeMessage; bytes: number } | { walEnd: bigint };

/**
 * One replication connection, from START_REPLICATION until it fails or `signal` aborts.
 * Resolves only when aborted; every other end (server error, connection loss, the server
 * closing the stream) rejects, and the caller decides whether to reconnect.
 *
 * The streaming replication protocol is spoken over a plain `pg.Client` (CopyBoth after
 * START_REPLICATION): each CopyData is an XLogData message, decoded at once by our pgoutput
 * decoder (the socket's buffer is reused afterwards), or a keepalive. This replaced
 * pg-logical-replication, which per message formatted an LSN string, queued the message,
 * awaited an `emitAsync` of it and an acknowledgement promise, whatever the handler did;
 * here a message whose handler returns nothing costs no promise at all (see the source's
 * README, "The change stream's CPU").
 *
 * Flow control: while a handler's promise is pending, the socket is paused and the
 * messages already read wait in order; a slow consumer thus stops reads, TCP's window
 * fills and the walsender blocks. Keepalives are answered and status updates sent on a
 * timer while paused, so the server never times the connection out for being quiet.
 *
 * Acknowledgement: every status update reports the acknowledger's flush LSN as write,
 * flush and apply position, so the slot moves only to what core confirmed.
 */
export function runReplicationSession(options: SessionOptions): Promise<void> {
  const { acknowledger, callbacks, logger } = options;
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let started = false;
    const client = new pg.Client({ ...options.clientConfig, replication: 'database' } as pg.ClientConfig);
    let connection: ReplicationConnection | undefined;
    /** Received while a handler was busy, handed over in order once it is done. */
    let waiting: Received[] = [];
    let waitingHead = 0;
    let busy = false;
    let paused = false;

    const rawChanges = options.rawChanges === true;
    const decodeOptions: DecodeOptions =
      options.keepMessagePrefix !== undefined ? { keepMessagePrefix: options.keepMessagePrefix } : {};

    const sendStatus = () => {
      if (settled || !started || !connection) return;
      const flush = acknowledger.flushLsn;
      if (flush === 0n) return;
      // Standby status update: 'r' · written · flushed · applied (each the byte after the
      // last one, i.e. the flush LSN) · client time (µs since 2000) · reply requested (0).
      const update = Buffer.alloc(34);
      update[0] = 0x72;
      update.writeBigUInt64BE(flush, 1);
      update.writeBigUInt64BE(flush, 9);
      update.writeBigUInt64BE(flush, 17);
      update.writeBigInt64BE(BigInt(Date.now() - POSTGRES_EPOCH_MS) * 1000n, 25);
      try {
        connection.sendCopyFromChunk(update);
      } catch (err) {
        logger.debug('standby status update failed', { error: (err as Error).message });
      }
    };

    const timer = setInterval(sendStatus, options.statusIntervalMs);
    timer.unref();
    const stopListening = acknowledger.onChange(sendStatus);
    const onAbort = () => finish();
    options.signal.addEventListener('abort', onAbort, { once: true });
    client.on('error', (error: Error) => finish(error));

    function finish(error?: unknown): void {
      if (settled) return;
      settled = true;
      clearInterval(timer);
      stopListening();
      options.signal.removeEventListener('abort', onAbort);
      waiting = [];
      const socket = connection?.stream;
      // end() waits for the socket to close, which never happens while it is paused: resume
      // it (what arrives is ignored), and destroy it if the polite way takes too long.
      if (paused) socket?.resume();
      const stopped = client.end().catch(() => {});
      let forceTimer: NodeJS.Timeout | undefined;
      const forced = new Promise<void>((done) => {
        forceTimer = setTimeout(() => {
          socket?.destroy();
          done();
        }, STOP_GRACE_MS);
      });
      void Promise.race([stopped, forced]).then(() => {
        clearTimeout(forceTimer);
        connection?.removeAllListeners('copyData');
        if (error === undefined) resolve();
        else reject(error);
      });
    }

    /** Hands one message over; true when its handler is still busy (the rest must wait). */
    function deliver(message: PgOutputMessage | RawChangeMessage, bytes: number): boolean {
      let pending: Promise<void> | undefined;
      try {
        pending = callbacks.message(message, bytes);
      } catch (error) {
        finish(error);
        return true;
      }
      if (pending === undefined) return false;
      busy = true;
      if (!paused) {
        paused = true;
        connection?.stream.pause();
      }
      pending.then(drain, (error: unknown) => finish(error));
      return true;
    }

    /** The busy handler is done: hand over what waited, in order, until one is busy again. */
    function drain(): void {
      busy = false;
      while (waitingHead < waiting.length) {
        if (settled) return;
        const next = waiting[waitingHead] as Received;
        waiting[waitingHead++] = undefined as unknown as Received;
        if ('walEnd' in next) callbacks.keepalive(next.walEnd);
        else if (deliver(next.message, next.bytes)) return;
      }
      waiting = [];
      waitingHead = 0;
      if (paused && !settled) {
        paused = false;
        connection?.stream.resume();
      }
    }

    /** One CopyData message's contents: `buffer` from `start` to `end`. */
    function onCopyData(buffer: Buffer, start: number, end: number): void {
      if (settled) return;
      const kind = buffer[start];
      if (kind === XLOG_DATA) {
        let message: PgOutputMessage | RawChangeMessage;
        const payload = start + XLOG_HEADER_BYTES;
        const bytes = end - payload;
        try {
          // Decoded (or copied) here: the buffer is the socket's, reused once this returns.
          // The payload is read in place, past the XLogData header.
          message =
            rawChanges && isChangeTag(buffer[payload])
              ? rawChangeMessage(buffer, payload, end)
              : decodePgOutput(buffer, decodeOptions, payload, end);
        } catch (error) {
          finish(error);
          return;
        }
        if (busy) waiting.push({ message, bytes });
        else deliver(message, bytes);
      } else if (kind === PRIMARY_KEEPALIVE) {
        // 'k' · server WAL end (8) · server time (8) · reply requested (1)
        if (end - start < 18) {
          finish(
            new NanosyncError(
              PgErrorCode.PgProtocol,
              `replication connection: a keepalive message of ${end - start} bytes`,
            ),
          );
          return;
        }
        const walEnd = buffer.readBigUInt64BE(start + 1);
        if (buffer[start + 17] === 1) sendStatus();
        if (busy) waiting.push({ walEnd });
        else callbacks.keepalive(walEnd);
      } else {
        logger.debug('unknown replication message ignored', { kind });
      }
    }

    if (options.signal.aborted) {
      finish();
      return;
    }
    client.connect().then(
      () => {
        if (settled) return;
        connection = (client as unknown as { connection: ReplicationConnection }).connection;
        readCopyData(connection, onCopyData, finish, logger);
        connection.once('replicationStart', () => {
          if (settled) return;
          started = true;
          callbacks.started();
          sendStatus();
        });
        // `0/0` lets the server start at the slot's confirmed_flush_lsn. Protocol version 1:
        // the server sends each transaction once it committed, which is what gives every
        // event its final position (the commit LSN) up front. Streaming of in-progress
        // transactions (version 2) would deliver changes before their commit LSN is known,
        // and could deliver changes of transactions that later abort.
        const publications = quoteLiteral(quoteIdent(options.publication));
        client
          .query(
            `START_REPLICATION SLOT ${quoteIdent(options.slot)} LOGICAL 0/0 (proto_version '1', publication_names ${publications}${options.messages === true ? ", messages 'true'" : ''})`,
          )
          .then(
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
      },
      (error: unknown) => finish(error),
    );
  });
}

/**
 * Routes the connection's CopyData messages to `onCopyData` without the driver's parser: the
 * driver's one listener on the socket is replaced by a {@link CopyDataReader}, which gives
 * it every other message whole (CopyBothResponse, errors, the end of the stream), so the
 * driver still sees those in order. Called once the connection is up and idle (before
 * START_REPLICATION), when the driver holds no part of a message. Should the driver ever
 * listen differently, its own `copyData` events are used instead.
 */
export function readCopyData(
  connection: ReplicationConnection,
  onCopyData: (buffer: Buffer, start: number, end: number) => void,
  fail: (error: unknown) => void,
  logger: Logger,
): void {
  const socket = connection.stream;
  const listeners = socket.listeners('data');
  const driver = listeners[0];
  if (listeners.length !== 1 || driver === undefined) {
    logger.debug('replication: the pg driver parses the stream', { socketListeners: listeners.length });
    connection.on('copyData', ({ chunk }) => onCopyData(chunk, 0, chunk.length));
    return;
  }
  const reader = new CopyDataReader(onCopyData, (message) => driver.call(socket, message));
  socket.removeListener('data', driver);
  logger.debug('replication: CopyData read off the socket, other messages go to the pg driver');
  socket.on('data', (chunk) => {
    try {
      reader.push(chunk);
    } catch (error) {
      fail(error);
    }
  });
}
