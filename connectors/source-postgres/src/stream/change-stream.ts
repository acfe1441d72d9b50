import {
  type ChangeBatch,
  type ChangeEvent,
  type ConnectorMemory,
  ErrorCode,
  type Logger,
  NanosyncError,
  type Position,
  type Row,
  type TableRef,
  type TableSchema,
  type Value,
} from '@nanosync/core';
import { connectClient, type PgConnectionConfig, resolveClientConfig } from '../connection.js';
import { decodePosition, encodePosition, formatLsn, formatPosition, parseLsn } from '../position.js';
import { findMissingIdentity, missingIdentityError } from '../slot/replica-identity.js';
import { readSlot, verifySlot } from '../slot/replication-slot.js';
import { type Queryable, TypeCatalog } from '../types/index.js';
import { type Acknowledger, type AcknowledgerInternals, createAcknowledger, internalsOf } from './acknowledger.js';
import { type BatchLimits, BatchQueue } from './batch-queue.js';
import {
  ATTACH_PREFIX_SUFFIX,
  type AttachMessage,
  cursorOf,
  keyText,
  leavesToRead,
  newChunkId,
  parseAttachMessage,
  readAttachChunk,
  relationOf,
  writeAttachMessages,
} from './attach-snapshot.js';
import type { CtidChunkCursor } from '../snapshot/read-chunk.js';
import { RecentCommits } from '../snapshot/visibility.js';
import { deleteEvent, insertEvent, updateEvent } from './change-events.js';
import { classifySessionFailure } from './failures.js';
import { formatPgTimestamp, type PgOutputMessage } from './pgoutput.js';
import { RelationCache, type StreamRelation } from './relations.js';
import { runReplicationSession } from './replication-session.js';
import { decodeChange, finishBatch, pendingChange, type RawChangeMessage } from './raw-changes.js';
import { PgErrorCode, sqlState } from '../errors.js';

export interface ReconnectPolicy {
  /** First wait after a failure (default 250 ms); doubles up to `maxDelayMs`. */
  initialDelayMs: number;
  /** Longest wait between attempts (default 30 s). */
  maxDelayMs: number;
  /** Consecutive failed attempts before the stream gives up with the last (retriable) error (default: never). */
  maxAttempts: number;
}

export const DEFAULT_RECONNECT: ReconnectPolicy = {
  initialDelayMs: 250,
  maxDelayMs: 30_000,
  maxAttempts: Number.POSITIVE_INFINITY,
};

export interface StreamChangesOptions {
  connection: PgConnectionConfig;
  slot: string;
  publication: string;
  /** Start position or the last acknowledged `safePosition`: nothing at or before it is delivered. */
  from: Position;
  signal: AbortSignal;
  logger: Logger;
  /** When given, events of other tables (still in the publication's history) are skipped. */
  tables?: TableRef[];
  /**
   * Watermarks: non-transactional logical messages with exactly this prefix become
   * `ChangeBatch.watermark` batches (their content is the id); other messages are ignored.
   * Needs PostgreSQL 14 or later (the pgoutput `messages` option).
   */
  watermarkPrefix?: string;
  /** Shared with `Source.acknowledge`; see {@link createAcknowledger}. One is made when absent. */
  acknowledger?: Acknowledger;
  batchLimits?: Partial<BatchLimits>;
  /**
   * Hand batches over undecoded where possible (`ChangeBatch.raw`, see raw-changes.ts), for the
   * pipeline's worker threads.
   */
  raw?: boolean;
  reconnect?: Partial<ReconnectPolicy>;
  /**
   * Where the stream notes every transaction it decodes (xid, commit LSN) before any of its
   * changes goes out, for the chunk reads' snapshot check (snapshot/visibility.ts); shared
   * with the source's snapshot reader. One is made when absent.
   */
  commits?: RecentCommits;
  /** Type cache shared with the snapshot reader (optional; saves catalog queries for custom types). */
  catalog?: TypeCatalog;
  /**
   * Told what the stream waits for while it cannot start (the slot is active for another
   * process: `replication slot "x" is in use by another process (pid 4711)`), and undefined
   * once replication started. Core shows it in the pipeline's status.
   */
  reportWaiting?: (what: string | undefined) => void;
  /** Standby status update interval (default 10 s, well under the usual wal_sender_timeout of 60 s). */
  statusIntervalMs?: number;
  /**
   * How often the captured tables (and their partitions) are checked for a replica
   * identity and for partitions attached or detached (default 30 s; needs `tables`).
   */
  catalogCheckIntervalMs?: number;
  /**
   * Bounds of one chunk when the stream reads rows itself (a partition attached while
   * streaming, a table whose key was redefined): the pipeline's `snapshot.chunk_rows` and
   * `snapshot.chunk_bytes` (default 10 000 rows, 1 MiB).
   */
  chunk?: { rows: number; bytes: number };
  /**
   * The pipeline's durable memory (core's `ConnectorContext.memory`): the key columns and
   * leaf partitions of each captured table as last streamed (the key columns also as the
   * snapshot planned the table, until a stream saw it), so that a key redefined or a
   * partition attached while no stream ran is found when the stream first sees the table.
   * Without it such changes are found only while a stream runs.
   */
  memory?: ConnectorMemory;
}

const DEFAULT_CHUNK = { rows: 10_000, bytes: 1024 * 1024 };

/** Longest wait between two tries at a slot that another process has active. */
const SLOT_BUSY_MAX_DELAY_MS = 5_000;

/**
 * The PostgreSQL change stream: pgoutput over a replication connection, as bounded batches
 * in commit order (see `ChangeBatch` in core).
 *
 * - Positions: every change gets (commit LSN from Begin, 1-based index in its transaction).
 *   The server replays the same transactions with the same messages after a reconnect, so
 *   positions are stable and anything at or before the last delivered position is dropped:
 *   a transaction cut by a connection loss continues exactly after its last delivered event.
 * - `safePosition` is set on batches that end at a commit (the transaction's last event).
 * - Keepalive batches (no events) carry `(server WAL position, 0)`, only when no transaction
 *   is open, no delivered event lacks a boundary, and core acknowledged the last boundary.
 *   The server sends a keepalive's position only after every transaction committed before
 *   it, so the keepalive sorts after all delivered commits and before every commit still to
 *   come (including transactions already running).
 * - Resume: START_REPLICATION at 0/0 (the slot's confirmed_flush_lsn), dropping events at
 *   or before `from`.
 * - Connection loss, server restart, a terminated walsender: reconnect with exponential
 *   backoff. A slot that is missing or invalidated ends the stream with a non-retriable
 *   error naming the slot, the checkpoint and wal_status.
 * - TRUNCATE: one `truncate` event per captured table the statement names, at its place in
 *   the transaction (each table takes one index), with the CASCADE / RESTART IDENTITY flags.
 * - Partitioned tables: the publication sends partitions' changes under the root's name
 *   (`publish_via_partition_root`); a change decoded under a partition's own name (WAL
 *   written before the publication said so) is renamed to the captured ancestor.
 * - Replica identity: a Relation message of a captured table without a usable identity, or
 *   the periodic catalog check finding one (a partition included), ends the stream with an
 *   error naming the table and both fixes: PostgreSQL refuses the application's UPDATE and
 *   DELETE on such a table while it is published.
 * - Partitions attached while streaming (found by the periodic check, and at once by the
 *   Relation message the parent's next change brings): their rows from before the attach are
 *   not in the WAL, so the stream reads them in bounded chunks, each between two logical
 *   messages of its own, and delivers each chunk's rows as `read` events at its high
 *   message (see attach-snapshot.ts); a
 *   detached partition's later changes are simply not published any more (its rows stay
 *   downstream as they were).
 */
