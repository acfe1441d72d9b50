import { mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChangeEvent, TableSchema } from '@nanosync/core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import fileSink, {
  type FileSinkRecord,
  latestByKey,
  readJsonLines,
  tableFileName,
  toJsonLine,
} from '../../src/index.js';

const orders: TableSchema = {
  schema: 'public',
  name: 'orders',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int64' }, nullable: false },
    { name: 'amount', type: { kind: 'decimal', precision: 40, scale: 2 }, nullable: true },
    { name: 'ratio', type: { kind: 'float64' }, nullable: true },
    { name: 'blob', type: { kind: 'bytes' }, nullable: true },
    { name: 'tags', type: { kind: 'array', items: { kind: 'float64' } }, nullable: true },
  ],
};
const items: TableSchema = {
  schema: 'public',
  name: 'order_items',
  keyColumns: ['id'],
  columns: [{ name: 'id', type: { kind: 'int32' }, nullable: false }],
};

function insert(
  table: TableSchema,
  id: number | string,
  extra: Record<string, unknown> = {},
  position = `p${id}`,
): ChangeEvent {
  return {
    op: 'insert',
    table,
    key: { id } as never,
    after: { id, ...extra } as never,
    position,
    commitTime: '2024-01-02T03:04:05.123456Z',
  };
}

function createSink(properties: Record<string, unknown>) {
  const parsed = fileSink.configSchema.safeParse(properties);
  if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
  const controller = new AbortController();
  const logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => logger };
  return fileSink.create(parsed.data, { pipeline: 'test', logger, signal: controller.signal });
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-sink-file-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

describe('config', () => {
  it('needs exactly one of path and file', () => {
    const none = fileSink.configSchema.safeParse({});
    expect(none.success).toBe(false);
    if (!none.success) expect(none.error.issues[0]?.path).toEqual(['path']);
    const both = fileSink.configSchema.safeParse({ path: 'a', file: 'b' });
    expect(both.success).toBe(false);
    if (!both.success) expect(both.error.issues[0]?.path).toEqual(['file']);
    expect(fileSink.configSchema.safeParse({ path: 'out' }).success).toBe(true);
  });

  it('rejects unknown properties by name', () => {
    const result = fileSink.configSchema.safeParse({ path: 'out', topic: 'x' });
    expect(result.success).toBe(false);
    if (!result.success) expect(JSON.stringify(result.error.issues)).toContain('topic');
  });

  it('is a sink definition of type file', () => {
    expect(fileSink).toMatchObject({ apiVersion: 1, kind: 'sink', type: 'file' });
  });
});

