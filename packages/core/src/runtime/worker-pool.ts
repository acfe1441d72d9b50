import { type TransferListItem, Worker } from 'node:worker_threads';
import { ErrorCode, NanosyncError } from '../errors.js';
import type { TaskErrorData, WorkerSetup } from './worker-task.js';

/** One unit of work for the pool. */
export interface PoolTask<T> {
  task: T;
  /** Buffers in `task` to move to the worker instead of copying them (they are detached here). */
  transfer?: TransferListItem[];
  /** What the task weighs against the worker's bound (its input bytes). */
  bytes: number;
  /**
   * Tasks with the same shard go to the same worker (shard modulo the pool size), for a
   * worker that keeps state between tasks. Without it tasks go round-robin.
   */
  shard?: number;
}

export interface OrderedWorkerPoolOptions<D> {
  /** Names the pool in errors and thread names: `kafka-encode`. */
  name: string;
  /**
   * The worker module (a file URL or path); it calls `serveTasks` from `@nanosync/core`. Write
   * it as `new URL('./x-worker.js', import.meta.url)`: run from sources through tsx that finds
   * `x-worker.ts`, and a build that has `x-worker` as an entry (tsup) puts `x-worker.js` there.
   */
  module: URL | string;
  /** Worker threads, at least 1. */
  size: number;
  /** Given to every worker's setup (structured clone, once). */
  data: D;
  /**
   * Bytes of tasks one worker may hold, sent and not yet handed back by `map()` (at least
   * one task whatever its size). The memory bound of the pool is size × this, plus results.
   */
  maxBytesPerWorker: number;
  /** Node options for the workers; default: the main thread's (`process.execArgv`). */
  execArgv?: string[];
  /** Heap limits of each worker. */
  resourceLimits?: { maxOldGenerationSizeMb?: number; maxYoungGenerationSizeMb?: number };
}

interface Pending<R> {
  resolve(result: R): void;
  reject(err: unknown): void;
}

/**
 * A fixed set of worker threads that run tasks and hand the results back **in the order the
 * tasks were given**, whatever order the workers finish in: `map()` is the only way to run
 * tasks. Memory is bounded in bytes per worker (`maxBytesPerWorker`): `map()` stops taking
 * tasks while the worker the next task goes to is full, and yields results meanwhile.
 *
 * A task that throws rejects alone (its error comes out of `map()` at its place in the
 * order, as a `NanosyncError` when it was one in the worker). A worker that dies (an
 * uncaught exception, `process.exit`, out of memory) fails the whole pool: every task not
 * yet handed back rejects with `NS_R2012` naming the pool, the worker and the cause, and
 * so does every later `map()`; nothing after the failed task is ever yielded, so a caller
 * that checkpoints what `map()` yielded never passes what was lost.
 */
export class OrderedWorkerPool<T, R, D = unknown> {
  private readonly workers: Worker[] = [];
  private readonly pending: Map<number, Pending<R>>[] = [];
  private nextId = 0;
  private roundRobin = 0;
  private failure: NanosyncError | undefined;
  private closing = false;

  private constructor(private readonly options: OrderedWorkerPoolOptions<D>) {}

