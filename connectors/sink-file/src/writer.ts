import { type FileHandle, mkdir, open, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { ChangeEvent, EncodedBatch, EncodedEvents, Sink, TableSchema } from '@nanosync/core';
import type { FileSinkConfig } from './config.js';
import { tableFileName, toJsonLine } from './encode.js';
import { decodeLineGroups } from './encoded.js';
import { fileSinkError } from './errors.js';

/** Pending output is written out once it grows past this, so a batch never sits whole in memory as text. */
const FLUSH_BYTES = 1 << 20;
/**
 * Lines are encoded into this buffer as they are made (one UTF-8 copy each, no joined string
 * to encode again); room for a line is counted at 3 bytes per UTF-16 unit, its worst case.
 */
const ARENA_BYTES = FLUSH_BYTES + (256 << 10);
/** Files kept open at once; the least recently used is closed beyond this. */
const MAX_OPEN_FILES = 64;

interface OpenFile {
  handle: FileHandle;
  /** Encoded lines not written yet, in order: parts of the sink's arena, or a line too large for it. */
  pending: Buffer[];
}

/**
 * Appends events as JSON lines. `write()` resolves only after every file it touched has
 * been fsynced, so the checkpoint core writes next never runs ahead of the data.
 *
 * A crash or a failed write (e.g. ENOSPC) can leave half a line at the end of a file (that
 * batch never resolved, so it will be replayed). Each time a file is opened, anything after
 * its last newline is cut off before new lines are appended; a failed write closes every file
 * so the retry opens them afresh.
 */
export class FileSink implements Sink {
  private readonly files = new Map<string, OpenFile>();
  private readonly directory: string | undefined;
  private readonly singleFile: string | undefined;
  private readonly fsync: boolean;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;
  /** Where `write()` encodes lines until they are flushed (made on the first write). */
  private arena: Buffer | undefined;
  private arenaUsed = 0;
  /** The file whose lines end the arena's used part, and where that run of them starts. */
  private runTarget: OpenFile | undefined;
  private runStart = 0;

  constructor(config: FileSinkConfig) {
    this.directory = config.path === undefined ? undefined : resolve(config.path);
    this.singleFile = config.file === undefined ? undefined : resolve(config.file);
    this.fsync = config.fsync;
  }

  /** The file a table's events are appended to. */
  fileFor(table: { schema: string; name: string }): string {
    return this.singleFile ?? join(this.directory!, tableFileName(table));
  }

  async open(_tables: TableSchema[]): Promise<void> {
    const folder = this.directory ?? dirname(this.singleFile!);
    try {
      await mkdir(folder, { recursive: true });
    } catch (err) {
      throw fileSinkError('create folder', folder, err);
    }
    try {
      const info = await stat(folder);
      if (!info.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    } catch (err) {
      throw fileSinkError('use folder', folder, err);
    }
  }

  write(events: ChangeEvent[]): Promise<void> {
    const next = this.queue.then(() => this.writeNow(events).catch((err) => this.forgetFiles(err)));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async writeNow(events: ChangeEvent[]): Promise<void> {
    if (this.closed) throw fileSinkError('write to', this.singleFile ?? this.directory!, new Error('sink is closed'));
    const touched = new Set<string>();
    // Consecutive events of one table go to the file already looked up for the first of them.
    let lastTable: ChangeEvent['table'] | undefined;
    let target: OpenFile | undefined;
    for (const event of events) {
      if (event.table !== lastTable || target === undefined) {
        const file = this.fileFor(event.table);
        target = await this.handleFor(file);
        lastTable = event.table;
        touched.add(file);
      }
      const line = toJsonLine(event);
      const room = line.length * 3;
      if (room > ARENA_BYTES) {
        // A line larger than the arena is encoded on its own and written out right away.
        this.endRun();
        target.pending.push(Buffer.from(line, 'utf8'));
        await this.flushPending();
        continue;
      }
      if (room > ARENA_BYTES - this.arenaUsed) await this.flushPending();
      this.append(target, line);
      if (this.arenaUsed >= FLUSH_BYTES) await this.flushPending();
    }
    await this.flushPending();
    await this.syncFiles(touched);
  }

  /** With `fsync`, make the files a write appended to durable before it resolves. */
  private async syncFiles(touched: ReadonlySet<string>): Promise<void> {
    if (!this.fsync) return;
    await Promise.all(
      [...touched].map(async (file) => {
        const target = this.files.get(file);
        if (!target) return;
        try {
          await target.handle.datasync();
        } catch (err) {
          throw fileSinkError('fsync', file, err);
        }
      }),
    );
  }

  /** Nothing to hand over: the worker encoder (`./worker`) needs no setup. */
  async encoderSetup(_tables: TableSchema[]): Promise<unknown> {
    return {};
  }

  /**
   * Append lines a worker encoded (`./worker`): the same lines, in the same order per file,
   * as `write()` of those events appends, fsynced the same way before this resolves.
   */
  writeEncoded(batch: EncodedBatch, _events: EncodedEvents): Promise<void> {
    return this.writeEncodedParts([{ batch }]);
  }

  /** Consecutive stream batches a worker encoded, appended in order and fsynced once. */
  writeEncodedParts(parts: readonly { batch: EncodedBatch }[]): Promise<void> {
    const next = this.queue.then(() => this.writeEncodedNow(parts).catch((err) => this.forgetFiles(err)));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async writeEncodedNow(parts: readonly { batch: EncodedBatch }[]): Promise<void> {
    if (this.closed) throw fileSinkError('write to', this.singleFile ?? this.directory!, new Error('sink is closed'));
    const touched = new Set<string>();
    for (const { batch } of parts)
      for (const run of decodeLineGroups(batch.bytes)) {
        const file = this.fileFor(run.table);
        const target = await this.handleFor(file);
        touched.add(file);
        // Lines of an earlier write() still pending go first (there are none between writes).
        if (this.hasPending(target)) await this.flushPending();
        try {
          let offset = 0;
          while (offset < run.data.length) {
            const { bytesWritten } = await target.handle.write(run.data, offset, run.data.length - offset);
            offset += bytesWritten;
          }
        } catch (err) {
          throw fileSinkError('append to', file, err);
        }
      }
    await this.syncFiles(touched);
  }

  /** Encode `line` into the arena (the caller made sure it fits), after the lines before it. */
  private append(target: OpenFile, line: string): void {
    if (this.runTarget !== target) {
      this.endRun();
      this.runTarget = target;
      this.runStart = this.arenaUsed;
    }
    this.arena ??= Buffer.allocUnsafe(ARENA_BYTES);
    this.arenaUsed += this.arena.write(line, this.arenaUsed);
  }

  /** The current run of one file's lines in the arena joins that file's pending output. */
  private endRun(): void {
    const target = this.runTarget;
    if (target !== undefined && this.arenaUsed > this.runStart)
      target.pending.push(this.arena!.subarray(this.runStart, this.arenaUsed));
    this.runTarget = undefined;
  }

  private hasPending(target: OpenFile): boolean {
    return target.pending.length > 0 || (this.runTarget === target && this.arenaUsed > this.runStart);
  }

  /** Drop every line not written yet (after a failure: the batch is written again). */
  private dropPending(): void {
    for (const target of this.files.values()) target.pending = [];
    this.runTarget = undefined;
    this.arenaUsed = 0;
  }

  private async flushPending(): Promise<void> {
    this.endRun();
    for (const [file, target] of this.files) {
      if (target.pending.length === 0) continue;
      const parts = target.pending;
      target.pending = [];
      try {
        for (const data of parts) {
          let offset = 0;
          while (offset < data.length) {
            const { bytesWritten } = await target.handle.write(data, offset, data.length - offset);
            offset += bytesWritten;
          }
        }
      } catch (err) {
        throw fileSinkError('append to', file, err);
      }
    }
    // Everything in the arena is written: it is reused from its start.
    this.arenaUsed = 0;
  }

  /**
   * After a failed write (a full disk, an I/O error) a file may end in half a line, and lines
   * of the batch may still be pending. Drop them all and close every file: the retried batch
   * opens them again, which cuts the partial line before anything is appended after it.
   */
  private async forgetFiles(err: unknown): Promise<never> {
    this.dropPending();
    const files = [...this.files.values()];
    this.files.clear();
    await Promise.all(files.map((f) => f.handle.close().catch(() => undefined)));
    throw err;
  }

  private async handleFor(file: string): Promise<OpenFile> {
    const existing = this.files.get(file);
    if (existing) {
      this.files.delete(file);
      this.files.set(file, existing);
      return existing;
    }
    if (this.files.size >= MAX_OPEN_FILES) await this.evictOldest();
    let handle: FileHandle;
    let created = false;
    try {
      created = !(await exists(file));
      handle = await open(file, 'a+');
    } catch (err) {
      throw fileSinkError('open', file, err);
    }
    try {
      await cutPartialLastLine(handle);
      if (created && this.fsync) await fsyncDirectory(dirname(file));
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw fileSinkError('prepare', file, err);
    }
    const entry: OpenFile = { handle, pending: [] };
    this.files.set(file, entry);
    return entry;
  }

  private async evictOldest(): Promise<void> {
    const oldest = this.files.keys().next();
    if (oldest.done) return;
    const file = oldest.value;
    const target = this.files.get(file)!;
    if (this.hasPending(target)) await this.flushPending();
    if (this.fsync) await target.handle.datasync().catch((err) => Promise.reject(fileSinkError('fsync', file, err)));
    this.files.delete(file);
    await target.handle.close();
  }

  async close(): Promise<void> {
    await this.queue;
    this.closed = true;
    const handles = [...this.files.values()];
    this.files.clear();
    await Promise.all(handles.map((f) => f.handle.close().catch(() => undefined)));
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** A directory entry is only durable once the directory itself is fsynced. */
async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Truncate the file just after its last `\n` when a crash left an unterminated line behind. */
async function cutPartialLastLine(handle: FileHandle): Promise<void> {
  const { size } = await handle.stat();
  if (size === 0) return;
  const chunk = Buffer.alloc(64 * 1024);
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - chunk.length);
    const { bytesRead } = await handle.read(chunk, 0, end - start, start);
    const newline = chunk.subarray(0, bytesRead).lastIndexOf(0x0a); // '\n'
    if (newline !== -1) {
      const keep = start + newline + 1;
      if (keep < size) {
        await handle.truncate(keep);
        await handle.sync();
      }
      return;
    }
    end = start;
  }
  await handle.truncate(0);
  await handle.sync();
}