export function streamChanges(options: StreamChangesOptions): AsyncIterable<ChangeBatch> {
  return {
    [Symbol.asyncIterator]() {
      return new ChangeStream(options).start();
    },
  };
}

interface OpenTransaction {
  commitLsn: bigint;
  /** Index of the last change message seen in this transaction. */
  index: number;
  commitTime: string;
  xid: number;
}

/** Position as numbers, to compare without parsing strings per event. */
interface Mark {
  lsn: bigint;
  index: number;
}

function compareMarks(a: Mark, b: Mark): number {
  if (a.lsn !== b.lsn) return a.lsn < b.lsn ? -1 : 1;
  return a.index - b.index;
}

/**
 * Where the events a logical message brings sort: one byte before the LSN pgoutput gives the
 * message. That LSN is where the message's WAL record ends, which is also where the next
 * record starts; when the next record is a commit, its changes take marks at that LSN too.
 * Rows delivered at the LSN itself would share it with that transaction's changes, and
 * those with an index no higher than the rows' count would be dropped as already
 * delivered, by this stream and by one resumed after the rows. One byte earlier lies
 * inside the message's own record (records are 8-byte aligned and longer than that), so it
 * sorts after every commit before the message and before every commit after it.
 */
function messageMark(lsn: bigint): bigint {
  return lsn - 1n;
}

class ChangeStream {
  readonly #options: StreamChangesOptions;
  readonly #logger: Logger;
  readonly #queue: BatchQueue;
  readonly #acknowledger: AcknowledgerInternals;
  readonly #catalog: TypeCatalog;
  readonly #commits: RecentCommits;
  readonly #reconnect: ReconnectPolicy;
  readonly #stop = new AbortController();
  readonly #tables: Set<string> | undefined;
  /** Prefix of the attached-partition chunk messages; undefined without watermarks. */
  readonly #attachPrefix: string | undefined;

  /** Highest position handed to the queue: an event, a commit boundary or a keepalive. */
  #delivered: Mark;
  /** Highest boundary handed to the queue (commit or keepalive); ≤ #delivered. */
  #boundary: Mark;
  /** Server WAL position known to be past every delivered commit, not yet sent as a keepalive. */
  #keepaliveLsn: bigint | undefined;
  /** LSN of the last watermark delivered: the server sends it again after a reconnect. */
  #watermarkLsn = 0n;

  // Per connection.
  #transaction: OpenTransaction | undefined;
  #relations: RelationCache | undefined;
  #sessionProgress = false;
  /** Leaf partitions of the captured tables at the last catalog check (`schema.name` by table). */
  #leaves: Map<string, Set<string>> | undefined;
  /** The session's catalog connection, for checks prompted by Relation messages. */
  #relationCatalogClient: Queryable | undefined;
  /** Leaf checks run one at a time (timer and Relation messages). */
  #leafCheck: Promise<void> = Promise.resolve();
  /** Chunks of attached partitions this process reads, by id (see attach-snapshot.ts). */
  readonly #chunks = new Map<string, AttachChunk>();
  /** Leaves (`schema NUL name`, or the table's for a rekey) being read; `restart`: a rekey asked again. */
  readonly #attaching = new Map<string, AttachRead>();
  /** Per captured table, leaves whose read has no low message in the WAL yet. */
  readonly #leavesPending = new Map<string, Set<string>>();
  /** What the memory holds (or is being given) per entry, as JSON: a `set` only when it differs. */
  readonly #remembered = new Map<string, string>();
  /**
   * Ids of chunks this process delivered or dropped, and `id low|high` of another process's
   * chunk messages already handled: decoded again after a reconnect, they are ignored.
   */
  readonly #finishedChunks = new Set<string>();
  /** Aborted when the stream stops or ends: chunk readers give up. */
  readonly #readers = new AbortController();
  /**
   * Per leaf being read (`leafKey`): the slot's flush LSN may not pass this while a chunk's
   * low message was decoded and its rows are not delivered yet (see attach-snapshot.ts).
   */
  readonly #holds = new Map<string, bigint>();
  /** Flush LSN of the last boundary handed to the queue (a commit, a keepalive, a chunk). */
  #lastFlush = 0n;
  /** The stream's `from`: chunk messages of another process at or before it were partly acknowledged. */
  readonly #from: Mark;
  /**
   * Per leaf, the chunk of another process to resume at, from messages at or before `from`
   * (a high there was acknowledged with its rows); started once the stream passes `from`.
   */
  readonly #resumeAt = new Map<string, AttachMessage>();
  /** The relation `#captures` answered for last, and its answer. */
  #capturedRelation: StreamRelation | undefined;
  #captured = false;
  /** Key and all columns of each captured table as last announced, across reconnects. */
  readonly #keyColumns = new Map<string, KeyShape>();

