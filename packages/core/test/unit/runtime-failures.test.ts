import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError } from '../../src/errors.js';
import { Harness, until, waitForState } from './fixtures/harness.js';
import { InMemoryDatabase, inMemorySink, retriableError, testPipeline } from './fixtures/in-memory.js';

let h: Harness;
afterEach(async () => {
  await h.dispose();
});

async function startCdc(db: InMemoryDatabase, sinks: ReturnType<typeof inMemorySink>[], name = 'f') {
  const p = h.registry.add(testPipeline(db, { name, type: 'cdc', sinks: sinks.map((sink) => ({ sink })) }));
  const engine = h.engine();
  await engine.start();
  await engine.apply(name, p.definition, p.hash, p.type);
  await waitForState(engine, name, 'LIVE_CDC');
  await until(() => db.calls.some((c) => c.startsWith('stream:')), 'stream started');
  return engine;
}

describe('failures', () => {
  it('retries a retriable sink error with the same batch, then goes on', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    sink.failures.push(retriableError(), retriableError());
    const engine = await startCdc(db, [sink]);
    const t1 = db.commit(
      [1, 2, 3].map((id) => ({ table: 'public.orders', op: 'insert' as const, row: { id: String(id) } })),
    );
    await until(() => db.acks.includes(t1), 'acknowledged after the retries');
    expect(sink.attempts).toHaveLength(3);
    expect(sink.attempts[0]).toBe(sink.attempts[1]);
    expect(sink.attempts[1]).toBe(sink.attempts[2]);
    expect(sink.events.map((e) => e.key.id)).toEqual(['1', '2', '3']);
    const status = await engine.status('f');
    expect(status.state).toBe('LIVE_CDC');
    expect(status.sinks[0]).toMatchObject({ writeErrors: 2, rowsWritten: 3 });
    expect(h.log.lines.filter((l) => l.startsWith('WRN sink write failed, retrying'))).toHaveLength(2);
  });

  it('makes the pipeline ERRORED when retries run out, naming the sink and the cause', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    for (let i = 0; i < 10; i++) sink.failures.push(retriableError('broker down at kafka://u:hunter2@k:9092'));
    const engine = await startCdc(db, [sink]);
    db.insert('public.orders', 1);
    const status = await waitForState(engine, 'f', 'ERRORED');
    expect(sink.attempts).toHaveLength(5);
    expect(status.error).toContain('sink 0:mem0');
    expect(status.error).toContain('still failing after 5 attempts');
    expect(status.error).not.toContain('hunter2');
    expect(db.acks).toEqual([]);
  });

  it('stops when every sink failed for good: ERRORED, everything closed, nothing acknowledged past the durable checkpoints', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const good = inMemorySink();
    const bad = inMemorySink();
    const engine = await startCdc(db, [good, bad]);
    const t1 = db.insert('public.orders', 1);
    await until(() => db.acks.includes(t1), 'ack t1');

    // One failed sink alone leaves the pipeline DEGRADED (runtime-isolation.test.ts); both: ERRORED.
    bad.failures.push(new NanosyncError('NS_K6004', 'the broker refused the send'));
    good.failures.push(new NanosyncError('NS_K6004', 'the broker refused the send'));
    const t2 = db.insert('public.orders', 2);
    const status = await waitForState(engine, 'f', 'ERRORED');
    expect(status.error).toContain('[NS_K6004] the broker refused the send');
    expect(status.error).toMatch(/sink [01]:mem[01]/);
    expect(bad.attempts).toHaveLength(2);
    // Neither sink has t2: the source is not told.
    expect(db.acks).toEqual([t1]);
    expect((await h.store.getCheckpoints('f'))['1:mem1']).toBe(t1);
    expect((await h.store.getCheckpoints('f'))['0:mem0']).toBe(t1);
    expect((await h.store.getPipeline('f'))?.state).toBe('ERRORED');
    // 2: the instance checked at apply, and the running one.
    await until(() => db.calls.includes('close') && good.closed === 2 && bad.closed === 2, 'closed');
    void t2;
  });

  it('makes the pipeline RETRYING naming the store when checkpoints cannot be written, and acknowledges nothing more', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    const engine = await startCdc(db, [sink]);
    const t1 = db.insert('public.orders', 1);
    await until(() => db.acks.includes(t1), 'ack t1');

    // The store goes away under the running pipeline (like a disk that turned read-only).
    await h.store.close();
    db.insert('public.orders', 2);
    const status = await waitForState(engine, 'f', 'RETRYING');
    expect(status.error).toContain(h.file);
    expect(status.error).toContain('NS_S3001');
    // Waited out without a limit: no number of attempts makes it give up.
    expect(status.retry).toMatchObject({ maxAttempts: 0 });
    expect(status.retry?.lastError).toContain(h.file);
    await until(() => sink.events.length === 2, 'written');
    await delay(50);
    expect(db.acks).toEqual([t1]);
    expect(db.ackViolations).toEqual([]);
    expect(h.log.lines.some((l) => l.startsWith('WRN the state store cannot be written') && l.includes(h.file))).toBe(
      true,
    );
    expect(h.log.lines.some((l) => l.startsWith('ERR'))).toBe(false);
  });

  it('resumes by itself once the state store accepts writes again', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    const broken = new NanosyncError(
      ErrorCode.StateUnavailable,
      `state store ${h.file}: cannot save a checkpoint (disk I/O error)`,
    );
    const real = h.store;
    let failing = false;
    // Fault injection over the real store: checkpoint and state writes fail while `failing`.
    const fakeFailingStore = Object.create(real) as typeof real;
    fakeFailingStore.saveCheckpoint = async (...args) => {
      if (failing) throw broken;
      return real.saveCheckpoint(...args);
    };
    fakeFailingStore.updatePipeline = async (...args) => {
      if (failing) throw broken;
      return real.updatePipeline(...args);
    };
    h.store = fakeFailingStore;
    const engine = await startCdc(db, [sink]);
    failing = true;
    db.insert('public.orders', 1);
    await waitForState(engine, 'f', 'RETRYING');
    expect(db.acks).toEqual([]);
    failing = false;
    const t2 = db.insert('public.orders', 2);
    await until(() => db.acks.includes(t2), 'acknowledged after the store came back');
    expect((await engine.status('f')).state).toBe('LIVE_CDC');
    // Replayed from the checkpoint: the first insert reaches the sink again, nothing is missing.
    expect(sink.events.map((e) => e.key.id)).toEqual(['1', '1', '2']);
  });

  it('restarts from the checkpoint after a retriable source error', async () => {
    h = await Harness.create();
    const db = new InMemoryDatabase();
    db.createTable('public', 'orders');
    const sink = inMemorySink();
    db.streamFailures.push(new NanosyncError('NS_P4001', 'connection reset', { retriable: true }));
    const engine = await startCdc(db, [sink]);
    const t1 = db.insert('public.orders', 1);
    await until(() => db.acks.includes(t1), 'ack');
    expect(db.calls.filter((c) => c.startsWith('open:'))).toHaveLength(2);
    expect((await engine.status('f')).state).toBe('LIVE_CDC');
  });
});
