import { existsSync, mkdirSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { blamingError, eventError, eventIndexOf } from '../../src/contract/connector.js';
import { causeChain, NanosyncError } from '../../src/errors.js';
import { createLogger, openSqliteStateStore } from '../../src/host.js';
import type { ChangeEvent, Sink, TableSchema } from '../../src/index.js';
import { DEFAULT_RETRY_POLICY } from '../../src/runtime/backoff.js';
import { deadLetterOf, defaultDeadLetterFile } from '../../src/runtime/dead-letters.js';
import type { EventMapper } from '../../src/runtime/mappings.js';
import { SinkLane } from '../../src/runtime/sink-lane.js';
import { sinkFileName } from '../../src/runtime/sink-file-name.js';
import { SpillLog, spillDir } from '../../src/runtime/spill-log.js';
import { SinkStats } from '../../src/runtime/stats.js';

let dir: string;
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const table: TableSchema = { schema: 'public', name: 't', keyColumns: ['id'], columns: [] };
const batch = (id: number): ChangeEvent[] => [
  { op: 'insert', table, key: { id }, after: { id, note: 'x'.repeat(100) }, position: String(id) },
];
const item = (id: number) => ({
  events: batch(id),
  safePosition: String(id),
  bytes: 200,
  commitMs: undefined,
  barrier: undefined,
});

describe('spill log', () => {
  it('a folder it cannot create fails with NS_R2008 naming the sink and the folder', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ns-spill-'));
    writeFileSync(join(dir, 'file'), 'not a folder');
    const folder = join(dir, 'file', 'spill', '1_out');
    let thrown: unknown;
    try {
      new SpillLog(folder, '1:out');
    } catch (err) {
      thrown = err;
    }
    expect(NanosyncError.is(thrown, 'NS_R2008')).toBe(true);
    expect((thrown as NanosyncError).message).toContain('sink 1:out');
    expect((thrown as NanosyncError).message).toContain(folder);
    expect((thrown as NanosyncError).retriable).toBe(true);
    expect((thrown as NanosyncError).details).toMatchObject({ sink: '1:out', folder });
  });

  it('a segment it cannot open for writing fails with NS_R2008, not a bare file-system error', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ns-spill-'));
    const folder = join(dir, 'spill');
    const log = new SpillLog(folder, '1:out', 1);
    log.append(item(1));
    await rm(folder, { recursive: true, force: true });
    writeFileSync(folder, 'in the way');
    expect(() => log.append(item(2))).toThrow(
      expect.objectContaining({ code: 'NS_R2008', details: { sink: '1:out', folder } }),
    );
  });

  it('a record cut short on disk is damage (NS_R2008, the lane restarts), not a crash', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ns-spill-'));
    const log = new SpillLog(join(dir, 'spill'), '1:out');
    log.append(item(1));
    const [segment] = readdirSync(join(dir, 'spill'));
    const file = join(dir, 'spill', segment!);
    truncateSync(file, statSync(file).size - 5);
    expect(() => log.shift()).toThrow(
      expect.objectContaining({
        code: 'NS_R2008',
        message: expect.stringMatching(/sink 1:out: the spill log .* is damaged .*cut short/),
      }),
    );
  });

  it('reads back what it was given, in order', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ns-spill-'));
    const log = new SpillLog(join(dir, 'spill'), '1:out', 256);
    for (let i = 1; i <= 5; i++) log.append(item(i));
    const back: unknown[] = [];
    for (let next = log.shift(); next !== undefined; next = log.shift()) back.push(next.events[0]!.key.id);
    expect(back).toEqual([1, 2, 3, 4, 5]);
    expect(log.bytes).toBe(0);
    log.close();
    expect(existsSync(join(dir, 'spill'))).toBe(false);
  });
});

describe('sink lane', () => {
  async function lane(options: { mapper?: EventMapper; spillDir: string; maxSpillBytes: number }) {
    const store = await openSqliteStateStore(join(dir, 'state.db'));
    const sink: Sink = { open: async () => {}, write: () => new Promise(() => {}), close: async () => {} };
    const l = new SinkLane({
      pipeline: 'p',
      name: '1:out',
      sink,
      store,
      mapper: options.mapper,
      maxEvents: 1,
      maxBytes: 1 << 30,
      maxWriteEvents: 1,
      retry: DEFAULT_RETRY_POLICY,
      stats: new SinkStats('1:out'),
      logger: createLogger({ write: () => {} }),
      checkpoint: undefined,
      onCheckpoint: () => {},
      onFailure: () => {},
      spill: { dir: options.spillDir, maxBytes: options.maxSpillBytes },
    });
    return { lane: l, store };
  }

  it('removes a spill folder an earlier run left behind when it starts (a spill log is never replayed)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ns-lane-'));
    const folder = join(dir, 'spill', 'p', '1_out');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, '00000000.spill'), 'left by a crashed run');
    const { lane: l, store } = await lane({ spillDir: folder, maxSpillBytes: 1 << 20 });
    l.start();
    expect(existsSync(folder)).toBe(false);
    l.stop();
    await store.close();
  });

  it('a paused lane does not map the events it no longer takes', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ns-lane-'));
    let mapped = 0;
    const mapper: EventMapper = {
      mapEvents: (events) => {
        mapped += events.length;
        return events;
      },
      mapTable: (t) => t,
    };
    const { lane: l, store } = await lane({ mapper, spillDir: join(dir, 'spill'), maxSpillBytes: 1 });
    l.start();
    l.push(batch(1), '1', 200, undefined); // in memory (the queue holds 1 event), being written
    l.push(batch(2), '2', 200, undefined); // spilled: the log is now over its 1-byte budget
    l.push(batch(3), '3', 200, undefined); // the lane pauses
    expect(l.state).toBe('paused');
    const before = mapped;
    for (let id = 4; id <= 10; id++) l.push(batch(id), String(id), 200, undefined);
    expect(mapped).toBe(before);
    l.stop();
    await store.close();
  });
});

describe('shared helpers', () => {
  it('causeChain walks an error and its causes, outermost first, and ends on a loop', () => {
    const inner = new Error('inner');
    const middle = new Error('middle', { cause: inner });
    const outer = new Error('outer', { cause: middle });
    expect([...causeChain(outer)]).toEqual([outer, middle, inner]);
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect([...causeChain(a)]).toHaveLength(8);
  });

  it('the event index and the dead letter name the same (innermost blaming) error', () => {
    const own = eventError(new NanosyncError('NS_K6003', 'too large'), 2);
    const wrapped = new NanosyncError('NS_R2005', 'sink 1:out: writing 3 events failed', { cause: own });
    expect(blamingError(wrapped)).toBe(own);
    expect(eventIndexOf(wrapped)).toBe(2);
    const letter = deadLetterOf('p', '1:out', batch(1)[0]!, wrapped);
    expect(letter.error).toEqual({ code: 'NS_K6003', message: 'too large' });
  });

  it('sink files and folders under the state folder use one name per sink', () => {
    expect(sinkFileName('1:kafka/out')).toBe('1_kafka_out');
    expect(spillDir('/state', 'p', '1:kafka/out')).toBe(join('/state', 'spill', 'p', '1_kafka_out'));
    expect(defaultDeadLetterFile('/state', 'p', '1:kafka/out')).toBe(
      join('/state', 'dead-letters', 'p', '1_kafka_out.jsonl'),
    );
  });
});
