import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError } from '../../src/errors.js';
import { OrderedWorkerPool, type PoolTask } from '../../src/runtime/worker-pool.js';

const WORKER = new URL('./fixtures/pool/worker.mjs', import.meta.url);

interface Task {
  n: number;
  delayMs?: number;
  bytes?: ArrayBuffer;
  fail?: boolean;
  crash?: number;
  throwUncaught?: number;
}
interface Result {
  n: number;
  worker: number;
  out: ArrayBuffer;
}

const pools: OrderedWorkerPool<Task, Result>[] = [];
async function startPool(size: number, maxBytesPerWorker = 1 << 20, data: Record<string, unknown> = {}) {
  const pool = await OrderedWorkerPool.start<Task, Result, Record<string, unknown>>({
    name: 'test',
    module: WORKER,
    size,
    data,
    maxBytesPerWorker,
    execArgv: [],
  });
  pools.push(pool);
  return pool;
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

async function collect<R>(results: AsyncIterable<R>): Promise<R[]> {
  const out: R[] = [];
  for await (const r of results) out.push(r);
  return out;
}

function* numbered(count: number, extra: (n: number) => Partial<Task> = () => ({})): Generator<PoolTask<Task>> {
  for (let n = 0; n < count; n++) yield { task: { n, ...extra(n) }, bytes: 1 };
}

describe('OrderedWorkerPool', () => {
  it('hands results back in the order of the tasks when workers finish out of order', async () => {
    const pool = await startPool(3);
    // Every third task is slow, so the other workers run ahead of it.
    const results = await collect(pool.map(numbered(120, (n) => ({ delayMs: n % 3 === 0 ? 4 : 0 }))));
    expect(results.map((r) => r.n)).toEqual(Array.from({ length: 120 }, (_, n) => n));
    expect(new Set(results.map((r) => r.worker))).toEqual(new Set([0, 1, 2]));
    expect(results.every((r) => r.worker === r.n % 3)).toBe(true);
  });

  it('moves transferred buffers to the worker and back instead of copying them', async () => {
    const pool = await startPool(2);
    const input = new Uint8Array([1, 2, 3]).buffer;
    const [result] = await collect(pool.map([{ task: { n: 9, bytes: input }, transfer: [input], bytes: 3 }]));
    expect(input.byteLength).toBe(0);
    expect([...new Uint8Array(result!.out)]).toEqual([1, 2, 3, 9]);
  });

  it('sends tasks of one shard to one worker', async () => {
    const pool = await startPool(3);
    const tasks = Array.from({ length: 30 }, (_, n) => ({ task: { n }, bytes: 1, shard: n % 2 === 0 ? 4 : 2 }));
    const results = await collect(pool.map(tasks));
    expect(results.map((r) => r.n)).toEqual(tasks.map((t) => t.task.n));
    expect(results.filter((r) => r.n % 2 === 0).every((r) => r.worker === 1)).toBe(true);
    expect(results.filter((r) => r.n % 2 === 1).every((r) => r.worker === 2)).toBe(true);
  });

  it('holds at most maxBytesPerWorker of tasks per worker (one task when a task alone is larger)', async () => {
    for (const [bound, taskBytes, perWorker] of [
      [100, 60, 1],
      [130, 60, 2],
      [10, 60, 1],
    ] as const) {
      const pool = await startPool(2, bound);
      let taken = 0;
      let yielded = 0;
      let mostHeld = 0;
      function* tasks(): Generator<PoolTask<Task>> {
        for (let n = 0; n < 40; n++) {
          taken++;
          mostHeld = Math.max(mostHeld, taken - yielded);
          yield { task: { n, delayMs: 1 }, bytes: taskBytes };
        }
      }
      for await (const _ of pool.map(tasks())) yielded++;
      expect(yielded).toBe(40);
      // Sent and not yet yielded, plus the one just taken that waits for room.
      expect(mostHeld).toBeLessThanOrEqual(2 * perWorker + 1);
      expect(mostHeld).toBeGreaterThan(1);
    }
  });

  it("rejects a task that throws at its place, with the worker's NanosyncError, and goes on working", async () => {
    const pool = await startPool(2);
    const seen: number[] = [];
    const error = await (async () => {
      for await (const r of pool.map(numbered(10, (n) => ({ fail: n === 5 })))) seen.push(r.n);
    })().catch((err: unknown) => err);
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(NanosyncError.is(error, ErrorCode.Internal)).toBe(true);
    expect(error).toMatchObject({ message: 'task 5 refused', retriable: true, details: { n: 5 } });
    expect((await collect(pool.map(numbered(4)))).map((r) => r.n)).toEqual([0, 1, 2, 3]);
  });

  it('fails the pool when a worker exits: a clear error at the lost task, nothing after it, no later use', async () => {
    const pool = await startPool(3);
    const seen: number[] = [];
    // Worker 2 (index 1) gets tasks 1, 4, 7, …; task 4 makes it exit.
    const error = await (async () => {
      for await (const r of pool.map(numbered(30, (n) => ({ crash: n === 4 ? 1 : undefined, delayMs: 2 }))))
        seen.push(r.n);
    })().catch((err: unknown) => err);
    expect(NanosyncError.is(error, ErrorCode.WorkerFailed)).toBe(true);
    expect((error as Error).message).toMatch(/worker 2 of 3 in the "test" pool exited with code 7/);
    expect(seen).toEqual(Array.from({ length: seen.length }, (_, n) => n));
    expect(seen.length).toBeLessThanOrEqual(4);
    await expect(collect(pool.map(numbered(1)))).rejects.toSatisfy((err) =>
      NanosyncError.is(err, ErrorCode.WorkerFailed),
    );
  });

  it('fails the pool on an uncaught exception in a worker, naming it', async () => {
    const pool = await startPool(2);
    const error = await collect(
      pool.map(numbered(20, (n) => ({ throwUncaught: n === 2 ? 0 : undefined, delayMs: 5 }))),
    ).catch((err: unknown) => err);
    expect(NanosyncError.is(error, ErrorCode.WorkerFailed)).toBe(true);
    expect((error as Error).message).toMatch(/worker 1 of 2 in the "test" pool threw Error: boom outside a task/);
  });

  it('refuses to start when a worker setup throws, and says why', async () => {
    const error = await startPool(2, 100, { failSetup: true }).catch((err: unknown) => err);
    expect(NanosyncError.is(error, ErrorCode.WorkerFailed)).toBe(true);
    expect((error as Error).message).toMatch(/setup of worker \d refused/);
  });

  it('cannot be used after close()', async () => {
    const pool = await startPool(1);
    await pool.close();
    await expect(collect(pool.map(numbered(1)))).rejects.toThrow(/"test" was closed/);
  });
});