describe('output format', () => {
  it('writes a truncate as one line with its flags, no key values and no images', async () => {
    const sink = await createSink({ path: dir });
    await sink.open([orders, items]);
    await sink.write([
      insert(orders, '1'),
      {
        op: 'truncate',
        table: orders,
        key: {},
        truncate: { cascade: true, restartIdentity: true },
        position: 'p2',
        commitTime: '2024-01-02T03:04:06.000000Z',
      },
      { op: 'truncate', table: items, key: {}, position: 'p2' },
      insert(orders, '2', {}, 'p3'),
    ]);
    await sink.close();
    const lines = await readJsonLines(join(dir, 'public.orders.jsonl'));
    expect(lines).toHaveLength(3);
    expect(lines[1]).toEqual({
      op: 'truncate',
      table: 'public.orders',
      key: {},
      position: 'p2',
      commitTime: '2024-01-02T03:04:06.000000Z',
      truncate: { cascade: true, restartIdentity: true },
    });
    const [itemsTruncate] = await readJsonLines(join(dir, 'public.order_items.jsonl'));
    expect(itemsTruncate).toEqual({
      op: 'truncate',
      table: 'public.order_items',
      key: {},
      position: 'p2',
      truncate: { cascade: false, restartIdentity: false },
    });
    // A reader folding by key drops every row the truncate removed, and keeps later ones.
    expect([...latestByKey(lines).values()].map((r) => r.key)).toEqual([{ id: '2' }]);
  });

  it('writes one line per event with lossless values', async () => {
    const sink = await createSink({ path: dir });
    await sink.open([orders]);
    const event: ChangeEvent = {
      op: 'update',
      table: orders,
      key: { id: '9007199254740993' },
      before: { id: '9007199254740993', amount: '1.00' },
      after: {
        id: '9007199254740993',
        amount: '1234567890123456789012345678901234567.89',
        ratio: Number.NaN,
        blob: new Uint8Array([0, 1, 2, 255]),
        tags: [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1.5, null],
      },
      unchanged: ['big_text'],
      position: '0000000001A2B3C4:00000002',
      commitTime: '2024-01-02T03:04:05.123456Z',
    };
    await sink.write([event]);
    await sink.close();

    const text = await readFile(join(dir, 'public.orders.jsonl'), 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')).toHaveLength(2);
    const [line] = await readJsonLines(join(dir, 'public.orders.jsonl'));
    expect(line).toEqual({
      op: 'update',
      table: 'public.orders',
      key: { id: '9007199254740993' },
      before: { id: '9007199254740993', amount: '1.00' },
      after: {
        id: '9007199254740993',
        amount: '1234567890123456789012345678901234567.89',
        ratio: 'NaN',
        blob: 'AAEC/w==',
        tags: ['Infinity', '-Infinity', 1.5, null],
      },
      unchanged: ['big_text'],
      position: '0000000001A2B3C4:00000002',
      commitTime: '2024-01-02T03:04:05.123456Z',
    } satisfies FileSinkRecord);
  });

  it('writes the fields of a line in one fixed order', () => {
    const line = toJsonLine({
      op: 'update',
      table: orders,
      key: { id: '1' },
      before: { id: '1', amount: '2.00' },
      after: { amount: '3.00', id: '1' },
      unchanged: ['note'],
      position: 'p1',
      commitTime: '2024-01-02T03:04:05.000000Z',
      chunk: 'c1',
    });
    expect(line).toBe(
      '{"op":"update","table":"public.orders","key":{"id":"1"},"before":{"id":"1","amount":"2.00"},' +
        '"after":{"amount":"3.00","id":"1"},"unchanged":["note"],"position":"p1",' +
        '"commitTime":"2024-01-02T03:04:05.000000Z","chunk":"c1"}\n',
    );
    expect(toJsonLine({ op: 'truncate', table: orders, key: {}, position: 'p2' })).toBe(
      '{"op":"truncate","table":"public.orders","key":{},"position":"p2","truncate":{"cascade":false,"restartIdentity":false}}\n',
    );
    expect(toJsonLine({ op: 'read', table: orders, key: { id: '5' }, after: { id: '5' }, position: 'p3' })).toBe(
      '{"op":"read","table":"public.orders","key":{"id":"5"},"after":{"id":"5"},"position":"p3"}\n',
    );
  });

  it('leaves out fields the event does not carry', async () => {
    const sink = await createSink({ path: dir });
    await sink.open([items]);
    await sink.write([{ op: 'delete', table: items, key: { id: 3 }, position: 'p' }]);
    await sink.close();
    const [line] = await readJsonLines(join(dir, 'public.order_items.jsonl'));
    expect(line).toEqual({ op: 'delete', table: 'public.order_items', key: { id: 3 }, position: 'p' });
  });

  it('writes one file per table in path mode and one file in file mode', async () => {
    const perTable = await createSink({ path: join(dir, 'tables') });
    await perTable.open([orders, items]);
    await perTable.write([insert(orders, '1'), insert(items, 1), insert(orders, '2')]);
    await perTable.close();
    expect((await readdir(join(dir, 'tables'))).sort()).toEqual(['public.order_items.jsonl', 'public.orders.jsonl']);
    expect((await readJsonLines(join(dir, 'tables', 'public.orders.jsonl'))).map((r) => r.key.id)).toEqual(['1', '2']);

    const single = await createSink({ file: join(dir, 'nested', 'all.jsonl') });
    await single.open([orders, items]);
    await single.write([insert(orders, '1'), insert(items, 1), insert(orders, '2')]);
    await single.close();
    const all = await readJsonLines(join(dir, 'nested', 'all.jsonl'));
    expect(all.map((r) => `${r.table}:${r.key.id}`)).toEqual([
      'public.orders:1',
      'public.order_items:1',
      'public.orders:2',
    ]);
  });

  it('keeps table names with dots, slashes and unicode apart and inside the folder', () => {
    expect(tableFileName({ schema: 'public', name: 'orders' })).toBe('public.orders.jsonl');
    expect(tableFileName({ schema: 'a.b', name: 'c' })).not.toBe(tableFileName({ schema: 'a', name: 'b.c' }));
    expect(tableFileName({ schema: '..', name: '../../etc/passwd' })).not.toContain('/');
    expect(tableFileName({ schema: 'Ünï', name: 'Çödé tàble' })).toBe('Ünï.Çödé tàble.jsonl');
  });
});

describe('durability', () => {
  it('appends to what an earlier run wrote', async () => {
    const first = await createSink({ path: dir });
    await first.open([orders]);
    await first.write([insert(orders, '1')]);
    await first.close();
    const second = await createSink({ path: dir });
    await second.open([orders]);
    await second.write([insert(orders, '2')]);
    await second.close();
    expect((await readJsonLines(dir)).map((r) => r.key.id)).toEqual(['1', '2']);
  });

  it('cuts a half-written last line left by a crash before appending', async () => {
    const file = join(dir, 'public.orders.jsonl');
    await writeFile(file, '{"op":"insert","table":"public.orders","key":{"id":"1"},"position":"p1"}\n{"op":"ins');
    const sink = await createSink({ path: dir });
    await sink.open([orders]);
    await sink.write([insert(orders, '2')]);
    await sink.close();
    const records = await readJsonLines(file, { strict: true });
    expect(records.map((r) => r.key.id)).toEqual(['1', '2']);
  });

  it('does not resolve write() before the data is fsynced', async () => {
    const probe = await open(join(dir, 'probe'), 'w');
    const prototype = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const original = prototype.datasync;
    const synced: string[] = [];
    vi.spyOn(prototype, 'datasync').mockImplementation(async function (this: unknown) {
      await gate;
      await original.call(this);
      synced.push('datasync');
    });

    const sink = await createSink({ path: dir });
    await sink.open([orders]);
    let resolved = false;
    const pending = sink.write([insert(orders, '1')]).then(() => {
      resolved = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(resolved).toBe(false);
    release();
    await pending;
    expect(synced).toEqual(['datasync']);
    await sink.close();
  });

  it('writes a batch larger than the in-memory flush threshold completely and in order', async () => {
    const sink = await createSink({ path: dir });
    await sink.open([orders]);
    const pad = 'x'.repeat(2000);
    const events = Array.from({ length: 1500 }, (_, i) => insert(orders, String(i), { amount: pad }));
    await sink.write(events);
    await sink.close();
    const ids = (await readJsonLines(dir)).map((r) => r.key.id);
    expect(ids).toEqual(events.map((e) => e.key.id));
  });

  it('writes interleaved tables, unicode and lines larger than the flush threshold byte for byte, in order per file', async () => {
    const sink = await createSink({ path: dir });
    await sink.open([orders, items]);
    const events: ChangeEvent[] = [];
    for (let i = 0; i < 6000; i++) {
      // Runs of one table of varying length, text of 1- to 4-byte UTF-8 characters and lone surrogates.
      const table = Math.floor(i / (1 + (i % 7))) % 2 === 0 ? orders : items;
      const text = `${'é中😀'.repeat(i % 50)}\ud800"${'x'.repeat((i * 37) % 900)}`;
      events.push(insert(table, table === orders ? String(i) : i, { amount: text }));
      // A few lines larger than everything kept in memory before a flush (1 MiB, 3 bytes per unit counted).
      if (i % 2500 === 1) events.push(insert(orders, `big${i}`, { amount: '€'.repeat(500_000) }));
      // And lines that fit the arena only once it is flushed.
      if (i % 700 === 3) events.push(insert(items, 1_000_000 + i, { amount: '€'.repeat(150_000) }));
    }
    await sink.write(events.slice(0, 4000));
    await sink.write(events.slice(4000));
    await sink.close();
    for (const table of [orders, items]) {
      const expected = events
        .filter((e) => e.table === table)
        .map((e) => toJsonLine(e))
        .join('');
      expect((await readFile(join(dir, tableFileName(table)), 'utf8')) === expected).toBe(true);
    }
  });

  it('reports an unwritable folder with the file sink error code and the path', async () => {
    const blocker = join(dir, 'not-a-folder');
    await writeFile(blocker, 'x');
    const sink = await createSink({ path: join(blocker, 'out') });
    await expect(sink.open([orders])).rejects.toThrow(
      expect.objectContaining({ code: 'NS_F8001', message: expect.stringMatching(/not-a-folder/) }),
    );
  });
});

describe('readers', () => {
  it('skips an unterminated tail unless strict, and folds records by key', async () => {
    const file = join(dir, 'x.jsonl');
    await writeFile(
      file,
      [
        '{"op":"read","table":"t.a","key":{"id":1},"after":{"id":1,"v":1},"position":"0"}',
        '{"op":"update","table":"t.a","key":{"id":1},"after":{"id":1,"v":2},"position":"1"}',
        '{"op":"insert","table":"t.a","key":{"id":2},"after":{"id":2,"v":1},"position":"2"}',
        '{"op":"delete","table":"t.a","key":{"id":2},"position":"3"}',
        '{"op":"insert","table":"t.a","key":{"id":3},"after"',
      ].join('\n'),
    );
    const records = await readJsonLines(file);
    expect(records).toHaveLength(4);
    await expect(readJsonLines(file, { strict: true })).rejects.toThrow(/unterminated/);
    const latest = latestByKey(records);
    expect([...latest.values()].map((r) => r.after)).toEqual([{ id: 1, v: 2 }]);
  });

  it('latestByKey moves a row whose update changed its key', () => {
    const latest = latestByKey([
      { op: 'insert', table: 't.a', key: { id: 1 }, after: { id: 1, v: 1 }, position: '1' },
      { op: 'update', table: 't.a', key: { id: 5 }, before: { id: 1, v: 1 }, after: { id: 5, v: 1 }, position: '2' },
      { op: 'update', table: 't.a', key: { id: 5 }, before: { id: 5 }, after: { id: 5, v: 2 }, position: '3' },
    ] as FileSinkRecord[]);
    expect([...latest.values()].map((r) => r.after)).toEqual([{ id: 5, v: 2 }]);
  });
});