  constructor(options: StreamChangesOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ slot: options.slot });
    this.#queue = new BatchQueue(options.batchLimits);
    this.#acknowledger = internalsOf(options.acknowledger ?? createAcknowledger({ logger: this.#logger }));
    this.#reconnect = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.#catalog = options.catalog ?? new TypeCatalog();
    this.#commits = options.commits ?? new RecentCommits();
    this.#tables =
      options.tables && options.tables.length > 0
        ? new Set(options.tables.map((t) => `${t.schema}\u0000${t.name}`))
        : undefined;
    this.#attachPrefix =
      options.watermarkPrefix !== undefined && this.#tables !== undefined
        ? `${options.watermarkPrefix}${ATTACH_PREFIX_SUFFIX}`
        : undefined;
    const from = decodePosition(options.from);
    this.#from = from;
    this.#delivered = from;
    this.#boundary = from;
    this.#queue.onSafePosition = (position, flushLsn) => {
      for (const hold of this.#holds.values()) if (hold < flushLsn) flushLsn = hold;
      this.#acknowledger.register(position, flushLsn);
    };
  }

  start(): AsyncIterator<ChangeBatch> {
    this.#acknowledger.assumeConfirmed(this.#options.from);
    const stopListening = this.#acknowledger.onChange(() => this.#maybeKeepalive());
    const onAbort = () => this.#stop.abort();
    if (this.#options.signal.aborted) this.#stop.abort();
    else this.#options.signal.addEventListener('abort', onAbort, { once: true });
    this.#stop.signal.addEventListener('abort', () => this.#queue.close(), { once: true });
    this.#stop.signal.addEventListener('abort', () => this.#readers.abort(), { once: true });
    const running = this.#run()
      .catch((error: unknown) => this.#queue.fail(error))
      .finally(() => {
        this.#readers.abort();
        stopListening();
        this.#options.signal.removeEventListener('abort', onAbort);
      });
    let mixedSaid = false;
    const onMixed = () => {
      if (mixedSaid) return;
      mixedSaid = true;
      this.#logger.debug(
        'a stream batch holds changes of other kinds too (a TRUNCATE, rows of an attached partition): decoded here, not in a worker thread',
      );
    };
    return {
      next:
        this.#options.raw === true
          ? async () => {
              const next = await this.#queue.next();
              return next.done === true ? next : { done: false, value: finishBatch(next.value, onMixed) };
            }
          : () => this.#queue.next(),
      // Breaking out of `for await` closes the replication connection before it returns.
      return: async () => {
        this.#stop.abort();
        await running;
        return { done: true, value: undefined };
      },
    };
  }

  get #checkpoint(): string {
    return formatPosition(this.#acknowledger.confirmedPosition ?? this.#options.from);
  }

  async #run(): Promise<void> {
    let failures = 0;
    /** Set while the slot is active for another process (what was said about it). */
    let slotBusy: string | undefined;
    while (!this.#stop.signal.aborted) {
      const startedAt = Date.now();
      let started = false;
      this.#sessionProgress = false;
      try {
        await this.#session(() => {
          started = true;
          if (slotBusy !== undefined) {
            this.#logger.info('replication slot is free again; streaming', { slot: this.#options.slot });
            slotBusy = undefined;
          }
          this.#options.reportWaiting?.(undefined);
        });
        break;
      } catch (error) {
        if (this.#stop.signal.aborted) break;
        if (!started && sqlState(error) === '55006') {
          // object_in_use: another walsender still has the slot — a stream of this pipeline
          // that is shutting down, or a process elsewhere (a server that froze, a tool).
          // Wait for it, saying who holds it, and look again at most every few seconds.
          const what = await this.#slotHolder();
          if (what !== slotBusy) {
            this.#logger.warn('waiting for the replication slot: another process holds it; retrying until it is free', {
              slot: this.#options.slot,
              holder: what,
            });
            slotBusy = what;
          }
          this.#options.reportWaiting?.(what);
          failures = Math.min(failures + 1, 5);
          const delayMs = Math.round(
            Math.min(SLOT_BUSY_MAX_DELAY_MS, this.#reconnect.initialDelayMs * 2 ** (failures - 1)) *
              (0.8 + Math.random() * 0.4),
          );
          await sleep(delayMs, this.#stop.signal);
          continue;
        }
        const failure = await classifySessionFailure(error, {
          connection: this.#options.connection,
          slot: this.#options.slot,
          publication: this.#options.publication,
          checkpoint: this.#checkpoint,
        });
        if (!failure.retriable) {
          this.#logger.error('replication stream failed', { error: failure.message });
          this.#queue.fail(failure);
          return;
        }
        if (started && (this.#sessionProgress || Date.now() - startedAt > 10_000)) failures = 0;
        failures++;
        if (failures > this.#reconnect.maxAttempts) {
          this.#queue.fail(failure);
          return;
        }
        const base = Math.min(this.#reconnect.maxDelayMs, this.#reconnect.initialDelayMs * 2 ** (failures - 1));
        const delayMs = Math.round(base * (0.8 + Math.random() * 0.4));
        this.#logger.warn('replication connection lost; reconnecting', {
          attempt: failures,
          delayMs,
          resumeAfter: formatPosition(encodePosition(this.#delivered.lsn, this.#delivered.index)),
          error: failure.message,
        });
        await sleep(delayMs, this.#stop.signal);
      }
    }
    this.#queue.close();
  }

  /** Who has the slot now, as the operator should read it; the pid when the server tells it. */
  async #slotHolder(): Promise<string> {
    const slot = this.#options.slot;
    try {
      const client = await connectClient(this.#options.connection);
      client.on('error', () => {});
      try {
        const info = await readSlot(client, slot);
        if (info?.active_pid != null) {
          const { rows } = await client.query<{ application_name: string | null; client_addr: string | null }>(
            'SELECT application_name, client_addr::text AS client_addr FROM pg_catalog.pg_stat_activity WHERE pid = $1',
            [info.active_pid],
          );
          const who = [rows[0]?.application_name, rows[0]?.client_addr].filter((v) => v);
          return `replication slot "${slot}" is in use by another process (pid ${info.active_pid}${who.length > 0 ? `, ${who.join(' from ')}` : ''})`;
        }
      } finally {
        await client.end().catch(() => {});
      }
    } catch {}
    return `replication slot "${slot}" is in use by another process`;
  }

  async #session(onStarted: () => void): Promise<void> {
    const { connection, slot, publication } = this.#options;
    const catalogClient = await connectClient(connection);
    catalogClient.on('error', (err) => this.#logger.debug('catalog connection error', { error: err.message }));
    try {
      const info = await verifySlot(catalogClient, slot, {
        checkpoint: this.#checkpoint,
        database: connection.database,
      });
      if (info.confirmed_flush_lsn) {
        const flush = parseLsn(info.confirmed_flush_lsn);
        this.#acknowledger.observeSlotFlush(flush);
        if (flush > this.#lastFlush) this.#lastFlush = flush;
      }
      if (info.wal_status === 'unreserved') {
        this.#logger.warn('replication slot is about to lose WAL it still needs (wal_status unreserved)', {
          checkpoint: this.#checkpoint,
        });
      }
      this.#transaction = undefined;
      this.#keepaliveLsn = undefined;
      this.#relations = new RelationCache(this.#catalog, () => catalogClient, this.#tables);
      const clientConfig = await resolveClientConfig(connection, { replication: true });
      const stopChecks = this.#startCatalogChecks(catalogClient);
      try {
        await runReplicationSession({
          clientConfig,
          slot,
          publication,
          messages: this.#options.watermarkPrefix !== undefined,
          ...(this.#options.watermarkPrefix !== undefined ? { keepMessagePrefix: this.#options.watermarkPrefix } : {}),
          ...(this.#options.raw === true ? { rawChanges: true } : {}),
          acknowledger: this.#acknowledger,
          logger: this.#logger,
          statusIntervalMs: this.#options.statusIntervalMs ?? 10_000,
          signal: this.#stop.signal,
          callbacks: {
            started: () => {
              onStarted();
              this.#logger.info('replication stream started', {
                publication,
                resumeAfter: formatPosition(encodePosition(this.#delivered.lsn, this.#delivered.index)),
                confirmedFlush: formatLsn(this.#acknowledger.flushLsn),
              });
            },
            message: (message, bytes) => this.#handle(message, bytes),
            keepalive: (walEnd) => this.#onKeepalive(walEnd),
          },
        });
      } finally {
        stopChecks();
      }
    } finally {
      this.#transaction = undefined;
      await catalogClient.end().catch(() => {});
    }
  }

  /**
   * One message of the session. Returns a promise only when the next message has to wait
   * (no room in the batch queue, a catalog query): a change that fits costs no promise.
   */
  #handle(message: PgOutputMessage | RawChangeMessage, bytes: number): Promise<void> | undefined {
    this.#sessionProgress = true;
    switch (message.tag) {
      case 'raw-change':
        return this.#onChange(message, bytes);
      case 'begin':
        if (this.#resumeAt.size > 0 && message.finalLsn > this.#from.lsn) this.#resumePending();
        if (this.#transaction)
          throw protocolError(`Begin of xid ${message.xid} inside transaction ${this.#transaction.xid}`);
        this.#commits.decoded(message.xid, message.finalLsn);
        this.#transaction = {
          commitLsn: message.finalLsn,
          index: 0,
          commitTime: formatPgTimestamp(message.commitTime),
          xid: message.xid,
        };
        return;
      case 'commit':
        this.#onCommit(message.commitLsn, message.endLsn);
        return;
      case 'insert':
      case 'update':
      case 'delete':
        return this.#onChange(message, bytes);
      case 'relation':
        return this.#onRelation(message);
      case 'type':
        this.#catalog.forget(message.typeOid);
        return;
      case 'truncate':
        return this.#onTruncate(message, bytes);
      case 'origin':
        this.#logger.debug('transaction replicated from another origin', {
          origin: message.name,
          originLsn: formatLsn(message.originLsn),
        });
        return;
      case 'message':
        return this.#onMessage(message);
    }
  }

  async #onRelation(message: Extract<PgOutputMessage, { tag: 'relation' }>): Promise<void> {
    const relation = await this.#relationCache().apply(message);
    this.#logger.debug('relation', {
      table: `${relation.table.schema}.${relation.table.name}`,
      columns: relation.columns.length,
      replicaIdentity: relation.replicaIdentity,
    });
    if (this.#captures(relation) && !hasUsableIdentity(relation)) await this.#identityLost(relation);
    if (this.#captures(relation)) await this.#noteKeyColumns(relation);
    // A partitioned captured table announced again: perhaps a partition was just attached.
    const name = `${relation.table.schema}.${relation.table.name}`;
    if (this.#captures(relation) && this.#leaves?.has(name) && this.#relationCatalogClient) {
      await this.#checkLeaves(this.#relationCatalogClient, [
        { schema: relation.table.schema, name: relation.table.name },
      ]);
    }
  }

  /**
   * A logical message. Only our own non-transactional watermarks count: a non-transactional
   * message is decoded where it lies in the WAL, so it arrives between transactions, after
   * every transaction that committed before it and before every one that commits after.
   */
  async #onMessage(message: Extract<PgOutputMessage, { tag: 'message' }>): Promise<void> {
    if (this.#attachPrefix !== undefined && message.prefix === this.#attachPrefix && !message.transactional)
      return this.#onAttachMessage(message);
    const prefix = this.#options.watermarkPrefix;
    if (prefix === undefined || message.transactional || message.prefix !== prefix || message.contentSkipped) return;
    if (message.lsn <= this.#watermarkLsn) return;
    if (this.#transaction) throw protocolError(`watermark message inside transaction ${this.#transaction.xid}`);
    this.#watermarkLsn = message.lsn;
    const id = new TextDecoder().decode(message.content);
    await this.#queue.watermark(id, encodePosition(message.lsn, 0));
  }

  #relationCache(): RelationCache {
    if (!this.#relations)
      throw new NanosyncError(ErrorCode.Internal, 'relation cache used outside a replication session');
    return this.#relations;
  }

  #openTransaction(what: string): OpenTransaction {
    if (!this.#transaction) throw protocolError(`${what} outside a transaction`);
    return this.#transaction;
  }

  #onChange(
    message: Extract<PgOutputMessage, { tag: 'insert' | 'update' | 'delete' }> | RawChangeMessage,
    bytes: number,
  ): Promise<void> | undefined {
    const transaction = this.#openTransaction(message.tag === 'raw-change' ? 'change' : message.tag);
    transaction.index++;
    const mark: Mark = { lsn: transaction.commitLsn, index: transaction.index };
    if (compareMarks(mark, this.#delivered) <= 0) return;
    const relation = this.#relationCache().get(message.relationId);
    if (!relation) throw protocolError(`${message.tag} for relation ${message.relationId} before its Relation message`);
    if (!this.#captures(relation)) return;
    const context = { position: encodePosition(mark.lsn, mark.index), commitTime: transaction.commitTime };
    // Raw (for worker threads): decoded when the batch leaves, or in a worker; here only
    // while an attached partition is read (its chunks need every change's key).
    const event =
      message.tag === 'raw-change'
        ? this.#chunks.size > 0
          ? decodeChange(relation, message.payload, context)
          : pendingChange(relation, message, context)
        : message.tag === 'insert'
          ? insertEvent(relation, message, context)
          : message.tag === 'update'
            ? updateEvent(relation, message, context)
            : deleteEvent(relation, message, context);
    if (this.#chunks.size > 0) this.#noteChange(event);
    this.#delivered = mark;
    return this.#queue.push(event, bytes);
  }

  #onCommit(commitLsn: bigint, endLsn: bigint): void {
    const transaction = this.#openTransaction('Commit');
    if (commitLsn !== transaction.commitLsn) {
      throw protocolError(
        `Commit at ${formatLsn(commitLsn)} closes the transaction that began for ${formatLsn(transaction.commitLsn)}`,
      );
    }
    this.#transaction = undefined;
    const boundary: Mark = { lsn: commitLsn, index: transaction.index };
    if (compareMarks(boundary, this.#boundary) <= 0) return;
    if (compareMarks(this.#delivered, this.#boundary) > 0) {
      if (this.#delivered.lsn !== commitLsn) {
        throw new NanosyncError(
          ErrorCode.Internal,
          `events up to ${formatPosition(encodePosition(this.#delivered.lsn, this.#delivered.index))} were delivered without a commit, but the next commit is ${formatLsn(commitLsn)}`,
        );
      }
      this.#boundary = boundary;
      this.#delivered = boundary;
      this.#queue.commit(encodePosition(boundary.lsn, boundary.index), endLsn);
      this.#noteFlush(endLsn);
      return;
    }
    // Nothing of this transaction was delivered (empty, or other tables only):
    // its end is as good as a keepalive.
    this.#onKeepalive(endLsn);
  }

  #onKeepalive(walEnd: bigint): void {
    if (this.#resumeAt.size > 0 && walEnd > this.#from.lsn) this.#resumePending();
    if (this.#keepaliveLsn === undefined || walEnd > this.#keepaliveLsn) this.#keepaliveLsn = walEnd;
    this.#maybeKeepalive();
  }

  /** Emit a keepalive batch when nothing is in flight (see streamChanges). */
  #maybeKeepalive(): void {
    const lsn = this.#keepaliveLsn;
    if (lsn === undefined || this.#transaction || this.#queue.closed) return;
    const mark: Mark = { lsn, index: 0 };
    if (compareMarks(mark, this.#delivered) <= 0) {
      this.#keepaliveLsn = undefined;
      return;
    }
    if (compareMarks(this.#delivered, this.#boundary) > 0) return;
    if (!this.#acknowledger.isConfirmed(encodePosition(this.#boundary.lsn, this.#boundary.index))) return;
    this.#keepaliveLsn = undefined;
    this.#boundary = mark;
    this.#delivered = mark;
    this.#queue.keepalive(encodePosition(lsn, 0), lsn);
    this.#noteFlush(lsn);
  }

  /** The stream passed `from`: read again what the chunk messages before it left unacknowledged. */
  #resumePending(): void {
    const pending = [...this.#resumeAt.values()];
    this.#resumeAt.clear();
    for (const parsed of pending) {
      if (this.#attaching.has(leafKeyOf(parsed.table, parsed.leaf, parsed.rekey === true))) continue;
      this.#logger.info('reading again a chunk of rows whose delivery a restart interrupted', {
        table: `${parsed.table.schema}.${parsed.table.name}`,
        ...(parsed.rekey ? { reason: 'key columns changed' } : {}),
        partition: `${parsed.leaf.schema}.${parsed.leaf.name}`,
        chunk: parsed.chunk ?? 0,
      });
      this.#startAttach(parsed.table, parsed.leaf, parsed.rekey === true, parsed);
    }
  }

  #noteFlush(lsn: bigint): void {
    if (lsn > this.#lastFlush) this.#lastFlush = lsn;
  }

  /**
   * From the first chunk message of a leaf on, until a chunk of it is delivered: the slot
   * stays before that message (a crash re-decodes it; see attach-snapshot.ts).
   */
  #hold(leafKey: string): void {
    if (!this.#holds.has(leafKey)) this.#holds.set(leafKey, this.#lastFlush);
  }

  #captures(relation: StreamRelation): boolean {
    if (!this.#tables) return true;
    // Asked per change: the answer is kept for the relation (a new Relation message makes a new one).
    if (relation === this.#capturedRelation) return this.#captured;
    const captured = this.#tables.has(`${relation.table.schema}\u0000${relation.table.name}`);
    this.#capturedRelation = relation;
    this.#captured = captured;
    return captured;
  }

  /**
   * One `truncate` event per captured table of the message. Every relation of the message
   * takes one index in the transaction (captured or not), so positions do not depend on the
   * table filter and stay the same on a replay.
   */
  async #onTruncate(message: Extract<PgOutputMessage, { tag: 'truncate' }>, bytes: number): Promise<void> {
    const transaction = this.#openTransaction('Truncate');
    const seen = new Set<string>();
    for (const relationId of message.relationIds) {
      transaction.index++;
      const mark: Mark = { lsn: transaction.commitLsn, index: transaction.index };
      if (compareMarks(mark, this.#delivered) <= 0) continue;
      const relation = this.#relationCache().get(relationId);
      if (!relation) throw protocolError(`Truncate of relation ${relationId} before its Relation message`);
      if (!this.#captures(relation)) continue;
      const name = `${relation.table.schema}.${relation.table.name}`;
      if (relation.partition) {
        throw new NanosyncError(
          PgErrorCode.PgCheck,
          `TRUNCATE of partition "${relation.partition.schema}"."${relation.partition.name}" of captured table "${relation.table.schema}"."${relation.table.name}" at ${formatPosition(encodePosition(mark.lsn, mark.index))} removes only that partition's rows, which no event can say; re-snapshot the table (delete and apply the pipeline again)`,
        );
      }
      if (seen.has(name)) continue;
      seen.add(name);
      for (const chunk of this.#chunks.values())
        if (chunk.lowSeen && sameTable(chunk.table, relation.table)) chunk.truncated = true;
      const event: ChangeEvent = {
        op: 'truncate',
        table: relation.table,
        key: {},
        position: encodePosition(mark.lsn, mark.index),
        commitTime: transaction.commitTime,
        truncate: { cascade: message.cascade, restartIdentity: message.restartIdentity },
      };
      this.#delivered = mark;
      await this.#queue.push(event, bytes);
    }
  }

  /** A Relation message without identity: an error unless the catalog has one again by now. */
  async #identityLost(relation: StreamRelation): Promise<void> {
    const table = { schema: relation.table.schema, name: relation.table.name };
    const client = this.#relationCatalogClient;
    const missing = client ? await findMissingIdentity(client, [table]) : [];
    if (missing.length > 0) throw missingIdentityError(missing, 'replica identity lost while streaming');
    this.#logger.warn('a captured table was without replica identity for a while (it has one again)', {
      table: `${table.schema}.${table.name}`,
    });
  }

  /**
   * Every `catalogCheckIntervalMs`: the captured tables' replica identities (an error ends
   * the stream) and their leaf partitions (attached or detached ones are logged).
   */
  #startCatalogChecks(client: Queryable): () => void {
    this.#relationCatalogClient = client;
    const refs = this.#options.tables;
    if (!refs || refs.length === 0) return () => {};
    let running = false;
    const run = async () => {
      if (running || this.#stop.signal.aborted) return;
      running = true;
      try {
        const missing = await findMissingIdentity(client, refs);
        if (missing.length > 0) {
          const error = missingIdentityError(missing, 'replica identity lost while streaming');
          this.#logger.error('replication stream failed', { error: error.message });
          this.#queue.fail(error);
          this.#stop.abort();
          return;
        }
        await this.#checkLeaves(client, refs);
      } catch (err) {
        this.#logger.debug('catalog check failed', { error: (err as Error).message });
      } finally {
        running = false;
      }
    };
    void run();
    const timer = setInterval(() => void run(), this.#options.catalogCheckIntervalMs ?? 30_000);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** {@link #checkPartitions}, one at a time. */
  #checkLeaves(client: Queryable, refs: TableRef[]): Promise<void> {
    const run = this.#leafCheck.then(() => this.#checkPartitions(client, refs));
    this.#leafCheck = run.catch(() => {});
    return run;
  }

  /**
   * The leaf partitions of `refs` now, against the last check: a new leaf (attached or
   * created) has its rows read as a chunk (see attach-snapshot.ts); a leaf gone is logged.
   * The first check of a table in this process compares with the leaves the pipeline's
   * memory holds from the last stream (a partition attached while no stream ran, or just
   * before a crash). A leaf enters the memory once its read's first low message is in the
   * WAL. Without an entry (the pipeline's first stream, or a memory that predates this),
   * a leaf whose link to the table is not older than the slot's catalog_xmin is read: it may
   * have been attached after the snapshot planned its leaves (during a blocking snapshot,
   * say). That guess also takes leaves for new on a busy server (a long transaction holds
   * catalog_xmin back); they are then read twice, which changes nothing downstream.
   */
  async #checkPartitions(client: Queryable, refs: TableRef[]): Promise<void> {
    this.#leaves ??= new Map();
    const leaves = this.#leaves;
    for (const ref of refs) {
      const { rows } = await client.query(
        `SELECT n.nspname::text AS schema, c.relname::text AS name,
                EXISTS (SELECT 1 FROM pg_catalog.pg_partition_ancestors(c.oid) a(relid)
                          JOIN pg_catalog.pg_inherits i ON i.inhrelid = a.relid
                          JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $3 AND s.catalog_xmin IS NOT NULL
                         WHERE a.relid <> p.oid
                           AND a.relid IN (SELECT relid FROM pg_catalog.pg_partition_tree(p.oid))
                           AND pg_catalog.age(i.xmin) <= pg_catalog.age(s.catalog_xmin))::text AS recent
           FROM pg_catalog.pg_class p JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
           CROSS JOIN LATERAL pg_catalog.pg_partition_tree(p.oid) t
           JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE pn.nspname = $1 AND p.relname = $2 AND p.relkind = 'p' AND t.isleaf`,
        [ref.schema, ref.name, this.#options.slot],
      );
      if (rows.length === 0 && !leaves.has(`${ref.schema}.${ref.name}`)) continue;
      const table = `${ref.schema}.${ref.name}`;
      const entry = `leaves ${JSON.stringify([ref.schema, ref.name])}`;
      const now = new Map(
        rows.map((r) => [`${r.schema}.${r.name}`, { schema: String(r.schema), name: String(r.name) }]),
      );
      const old = leaves.get(table);
      // Asked before the leaves are noted: a failed read leaves this a first look for the next check.
      const stored = old === undefined ? await this.#recall<string[]>(entry) : undefined;
      leaves.set(table, new Set(now.keys()));
      if (!old) {
        if (this.#attachPrefix !== undefined) {
          const had = stored === undefined ? undefined : new Set(stored);
          for (const r of rows) {
            const leaf = `${r.schema}.${r.name}`;
            if (had ? had.has(leaf) : String(r.recent) !== 'true') continue;
            this.#logger.info(
              had
                ? 'partition attached to a captured table since the last stream (while the pipeline was stopped): reading its rows'
                : 'partition attached to a captured table recently (perhaps after the snapshot planned its partitions): reading its rows',
              { table, partition: leaf },
            );
            this.#readLeaf(ref, entry, leaf, { schema: String(r.schema), name: String(r.name) });
          }
        }
        this.#rememberLeaves(table, entry);
        continue;
      }
      for (const [leaf, leafRef] of now) {
        if (old.has(leaf)) continue;
        if (this.#attachPrefix === undefined) {
          this.#logger.warn(
            'partition attached to a captured table: its changes are captured from now on; rows it held before the attach are not in the WAL (re-snapshot the table to include them)',
            { table, partition: leaf },
          );
        } else {
          this.#logger.info('partition attached to a captured table: reading the rows it brought', {
            table,
            partition: leaf,
          });
          this.#readLeaf(ref, entry, leaf, leafRef);
        }
      }
      for (const leaf of old) {
        if (!now.has(leaf))
          this.#logger.info('partition detached from a captured table: its later changes are not captured', {
            table,
            partition: leaf,
          });
      }
      this.#rememberLeaves(table, entry);
    }
  }

  /** Read a leaf new to `table`; the memory counts it among the table's leaves once the read is durable. */
  #readLeaf(table: TableRef, entry: string, leaf: string, leafRef: TableRef): void {
    const name = `${table.schema}.${table.name}`;
    const pending = this.#leavesPending.get(name) ?? new Set<string>();
    this.#leavesPending.set(name, pending);
    pending.add(leaf);
    this.#startAttach(table, leafRef, false, undefined, () => {
      pending.delete(leaf);
      this.#rememberLeaves(name, entry);
    });
  }

  /** The memory's leaves of `table`: those known now, but for leaves whose read is not durable yet. */
  #rememberLeaves(table: string, entry: string): void {
    const known = this.#leaves?.get(table);
    if (known === undefined) return;
    const pending = this.#leavesPending.get(table);
    this.#remember(entry, [...known].filter((leaf) => !pending?.has(leaf)).sort());
  }

  /**
   * Read an attached leaf's rows (or, `rekey`, every leaf of the table) in bounded chunks,
   * each between a low and a high message, in the background; the stream delivers a chunk
   * when it decodes its high message (see attach-snapshot.ts for the order of things).
   * `resume`: a chunk message of a process that died; the read starts at that chunk. A
   * failed chunk is retried a few times under a new id; one that cannot be read ends the
   * stream.
   */
  #startAttach(table: TableRef, leaf: TableRef, rekey = false, resume?: AttachMessage, onStarted?: () => void): void {
    const prefix = this.#attachPrefix;
    const leafKey = leafKeyOf(table, leaf, rekey);
    if (prefix === undefined || this.#readers.signal.aborted) return;
    const running = this.#attaching.get(leafKey);
    if (running) {
      if (rekey && resume === undefined) {
        // The key changed again while the table is read: start over (truncate included) after the chunk being read.
        running.restart = true;
        if (onStarted) running.onRestart.push(onStarted);
      } else if (onStarted) {
        if (running.started) onStarted();
        else running.onLow.push(onStarted);
      }
      return;
    }
    const read: AttachRead = { restart: false, started: false, onLow: onStarted ? [onStarted] : [], onRestart: [] };
    // Told once a low message is in the WAL: from then on a crash resumes the read from it.
    const lowWritten = (due: (() => void)[] = []) => {
      read.started = true;
      for (const told of [...read.onLow.splice(0), ...due]) told();
    };
    this.#attaching.set(leafKey, read);
    // Known from now on: a later leaf check does not take it for a new attach.
    if (!rekey) this.#leaves?.get(`${table.schema}.${table.name}`)?.add(`${leaf.schema}.${leaf.name}`);
    const bound = this.#options.chunk ?? DEFAULT_CHUNK;
    const signal = this.#readers.signal;
    void (async () => {
      // Where the next chunk starts: leaves[at] from `cursor` on, the chunk's index.
      let leaves: TableRef[] | undefined;
      let at = 0;
      let cursor = cursorOf(resume?.after, bound);
      let index = resume?.chunk ?? 0;
      let truncate = rekey && index === 0;
      for (let attempt = 1; !signal.aborted; attempt++) {
        let chunk: AttachChunk | undefined;
        let next: AttachChunk | undefined;
        // Set while a restart is taken but its low message not yet written.
        let restarting: (() => void)[] | undefined;
        const client = await connectClient(this.#options.connection).catch((error: unknown) => error as Error);
        try {
          if (client instanceof Error) throw client;
          client.on('error', () => {});
          if (leaves === undefined) {
            leaves = rekey ? await leavesToRead(client, table, resume?.leaf) : [leaf];
            // The leaf to resume in is gone: its chunk's start means nothing in the next one.
            if (rekey && resume !== undefined && !sameTable(leaves[0] ?? table, resume.leaf)) cursor = undefined;
          }
          chunk = this.#newChunk({ table, leaf: leaves[at] ?? table, leafKey, rekey, index, cursor, truncate });
          chunk.schema = (await relationOf(client, table, this.#catalog)).table;
          await writeAttachMessages(client, prefix, [attachMessage(chunk, 'low')]);
          lowWritten();
          for (;;) {
            // The table's columns now (a column added between chunks is read from then on).
            const relation = await relationOf(client, table, this.#catalog);
            const rows = await readAttachChunk(client, relation, table, chunk.leaf, cursor, bound, signal, {
              commits: this.#commits,
              logger: this.#logger,
            });
            chunk.rows = rows.rows;
            let nextAt = rows.next === undefined ? at + 1 : at;
            let nextCursor = rows.next;
            let nextIndex = index + 1;
            let nextTruncate = false;
            if (read.restart) {
              read.restart = false;
              restarting = read.onRestart.splice(0);
              leaves = await leavesToRead(client, table);
              nextAt = 0;
              nextCursor = undefined;
              nextIndex = 0;
              nextTruncate = true;
            }
            const leafNext = leaves[nextAt];
            next =
              leafNext === undefined
                ? undefined
                : this.#newChunk({
                    table,
                    leaf: leafNext,
                    leafKey,
                    rekey,
                    index: nextIndex,
                    cursor: nextCursor,
                    truncate: nextTruncate,
                  });
            // A restart's truncate carries the table as it is now (keyed the newest way).
            if (next)
              next.schema = nextTruncate ? (await relationOf(client, table, this.#catalog)).table : relation.table;
            // Chunk k's high and chunk k+1's low in one transaction: the low is durable (and
            // after the rows in the WAL) before the stream lets chunk k's rows out.
            await writeAttachMessages(client, prefix, [
              attachMessage(chunk, 'high', next === undefined),
              ...(next ? [attachMessage(next, 'low')] : []),
            ]);
            lowWritten(restarting);
            restarting = undefined;
            chunk.follow(true);
            // One chunk's rows held at a time: the next read waits until the stream took these.
            await chunk.handled;
            attempt = 1;
            at = nextAt;
            cursor = nextCursor;
            index = nextIndex;
            truncate = nextTruncate;
            if (next === undefined) {
              this.#attaching.delete(leafKey);
              return;
            }
            chunk = next;
            next = undefined;
          }
        } catch (error) {
          // A restart taken but not written: the next attempt takes it again.
          if (restarting !== undefined) {
            read.restart = true;
            read.onRestart.unshift(...restarting);
          }
          for (const dropped of [chunk, next]) {
            if (dropped === undefined) continue;
            this.#chunks.delete(dropped.id);
            this.#finishedChunks.add(dropped.id);
            dropped.follow(false);
          }
          if (signal.aborted) return;
          if (attempt >= 5) {
            this.#attaching.delete(leafKey);
            const what = rekey
              ? `the rows of captured table ${JSON.stringify(table.schema)}.${JSON.stringify(table.name)}, whose key columns changed,`
              : `partition ${JSON.stringify(leaf.schema)}.${JSON.stringify(leaf.name)} attached to captured table ${JSON.stringify(table.schema)}.${JSON.stringify(table.name)}: its rows`;
            const failure = new NanosyncError(
              PgErrorCode.PgCheck,
              `${what} could not be read (${(error as Error).message}); fix the cause and resume the pipeline, or re-snapshot the table (nanosync pipeline resnapshot <pipeline> --table ${table.schema}.${table.name})`,
              { cause: error },
            );
            this.#logger.error('replication stream failed', { error: failure.message });
            this.#queue.fail(failure);
            this.#stop.abort();
            return;
          }
          this.#logger.warn('reading a chunk of rows for the stream failed; retrying', {
            table: `${table.schema}.${table.name}`,
            ...(rekey ? { reason: 'key columns changed' } : { partition: `${leaf.schema}.${leaf.name}` }),
            attempt,
            error: (error as Error).message,
          });
          await sleep(500 * 2 ** attempt, signal);
        } finally {
          if (!(client instanceof Error)) await client.end().catch(() => {});
        }
      }
    })();
  }

  /** A chunk the stream will see the messages of, registered before its low message is written. */
  #newChunk(spec: {
    table: TableRef;
    leaf: TableRef;
    leafKey: string;
    rekey: boolean;
    index: number;
    cursor: CtidChunkCursor | undefined;
    truncate: boolean;
  }): AttachChunk {
    let follow: (ok: boolean) => void = () => {};
    let handle: () => void = () => {};
    const followed = new Promise<boolean>((resolve) => {
      follow = resolve;
    });
    const handled = new Promise<void>((resolve) => {
      handle = resolve;
      this.#readers.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    const chunk: AttachChunk = {
      id: newChunkId(),
      table: spec.table,
      leaf: spec.leaf,
      leafKey: spec.leafKey,
      rekey: spec.rekey,
      index: spec.index,
      ...(spec.cursor ? { after: { page: spec.cursor.page, offset: spec.cursor.offset } } : {}),
      truncates: spec.truncate,
      lowSeen: false,
      changed: new Set(),
      truncated: false,
      followed,
      follow,
      handled,
      handle,
    };
    this.#chunks.set(chunk.id, chunk);
    return chunk;
  }

  /**
   * A captured table announced with other key columns than before (primary key dropped and
   * added on other columns, another replica identity index): its rows under the old key
   * would stay live for a consumer that upserts by key, so the table is read again as a
   * chunk whose low message also carries a `truncate` of the table. "Before" is what this
   * process last saw, or on first sight the shape the pipeline's memory holds from the last
   * stream or, before the first stream, from the snapshot's plan (a key redefined while no
   * stream ran, while the initial snapshot read the table, or just before a crash). The memory takes
   * the new shape once the read's first low message is in the WAL: a crash before that
   * finds the difference again, one after it resumes the read from the message.
   */
  async #noteKeyColumns(relation: StreamRelation): Promise<void> {
    const name = `${relation.table.schema}\u0000${relation.table.name}`;
    const now: KeyShape = { keys: relation.table.keyColumns, columns: relation.columns.map((c) => c.name) };
    const seen = this.#keyColumns.get(name);
    if (now.keys.length === 0 || this.#attachPrefix === undefined) {
      this.#keyColumns.set(name, now);
      return;
    }
    const table = { schema: relation.table.schema, name: relation.table.name };
    const entry = keyMemoryEntry(table);
    // Noted as seen only after the memory answered: a failed read is asked again after the retry.
    const before = seen ?? (await this.#recall<KeyShape>(entry));
    this.#keyColumns.set(name, now);
    if (before === undefined || !keyRedefined(before, now)) {
      this.#remember(entry, now);
      return;
    }
    if (seen === undefined) {
      this.#logger.warn(
        'the key columns of a captured table changed since the last stream (while the pipeline was stopped): its rows are sent again under the new key, after a truncate',
        { table: `${table.schema}.${table.name}`, before: before.keys.join(', '), after: now.keys.join(', ') },
      );
    } else {
      this.#logger.warn(
        'the key columns of a captured table changed: its rows are sent again under the new key, after a truncate',
        { table: `${table.schema}.${table.name}`, before: before.keys.join(', '), after: now.keys.join(', ') },
      );
    }
    this.#startAttach(table, table, true, undefined, () => this.#remember(entry, now));
  }

  /** An entry of the pipeline's memory (JSON), or undefined without one or without a memory. */
  async #recall<T>(entry: string): Promise<T | undefined> {
    const memory = this.#options.memory;
    if (memory === undefined) return undefined;
    // A memory that cannot be read ends the stream (retried by core): going on without it
    // could miss a key redefined while no stream ran.
    const raw = await memory.get(entry);
    if (raw === undefined) return undefined;
    this.#remembered.set(entry, raw);
    try {
      return JSON.parse(raw) as T;
    } catch {
      this.#logger.warn('an entry of the pipeline memory is unreadable; taking the catalog as it is now', { entry });
      return undefined;
    }
  }

  /**
   * Give the pipeline's memory `value` under `entry`, in the background (in call order). A
   * failed write leaves the older value, which at worst makes the next process read a table
   * or partition again.
   */
  #remember(entry: string, value: unknown): void {
    const memory = this.#options.memory;
    if (memory === undefined) return;
    const text = JSON.stringify(value);
    if (this.#remembered.get(entry) === text) return;
    this.#remembered.set(entry, text);
    memory.set(entry, text).catch((error: unknown) => {
      if (this.#remembered.get(entry) === text) this.#remembered.delete(entry);
      this.#logger.warn('the pipeline memory could not be written', { entry, error: (error as Error).message });
    });
  }

  /** A change to a table with a chunk between its messages: its key's chunk row is stale. */
  #noteChange(event: ChangeEvent): void {
    for (const chunk of this.#chunks.values()) {
      if (!chunk.lowSeen || !sameTable(chunk.table, event.table)) continue;
      chunk.changed.add(keyText(event.key));
      if (event.before) {
        const old: Row = {};
        for (const column of event.table.keyColumns)
          if (Object.hasOwn(event.before, column)) old[column] = event.before[column] as Value;
        chunk.changed.add(keyText(old));
      }
    }
  }

  /**
   * A message of an attached-partition chunk. Low: changes to its table are noted from here
   * on. High: once the next chunk's low message is durable (see attach-snapshot.ts), the
   * chunk's rows whose key did not change go out as `read` events at this position, as one
   * committed unit. One this process does not hold (written before a restart, its rows
   * never acknowledged): the leaf is read again from that chunk on.
   *
   * Its events take their marks at `messageMark(message.lsn)`, one byte before the LSN
   * pgoutput gives the message (see there): a commit record right after the message starts
   * at that LSN, and its changes must sort after the chunk's rows, not among them.
   */
  async #onAttachMessage(message: Extract<PgOutputMessage, { tag: 'message' }>): Promise<void> {
    const parsed = parseAttachMessage(message.content);
    if (!parsed) return;
    const at = messageMark(message.lsn);
    if (this.#transaction) throw protocolError(`chunk message inside transaction ${this.#transaction.xid}`);
    // Another process's messages are known by id and kind: a chunk's low and high both count.
    const seen = `${parsed.id} ${parsed.attach}`;
    if (this.#finishedChunks.has(parsed.id) || this.#finishedChunks.has(seen)) return;
    const chunk = this.#chunks.get(parsed.id);
    if (!chunk) {
      // Another process's (or a dropped read's) chunk, at or before `from` too: the slot was
      // held before it, so its rows were not all acknowledged.
      this.#finishedChunks.add(seen);
      if (this.#tables?.has(`${parsed.table.schema}\u0000${parsed.table.name}`)) {
        const leafKey = leafKeyOf(parsed.table, parsed.leaf, parsed.rekey === true);
        this.#hold(leafKey);
        if (compareMarks({ lsn: at, index: 0 }, this.#from) <= 0) {
          // Acknowledged up to `from`: a high message there was delivered with its rows (the
          // next chunk's low follows it), a low one names a chunk that may not have been.
          if (parsed.attach === 'low') this.#resumeAt.set(leafKey, parsed);
          else this.#resumeAt.delete(leafKey);
          if (parsed.attach === 'high' && parsed.last === true) this.#holds.delete(leafKey);
          return;
        }
        // The first message after `from`: the read goes on from the first chunk not
        // acknowledged, a low at or before `from` when there is one (its high lies after
        // `from`), else this message's chunk (a high carries its chunk's start too).
        const from = this.#resumeAt.get(leafKey) ?? parsed;
        this.#resumeAt.delete(leafKey);
        // Already read again (from an earlier message of it, or in full): nothing to add.
        if (this.#attaching.has(leafKey)) return;
        this.#logger.info('reading again a chunk of rows whose delivery a restart interrupted', {
          table: `${from.table.schema}.${from.table.name}`,
          ...(from.rekey ? { reason: 'key columns changed' } : {}),
          partition: `${from.leaf.schema}.${from.leaf.name}`,
          chunk: from.chunk ?? 0,
        });
        this.#startAttach(from.table, from.leaf, from.rekey === true, from);
      }
      return;
    }
    if (compareMarks({ lsn: at, index: 0 }, this.#delivered) <= 0) return;
    if (parsed.attach === 'low') {
      chunk.lowSeen = true;
      this.#hold(chunk.leafKey);
      if (chunk.truncates && chunk.schema) {
        // Every row under the old key goes: the table's rows come back with the new key at the high messages.
        const mark: Mark = { lsn: at, index: 1 };
        const event: ChangeEvent = {
          op: 'truncate',
          table: chunk.schema,
          key: {},
          position: encodePosition(mark.lsn, mark.index),
          truncate: { cascade: false, restartIdentity: false },
        };
        this.#delivered = mark;
        await this.#queue.push(event, 64);
        this.#boundary = mark;
        this.#queue.commit(event.position, message.lsn);
        this.#noteFlush(message.lsn);
      }
      return;
    }
    // Not before the next chunk's low message is durable: otherwise a crash right after these
    // rows are acknowledged would leave no trace of the rest of the leaf.
    const followed = await chunk.followed;
    this.#chunks.delete(chunk.id);
    this.#finishedChunks.add(chunk.id);
    const rows = chunk.rows ?? [];
    chunk.rows = undefined;
    try {
      if (!followed) return;
      // Delivered: the next chunk's low message (durable, after these rows) holds the slot from here.
      this.#holds.delete(chunk.leafKey);
      const events = chunk.truncated ? [] : rows.filter((event) => !chunk.changed.has(keyText(event.key)));
      this.#logger.info(
        chunk.rekey ? 'rows of a table whose key changed delivered again' : 'rows of an attached partition delivered',
        {
          table: `${chunk.table.schema}.${chunk.table.name}`,
          partition: `${chunk.leaf.schema}.${chunk.leaf.name}`,
          chunk: chunk.index,
          last: parsed.last === true,
          rows: events.length,
          dropped: rows.length - events.length,
        },
      );
      if (events.length === 0) return;
      for (const [i, event] of events.entries()) {
        const mark: Mark = { lsn: at, index: i + 1 };
        event.position = encodePosition(mark.lsn, mark.index);
        this.#delivered = mark;
        await this.#queue.push(event, 64);
      }
      const boundary: Mark = { lsn: at, index: events.length };
      this.#boundary = boundary;
      this.#queue.commit(encodePosition(boundary.lsn, boundary.index), message.lsn);
      this.#noteFlush(message.lsn);
    } finally {
      chunk.handle();
    }
  }
}

interface AttachChunk {
  id: string;
  table: TableRef;
  leaf: TableRef;
  /** What `#attaching` holds while this chunk is read or waits for its high message. */
  leafKey: string;
  /** The whole table, read again because its key columns changed. */
  rekey: boolean;
  /** The chunk's index in this read, and where it starts (absent: the leaf's first row). */
  index: number;
  after?: { page: number; offset: number };
  /** Its low message is where the table's `truncate` goes (a rekey's first chunk). */
  truncates: boolean;
  /** The table's shape when the chunk was read (the truncate event of a rekey carries it). */
  schema?: TableSchema;
  /** The low message was decoded: changes to `table` are noted in `changed`. */
  lowSeen: boolean;
  /** `keyText` of every key changed since the low message. */
  changed: Set<string>;
  truncated: boolean;
  /** The chunk's rows, set before the high message is written. */
  rows?: ChangeEvent[];
  /** True once the messages after the high one are durable (chunk k+1's low, or none: last); false: dropped. */
  followed: Promise<boolean>;
  follow(ok: boolean): void;
  /** Resolved once the stream handled the high message (rows delivered or dropped). */
  handled: Promise<void>;
  handle(): void;
}

function attachMessage(chunk: AttachChunk, attach: 'low' | 'high', last = false): AttachMessage {
  return {
    attach,
    id: chunk.id,
    table: chunk.table,
    leaf: chunk.leaf,
    ...(chunk.rekey ? { rekey: true as const } : {}),
    chunk: chunk.index,
    ...(chunk.after ? { after: chunk.after } : {}),
    ...(attach === 'high' && last ? { last: true as const } : {}),
    ...(attach === 'low' && chunk.truncates ? { truncate: true as const } : {}),
  };
}

/** A table's key as the pipeline memory holds it (JSON) under {@link keyMemoryEntry}. */
export interface KeyShape {
  keys: readonly string[];
  columns: readonly string[];
}

/** The pipeline memory's entry of a table's key shape. */
export function keyMemoryEntry(table: TableRef): string {
  return `key ${JSON.stringify([table.schema, table.name])}`;
}

/**
 * Whether the key is made of other columns now. A renamed key column is not a new key (the
 * same values, and a Kafka key carries values only): a key name that changed counts as a
 * rename when the new name did not exist before and the old name is gone.
 */
export function keyRedefined(before: KeyShape, now: KeyShape): boolean {
  if (before.keys.length !== now.keys.length) return true;
  return now.keys.some(
    (key, i) => key !== before.keys[i] && (before.columns.includes(key) || now.columns.includes(before.keys[i] ?? '')),
  );
}

/** A read of `#attaching`: whether to start over, and who waits for its low message to be durable. */
interface AttachRead {
  restart: boolean;
  /** A low message of it is in the WAL. */
  started: boolean;
  /** Told after the next low message is written. */
  onLow: (() => void)[];
  /** Told once the low message of the restart (with its truncate) is written. */
  onRestart: (() => void)[];
}

/** What `#attaching` and `#holds` know a read by: the leaf, or the table for a rekey. */
function leafKeyOf(table: TableRef, leaf: TableRef, rekey: boolean): string {
  return rekey ? `${table.schema}\u0000${table.name}\u0000rekey` : `${leaf.schema}\u0000${leaf.name}`;
}

function sameTable(a: TableRef, b: TableRef): boolean {
  return a.schema === b.schema && a.name === b.name;
}

/** Whether updates and deletes of this relation can be published (see slot/replica-identity.ts). */
function hasUsableIdentity(relation: StreamRelation): boolean {
  if (relation.replicaIdentity === 'full') return true;
  if (relation.replicaIdentity === 'nothing') return false;
  return relation.columns.some((column) => column.isIdentity);
}

function protocolError(message: string): NanosyncError {
  return new NanosyncError(PgErrorCode.PgProtocol, `pgoutput: ${message}`);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
