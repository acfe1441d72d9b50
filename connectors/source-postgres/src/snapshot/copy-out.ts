/**
 * `COPY … TO STDOUT` on a `pg` client, as an async iterator of rows.
 *
 * Message flow after the simple Query: CopyOutResponse ('H'), one CopyData ('d') per row,
 * CopyDone ('c'), CommandComplete ('C'), ReadyForQuery ('Z'); an ErrorResponse ('E') may
 * replace anything after the query. The server sends exactly one row per CopyData
 * message, so each chunk handed to `handleCopyData` is one complete line.
 *
 * The object is a pg "submittable": `client.query(copyOut)` queues it and pg routes the
 * protocol messages to the `handle…` methods. When more than `highWaterMark` rows wait
 * unread, the socket is paused (TCP backpressure reaches the server), and resumed once the
 * reader caught up.
 *
 * COPY text format (what `parseCopyTextRow` reads): columns separated by TAB, the line ends
 * with LF, `\N` is NULL, and backslash escapes `\b \f \n \r \t \v \\` (plus octal `\123`
 * and hex `\x41`, which the server does not produce on output but the format allows).
 */
interface PgConnectionLike {
  query(text: string): void;
  stream: { pause(): void; resume(): void };
}

export class CopyOutQuery {
  readonly text: string;
  callback?: (err: Error | null) => void;
  readonly #highWaterMark: number;
  #connection: PgConnectionLike | undefined;
  #rows: string[] = [];
  #head = 0;
  #paused = false;
  #finished = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(text: string, highWaterMark = 4096) {
    this.text = text;
    this.#highWaterMark = highWaterMark;
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  /** Resolves when the server sent ReadyForQuery (the connection is usable again). */
  get done(): Promise<void> {
    return this.#done;
  }

  submit(connection: PgConnectionLike): void {
    this.#connection = connection;
    connection.query(this.text);
  }

  handleCopyData(message: { chunk: Buffer }): void {
    // pg-protocol reuses its read buffer for later messages: keep a copy, not a view. As a
    // string, which is what the row is parsed from anyway: a Buffer per row would be one more
    // off-heap allocation per row for the collector to track and free.
    this.#rows.push(message.chunk.toString('utf8'));
    if (!this.#paused && this.#rows.length - this.#head >= this.#highWaterMark) {
      this.#paused = true;
      this.#connection?.stream.pause();
    }
    this.#notify();
  }

  handleError(err: Error): void {
    this.#error ??= err;
    this.#notify();
  }

