/**
 * The worker side of {@link OrderedWorkerPool} (`@nanosync/core/host`): a module the pool
 * starts in each worker thread calls `serveTasks` once, at its top level.
 *
 * Messages, main → worker: `{ id, task }`; worker → main: `{ ready: true }` once the
 * setup returned, then per task, in the order received, `{ id, result }` or
 * `{ id, error }` (a plain copy of the thrown error: name, message, code, retriable,
 * details, stack). A task's error is that task's alone; the worker goes on. Anything thrown
 * outside a task (setup, an uncaught exception) ends the worker, and the pool fails.
 *
 * Only `node:` imports here: a worker module loads this file without the rest of core.
 */
import { parentPort, type TransferListItem, workerData } from 'node:worker_threads';

/** What a task handler returns: the result, and the buffers in it to move (not copy) to the main thread. */
export interface TaskResult<R> {
  result: R;
  transfer?: TransferListItem[];
}

export type TaskHandler<T, R> = (task: T) => TaskResult<R> | Promise<TaskResult<R>>;

/** What the pool gives each worker: the pool's `workerData`, this worker's index (0-based) and the pool size. */
export interface WorkerSetup<D> {
  data: D;
  index: number;
  size: number;
}

/** An error as it crosses the thread boundary. */
export interface TaskErrorData {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  retriable?: boolean;
  details?: Record<string, unknown>;
}

export function errorData(err: unknown): TaskErrorData {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as Error & { code?: unknown; retriable?: unknown; details?: unknown };
  const data: TaskErrorData = { name: e.name, message: e.message };
  if (e.stack !== undefined) data.stack = e.stack;
  if (typeof e.code === 'string') data.code = e.code;
  if (typeof e.retriable === 'boolean') data.retriable = e.retriable;
  if (typeof e.details === 'object' && e.details !== null) data.details = { ...(e.details as Record<string, unknown>) };
  return data;
}

/**
 * Serve the pool's tasks in this worker: `setup` runs once with the pool's data (build
 * encoders, caches) and returns the handler for every task. Tasks are handled one at a
 * time in the order they arrive, an async handler included, so results leave in order.
 */
export function serveTasks<D, T, R>(setup: (setup: WorkerSetup<D>) => TaskHandler<T, R> | Promise<TaskHandler<T, R>>) {
  const port = parentPort;
  if (!port)
    throw new Error('serveTasks() runs in a worker thread started by OrderedWorkerPool, not on the main thread');
  const start = workerData as WorkerSetup<D>;
  let chain: Promise<void> = Promise.resolve(setup(start)).then((handler) => {
    port.on('message', (message: { id: number; task: T }) => {
      chain = chain.then(async () => {
        let reply: { id: number; result: R } | { id: number; error: TaskErrorData };
        let transfer: TransferListItem[] | undefined;
        try {
          const out = await handler(message.task);
          reply = { id: message.id, result: out.result };
          transfer = out.transfer;
        } catch (err) {
          reply = { id: message.id, error: errorData(err) };
        }
        port.postMessage(reply, transfer);
      });
    });
    port.postMessage({ ready: true });
  });
}