  /** Start the workers and wait until each one's setup ran (a setup that throws fails here). */
  static async start<T, R, D>(options: OrderedWorkerPoolOptions<D>): Promise<OrderedWorkerPool<T, R, D>> {
    if (!Number.isInteger(options.size) || options.size < 1)
      throw new NanosyncError(
        ErrorCode.Internal,
        `worker pool "${options.name}" needs at least 1 worker, got ${options.size}`,
      );
    const pool = new OrderedWorkerPool<T, R, D>(options);
    const ready: Promise<void>[] = [];
    for (let index = 0; index < options.size; index++) ready.push(pool.spawn(index));
    try {
      await Promise.all(ready);
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  get size(): number {
    return this.options.size;
  }

  private spawn(index: number): Promise<void> {
    const setup: WorkerSetup<D> = { data: this.options.data, index, size: this.options.size };
    const worker = new Worker(this.options.module, {
      workerData: setup,
      name: `nanosync ${this.options.name} ${index}`,
      ...(this.options.execArgv ? { execArgv: this.options.execArgv } : {}),
      ...(this.options.resourceLimits ? { resourceLimits: this.options.resourceLimits } : {}),
    });
    const pending = new Map<number, Pending<R>>();
    this.workers.push(worker);
    this.pending.push(pending);
    return new Promise<void>((resolveReady, rejectReady) => {
      worker.on(
        'message',
        (message: { ready: true } | { id: number; result: R } | { id: number; error: TaskErrorData }) => {
          if ('ready' in message) return resolveReady();
          const waiter = pending.get(message.id);
          if (!waiter) return;
          pending.delete(message.id);
          if ('error' in message) waiter.reject(taskError(message.error));
          else waiter.resolve(message.result);
        },
      );
      worker.on('error', (err) => {
        this.fail(index, `threw ${err.name}: ${err.message}`, err);
        rejectReady(this.failure);
      });
      worker.on('exit', (code) => {
        if (!this.closing) this.fail(index, `exited with code ${code}`);
        rejectReady(
          this.failure ?? new NanosyncError(ErrorCode.WorkerFailed, `worker pool "${this.options.name}" closed`),
        );
      });
    });
  }

  private fail(index: number, what: string, cause?: unknown): void {
    if (!this.failure) {
      this.failure = new NanosyncError(
        ErrorCode.WorkerFailed,
        `worker ${index + 1} of ${this.options.size} in the "${this.options.name}" pool ${what}; nothing it had not handed back was passed on`,
        { cause, details: { pool: this.options.name, worker: index + 1 } },
      );
    }
    for (const waiters of this.pending) {
      for (const waiter of waiters.values()) waiter.reject(this.failure);
      waiters.clear();
    }
    if (!this.closing) void this.close();
  }

  private send(index: number, item: PoolTask<T>): Promise<R> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const result = new Promise<R>((resolve, reject) => this.pending[index]!.set(id, { resolve, reject }));
    this.workers[index]!.postMessage({ id, task: item.task }, item.transfer ?? []);
    return result;
  }

  /**
   * Run every task and yield each result in the order of `tasks`. At most
   * `maxBytesPerWorker` of tasks wait per worker between being taken from `tasks` and their
   * result being yielded (the bound is per `map()` call: a caller that runs several at once
   * on one pool, e.g. one per stream shard, holds up to that many times as much). An error (the task's own, or the pool's failure) is thrown at the
   * task's place: the results before it were yielded, none after it will be.
   */
  async *map(tasks: Iterable<PoolTask<T>> | AsyncIterable<PoolTask<T>>): AsyncGenerator<R, void, undefined> {
    const size = this.options.size;
    const held = new Array<number>(size).fill(0);
    const window: { worker: number; bytes: number; result: Promise<R> }[] = [];
    let head = 0;
    const takeHead = async (): Promise<R> => {
      const first = window[head]!;
      window[head++] = undefined as never;
      if (head > 1024 && head * 2 > window.length) {
        window.splice(0, head);
        head = 0;
      }
      held[first.worker]! -= first.bytes;
      return first.result;
    };
    try {
      for await (const item of tasks) {
        const worker = item.shard !== undefined ? item.shard % size : this.roundRobin++ % size;
        while (held[worker]! > 0 && held[worker]! + item.bytes > this.options.maxBytesPerWorker) yield await takeHead();
        const result = this.send(worker, item);
        result.catch(() => {});
        window.push({ worker, bytes: item.bytes, result });
        held[worker]! += item.bytes;
      }
      while (head < window.length) yield await takeHead();
    } finally {
      // Results not taken (the caller stopped early or an error was thrown) are dropped; their rejections are already handled.
      window.length = 0;
    }
  }

  /**
   * Run one task on the next worker (round-robin, or its shard's) and resolve to its result,
   * without `map()`'s bound in bytes: for a caller that bounds what it has in flight itself
   * (the change stream: by its sink lanes' queues) and keeps the results in order itself.
   */
  submit(item: PoolTask<T>): Promise<R> {
    const worker = item.shard !== undefined ? item.shard % this.options.size : this.roundRobin++ % this.options.size;
    return this.send(worker, item);
  }

  /** Stop the workers. Tasks still running reject; the pool cannot be used afterwards. */
  async close(): Promise<void> {
    this.closing = true;
    this.failure ??= new NanosyncError(ErrorCode.WorkerFailed, `worker pool "${this.options.name}" was closed`);
    for (const waiters of this.pending) {
      for (const waiter of waiters.values()) waiter.reject(this.failure);
      waiters.clear();
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** A task's error as the worker threw it: a NanosyncError again when it had a code. */
function taskError(data: TaskErrorData): Error {
  const err =
    data.code !== undefined && /^NS_[A-Z]\d{4}$/.test(data.code)
      ? new NanosyncError(data.code, data.message, {
          retriable: data.retriable ?? false,
          details: data.details as NanosyncError['details'],
        })
      : Object.assign(new Error(data.message), { name: data.name });
  if (data.stack !== undefined) err.stack = data.stack;
  return err;
}