  handleReadyForQuery(): void {
    this.#finished = true;
    this.#notify();
    this.#resolveDone();
    this.callback?.(this.#error ?? null);
  }

  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(connection: { sendCopyFail(message: string): void }): void {
    connection.sendCopyFail('nanosync only reads with COPY TO');
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /**
   * Up to `max` rows (each one COPY text line), waiting for at least one;
   * an empty array means the COPY finished. Throws the server's error.
   */
  async next(max: number): Promise<string[]> {
    for (;;) {
      if (this.#error) throw this.#error;
      const available = this.#rows.length - this.#head;
      if (available > 0) {
        const take = Math.min(max, available);
        const out = this.#rows.slice(this.#head, this.#head + take);
        this.#head += take;
        if (this.#head === this.#rows.length) {
          this.#rows = [];
          this.#head = 0;
        } else if (this.#head > 65536) {
          this.#rows = this.#rows.slice(this.#head);
          this.#head = 0;
        }
        if (this.#paused && this.#rows.length - this.#head < this.#highWaterMark / 2) {
          this.#paused = false;
          this.#connection?.stream.resume();
        }
        return out;
      }
      if (this.#finished) return [];
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }
}

/**
 * `COPY … TO STDOUT` kept as bytes, for a chunk decoded in a worker thread: the lines are
 * copied as they arrive into one growing buffer of its own (no object per row), the first
 * ones only — at most `maxRows`, and none after the line that reached `maxBytes` (so at least
 * one) — exactly the rows {@link ChunkBuffer} keeps; later lines are counted (`returned`) and
 * dropped. No flow control is needed: nothing past the bound is held.
 */
export class CopyOutBytes {
  readonly text: string;
  callback?: (err: Error | null) => void;
  /** Lines kept. */
  rows = 0;
  /** Lines received, kept or not. */
  returned = 0;
  readonly #maxRows: number;
  readonly #maxBytes: number;
  #buffer: Buffer;
  #length = 0;
  #lastStart = -1;
  #error: Error | undefined;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(text: string, maxRows: number, maxBytes: number) {
    this.text = text;
    this.#maxRows = Math.max(1, Math.floor(maxRows));
    this.#maxBytes = Math.max(1, Math.floor(maxBytes));
    this.#buffer = stagingBuffer(Math.min(this.#maxBytes, MAX_SPARE_BYTES) + STAGING_SLACK);
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  /** Bytes kept (the lines with their LF). */
  get bytes(): number {
    return this.#length;
  }

  get full(): boolean {
    return this.rows >= this.#maxRows || this.#length >= this.#maxBytes;
  }

  /** Resolves when the server sent ReadyForQuery; rejects with the server's error, if any. */
  get done(): Promise<void> {
    return this.#done.then(() => {
      if (this.#error) throw this.#error;
    });
  }

  submit(connection: PgConnectionLike): void {
    connection.query(this.text);
  }

  handleCopyData(message: { chunk: Buffer }): void {
    this.returned++;
    if (this.full) return;
    const chunk = message.chunk;
    const end = this.#length + chunk.length;
    if (end > this.#buffer.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(end, this.#buffer.length * 2));
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    // pg-protocol reuses its read buffer for later messages: copied now.
    this.#buffer.set(chunk, this.#length);
    this.#lastStart = this.#length;
    this.#length = end;
    this.rows++;
  }

  handleError(err: Error): void {
    this.#error ??= err;
  }

  handleReadyForQuery(): void {
    this.#resolveDone();
    this.callback?.(this.#error ?? null);
  }

  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(connection: { sendCopyFail(message: string): void }): void {
    connection.sendCopyFail('nanosync only reads with COPY TO');
  }

  /** The last line kept (a view, valid until `take()`), without its LF; undefined when none. */
  lastLine(): Buffer | undefined {
    if (this.#lastStart < 0) return undefined;
    let end = this.#length;
    if (end > this.#lastStart && this.#buffer[end - 1] === 10) end--;
    return Buffer.from(this.#buffer.buffer, this.#buffer.byteOffset + this.#lastStart, end - this.#lastStart);
  }

  /**
   * The kept lines as an ArrayBuffer of exactly their size, of its own (to move to a worker).
   * The buffer they were collected in goes back to the spares for the next chunk's read.
   */
  take(): ArrayBuffer {
    const staging = this.#buffer;
    const whole = staging.buffer as ArrayBuffer;
    let out: ArrayBuffer;
    if (this.#length === whole.byteLength) out = whole;
    else {
      out = whole.slice(0, this.#length);
      releaseStaging(staging);
    }
    this.#buffer = Buffer.alloc(0);
    this.#lastStart = -1;
    return out;
  }
}

/**
 * Room past `maxBytes` in a chunk's staging buffer: the line that reaches the bound is kept
 * whole, so a chunk ends a little past it; a longer line grows the buffer.
 */
const STAGING_SLACK = 64 << 10;
/** A staging buffer starts at most this large (plus the slack) and is kept for reuse only up to it (plus the slack). */
const MAX_SPARE_BYTES = 16 << 20;
/** Spare staging buffers: about one per concurrent chunk read (`snapshot.concurrency`). */
const MAX_SPARES = 4;
const spares: Buffer[] = [];

/**
 * A staging buffer for a chunk of raw COPY lines, at least `size` bytes: a spare one left by
 * an earlier chunk, or a new one (not zero-filled, and of its own, not Node's shared pool).
 * Sized for the whole chunk up front and reused, so a chunk costs one allocation (the exact
 * copy `take()` hands out) instead of a series of doubling ones: each is external memory that
 * counts toward V8's next full collection on the main thread.
 */
function stagingBuffer(size: number): Buffer {
  for (let i = spares.length - 1; i >= 0; i--) {
    const spare = spares[i]!;
    if (spare.length >= size) {
      spares.splice(i, 1);
      return spare;
    }
  }
  return Buffer.allocUnsafeSlow(size);
}

function releaseStaging(buffer: Buffer): void {
  if (buffer.length > MAX_SPARE_BYTES + STAGING_SLACK || spares.length >= MAX_SPARES) return;
  spares.push(buffer);
}

const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

export function unescapeCopyField(field: string): string {
  let out = '';
  let start = 0;
  for (let i = field.indexOf('\\'); i >= 0; i = field.indexOf('\\', start)) {
    out += field.slice(start, i);
    const c = field.charAt(i + 1);
    const simple = ESCAPES[c];
    if (simple !== undefined) {
      out += simple;
      start = i + 2;
    } else if (c >= '0' && c <= '7') {
      const m = /^[0-7]{1,3}/.exec(field.slice(i + 1, i + 4))!;
      out += String.fromCharCode(Number.parseInt(m[0], 8));
      start = i + 1 + m[0].length;
    } else if (c === 'x' && /^[0-9a-fA-F]/.test(field.charAt(i + 2))) {
      const m = /^[0-9a-fA-F]{1,2}/.exec(field.slice(i + 2, i + 4))!;
      out += String.fromCharCode(Number.parseInt(m[0], 16));
      start = i + 2 + m[0].length;
    } else {
      out += c;
      start = i + 2;
    }
  }
  return out + field.slice(start);
}

/** One COPY text line → field texts (null for `\N`). */
export function parseCopyTextRow(line: Buffer | string, expectedColumns: number): (string | null)[] {
  let text = typeof line === 'string' ? line : line.toString('utf8');
  if (text.endsWith('\n')) text = text.slice(0, -1);
  if (expectedColumns === 0) return [];
  const fields: (string | null)[] = new Array(expectedColumns);
  let start = 0;
  for (let col = 0; col < expectedColumns; col++) {
    let end = text.indexOf('\t', start);
    if (end < 0) end = text.length;
    const raw = text.slice(start, end);
    fields[col] = raw === '\\N' ? null : raw.includes('\\') ? unescapeCopyField(raw) : raw;
    start = end + 1;
    if (end === text.length && col < expectedColumns - 1) {
      throw new Error(`COPY row has ${col + 1} columns, expected ${expectedColumns}`);
    }
  }
  if (start <= text.length) throw new Error(`COPY row has more than ${expectedColumns} columns`);
  return fields;
}
