import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Row, TableSchema } from '../../src/model.js';
import { keyString, WatermarkMerge } from '../../src/runtime/watermark-merge.js';

const table: TableSchema = {
  schema: 'public',
  name: 't',
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
    { name: 'doc', type: { kind: 'string' }, nullable: true },
  ],
  keyColumns: ['id'],
};
const other: TableSchema = { ...table, name: 'other' };

const row = (id: number, note: string, doc = 'big'): Row => ({ id, note, doc });
const change = (op: ChangeEvent['op'], id: number, note?: string, extra: Partial<ChangeEvent> = {}): ChangeEvent => ({
  op,
  table,
  key: { id },
  ...(note !== undefined ? { after: { id, note } } : {}),
  position: `p${id}`,
  ...extra,
});

/** low watermark seen, rows read, then the high watermark: what the merge emits there. */
function chunk(merge: WatermarkMerge, rows: Row[], during: ChangeEvent[][] = [], of = table) {
  const c = merge.open(of);
  merge.onWatermark({ id: c.lowId, position: 'L' });
  for (const batch of during) merge.observe(batch);
  merge.deliver(c, rows);
  return { c, emit: () => merge.onWatermark({ id: c.highId, position: 'H' }) };
}

describe('WatermarkMerge', () => {
  it('emits the rows of keys the stream did not change, at the high watermark, as reads', async () => {
    const merge = new WatermarkMerge();
    const { c, emit } = chunk(merge, [row(1, 'a'), row(2, 'b')]);
    const out = emit()!;
    expect(out.map((e) => [e.op, e.key.id, e.position])).toEqual([
      ['read', 1, 'H'],
      ['read', 2, 'H'],
    ]);
    expect(await c.emitted).toBe(2);
    expect(merge.openChunks).toBe(0);
  });

  it('drops rows whose key was inserted, updated or deleted in the stream after the chunk opened (deletes win)', async () => {
    const merge = new WatermarkMerge();
    const { c, emit } = chunk(
      merge,
      [row(1, 'a'), row(2, 'b'), row(3, 'c'), row(4, 'd')],
      [
        [change('update', 1, 'a2'), change('delete', 2)],
        [change('insert', 3, 'c')],
        [{ ...change('update', 9, 'x'), table: other }],
      ],
    );
    expect(emit()!.map((e) => e.key.id)).toEqual([4]);
    expect(await c.emitted).toBe(1);
  });

  it('a change seen before the chunk opened does not drop its row (the read is newer)', () => {
    const merge = new WatermarkMerge();
    const earlier = merge.open(table);
    merge.observe([change('update', 1, 'a2')]);
    const { emit } = chunk(merge, [row(1, 'a2')]);
    expect(emit()!.map((e) => e.key.id)).toEqual([1]);
    merge.discard(earlier, new Error('gone'));
  });

  it('a key change drops the rows of both the old and the new key', () => {
    const merge = new WatermarkMerge();
    const { emit } = chunk(
      merge,
      [row(1, 'a'), row(5, 'e'), row(6, 'f')],
      [[change('update', 5, 'e', { before: { id: 1 } })]],
    );
    expect(emit()!.map((e) => e.key.id)).toEqual([6]);
  });

  it('a TRUNCATE of the table drops the whole chunk', () => {
    const merge = new WatermarkMerge();
    const { emit } = chunk(merge, [row(1, 'a')], [[{ op: 'truncate', table, key: {}, position: 'p' }]]);
    expect(emit()).toEqual([]);
  });

  it('several chunks in flight: each drops only what changed while it was open', () => {
    const merge = new WatermarkMerge();
    const a = merge.open(table);
    merge.onWatermark({ id: a.lowId, position: 'L1' });
    merge.observe([change('update', 1, 'x')]);
    const b = merge.open(table);
    merge.onWatermark({ id: b.lowId, position: 'L2' });
    merge.observe([change('update', 2, 'y')]);
    merge.deliver(a, [row(1, 'x'), row(2, 'b'), row(3, 'c')]);
    merge.deliver(b, [row(1, 'x'), row(2, 'y'), row(4, 'd')]);
    expect(merge.onWatermark({ id: a.highId, position: 'H1' })!.map((e) => e.key.id)).toEqual([3]);
    expect(merge.onWatermark({ id: b.highId, position: 'H2' })!.map((e) => e.key.id)).toEqual([1, 4]);
  });

  it('an evicting update that left a TOAST column unchanged is completed from the chunk row', () => {
    const merge = new WatermarkMerge();
    const { emit } = chunk(
      merge,
      [row(1, 'a', 'the big document')],
      [[change('update', 1, 'a2', { unchanged: ['doc'], commitTime: 'T' })]],
    );
    const out = emit()!;
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({
      op: 'update',
      key: { id: 1 },
      after: { id: 1, note: 'a2', doc: 'the big document' },
      position: 'H',
    });
    expect(out[0]!.unchanged).toBeUndefined();
  });

  it('no completion when a change of the key carried the column (the sink has it)', () => {
    const merge = new WatermarkMerge();
    const { emit } = chunk(
      merge,
      [row(1, 'a', 'v1')],
      [
        [{ ...change('update', 1, 'a1'), after: { id: 1, note: 'a1', doc: 'v2' } }],
        [change('update', 1, 'a2', { unchanged: ['doc'] })],
      ],
    );
    expect(emit()).toEqual([]);
  });

  it('the high watermark without the low one, and watermarks of other runs, are not taken for a chunk', async () => {
    const merge = new WatermarkMerge();
    expect(merge.onWatermark({ id: 'someone-else-1-high', position: 'X' })).toBeUndefined();
    const c = merge.open(table);
    merge.deliver(c, [row(1, 'a')]);
    expect(merge.onWatermark({ id: c.highId, position: 'H' })).toBeUndefined();
    await expect(c.emitted).rejects.toThrow(/without its low watermark/);
  });

  it('abort fails every open chunk and every later open', async () => {
    const merge = new WatermarkMerge();
    const c = merge.open(table);
    merge.abort(new Error('stream ended'));
    await expect(c.emitted).rejects.toThrow('stream ended');
    expect(() => merge.open(table)).toThrow('stream ended');
  });

  it('remembers nothing for a chunk whose rows are delivered, however many keys the stream changes before its high watermark', async () => {
    const merge = new WatermarkMerge();
    const c = merge.open(table);
    merge.onWatermark({ id: c.lowId, position: 'L' });
    merge.observe([change('update', 2, 'b0')]);
    merge.deliver(
      c,
      Array.from({ length: 100 }, (_, i) => row(i + 1, 'r')),
    );
    // A heavy writer: 50,000 changes of other keys (and a few of the chunk's) while the stream
    // has not reached the high watermark yet.
    for (let i = 0; i < 50; i++) {
      merge.observe(Array.from({ length: 1000 }, (_, j) => change('update', 1000 + i * 1000 + j, 'x')));
      expect(merge.rememberedKeys).toBe(0);
    }
    merge.observe([change('delete', 3), change('update', 4, 'd2')]);
    const out = merge.onWatermark({ id: c.highId, position: 'H' })!;
    expect(out.map((e) => e.key.id)).toEqual(
      Array.from({ length: 100 }, (_, i) => i + 1).filter((id) => ![2, 3, 4].includes(id)),
    );
    expect(await c.emitted).toBe(97);
  });

  it('keys changed while a chunk is read are pruned once no chunk being read can need them', () => {
    const merge = new WatermarkMerge();
    const a = merge.open(table);
    merge.onWatermark({ id: a.lowId, position: 'L1' });
    for (let i = 0; i < 10; i++)
      merge.observe(Array.from({ length: 1000 }, (_, j) => change('update', i * 1000 + j, 'x')));
    expect(merge.rememberedKeys).toBe(10_000);
    const b = merge.open(table);
    merge.onWatermark({ id: b.lowId, position: 'L2' });
    merge.deliver(a, [row(5, 'x'), row(20_000, 'y')]);
    // Only b is being read: changes older than b's start go.
    expect(merge.rememberedKeys).toBe(0);
    merge.observe([change('update', 7, 'z'), change('update', 20_000, 'y2')]);
    expect(merge.rememberedKeys).toBe(2);
    merge.deliver(b, [row(7, 'z'), row(8, 'w')]);
    expect(merge.rememberedKeys).toBe(0);
    expect(merge.onWatermark({ id: a.highId, position: 'H1' })!.map((e) => e.key.id)).toEqual([]);
    expect(merge.onWatermark({ id: b.highId, position: 'H2' })!.map((e) => e.key.id)).toEqual([8]);
  });

  it('an update after delivery that left a TOAST column unchanged is completed from the chunk row', () => {
    const merge = new WatermarkMerge();
    const c = merge.open(table);
    merge.onWatermark({ id: c.lowId, position: 'L' });
    merge.deliver(c, [row(1, 'a', 'the big document'), row(2, 'b', 'doc2')]);
    merge.observe([change('update', 1, 'a2', { unchanged: ['doc'] })]);
    merge.observe([change('update', 2, 'b2', { unchanged: ['doc'] })]);
    merge.observe([{ ...change('update', 2, 'b3'), after: { id: 2, note: 'b3', doc: 'doc3' } }]);
    const out = merge.onWatermark({ id: c.highId, position: 'H' })!;
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({
      op: 'update',
      key: { id: 1 },
      after: { id: 1, note: 'a2', doc: 'the big document' },
    });
  });

  describe('a table without key columns', () => {
    const keyless: TableSchema = { ...table, name: 'log', keyColumns: [] };
    const line = (id: number, note: string): Row => ({ id, note });
    const ev = (op: ChangeEvent['op'], extra: Partial<ChangeEvent>): ChangeEvent => ({
      op,
      table: keyless,
      key: {},
      position: 'p',
      ...extra,
    });

    it('drops only the rows the stream changed, matched by all their values (not every row as one key)', async () => {
      const merge = new WatermarkMerge();
      const { c, emit } = chunk(
        merge,
        [line(1, 'a'), line(2, 'b'), line(3, 'c'), line(4, 'd')],
        [
          [ev('insert', { after: line(2, 'b') })],
          [ev('delete', { before: line(3, 'c') })],
          [ev('update', { before: line(4, 'd'), after: line(4, 'd2') })],
        ],
        keyless,
      );
      expect(emit()!.map((e) => e.after)).toEqual([line(1, 'a')]);
      expect(await c.emitted).toBe(1);
    });

    it('a row read after its update (the new values) is dropped too; an unrelated insert drops nothing', () => {
      const merge = new WatermarkMerge();
      const { emit } = chunk(
        merge,
        [line(1, 'a2'), line(2, 'b')],
        [[ev('update', { before: line(1, 'a'), after: line(1, 'a2') })], [ev('insert', { after: line(9, 'z') })]],
        keyless,
      );
      expect(emit()!.map((e) => e.after)).toEqual([line(2, 'b')]);
    });

    it('a change that does not say which row it changed fails the chunk instead of guessing', async () => {
      const merge = new WatermarkMerge();
      const { c, emit } = chunk(merge, [line(1, 'a'), line(2, 'b')], [[ev('delete', {})]], keyless);
      expect(emit()).toBeUndefined();
      await expect(c.emitted).rejects.toThrow(/public\.log.*no key columns/);
      expect(merge.openChunks).toBe(0);
    });
  });

  it('keyString tells values of different types and composite keys apart', () => {
    expect(keyString(['id'], { id: 1 })).not.toBe(keyString(['id'], { id: '1' }));
    expect(keyString(['a', 'b'], { a: 'x', b: 'y' })).not.toBe(keyString(['a', 'b'], { a: 'xy', b: '' }));
    expect(keyString(['id'], { id: new Uint8Array([1, 2]) })).toBe(keyString(['id'], { id: new Uint8Array([1, 2]) }));
  });
});

describe('WatermarkMerge with chunks read raw (decoded and encoded in worker threads)', () => {
  /** A raw chunk of `rows`: the merge sees their keys; what it asks to emit or decode is recorded. */
  function rawChunk(merge: WatermarkMerge, rows: Row[], during: ChangeEvent[][] = [], after: ChangeEvent[][] = []) {
    const c = merge.open(table);
    merge.onWatermark({ id: c.lowId, position: 'L' });
    for (const batch of during) merge.observe(batch);
    const emitted: { position: string; keep: number[] | undefined }[] = [];
    let decoded = 0;
    merge.deliverRaw(c, {
      keys: rows.map((r) => keyString(table.keyColumns, r)),
      emit: (position, keep) => emitted.push({ position, keep: keep === undefined ? undefined : [...keep] }),
      decode: () => {
        decoded++;
        return rows;
      },
    });
    for (const batch of after) merge.observe(batch);
    const out = merge.onWatermark({ id: c.highId, position: 'H' });
    return { c, out, emitted, decoded: () => decoded };
  }

  it('nothing changed: all rows are handed over encoded at the high watermark, none decoded here', async () => {
    const merge = new WatermarkMerge();
    const { c, out, emitted, decoded } = rawChunk(merge, [row(1, 'a'), row(2, 'b'), row(3, 'c')]);
    expect(out).toEqual([]);
    expect(emitted).toEqual([{ position: 'H', keep: undefined }]);
    expect(decoded()).toBe(0);
    expect(await c.emitted).toBe(3);
    expect(merge.openChunks).toBe(0);
  });

  it('rows whose key changed before or after delivery are left out by the mask the workers get', async () => {
    const merge = new WatermarkMerge();
    const { c, emitted, decoded } = rawChunk(
      merge,
      [row(1, 'a'), row(2, 'b'), row(3, 'c'), row(4, 'd'), row(5, 'e')],
      [[change('update', 2, 'b2')]],
      [[change('delete', 4), change('update', 5, 'e2', { before: { id: 1 } })]],
    );
    // 2 changed while reading, 4 deleted after, 5's key came from 1 (both rows gone).
    expect(emitted).toEqual([{ position: 'H', keep: [0, 0, 1, 0, 0] }]);
    expect(decoded()).toBe(0);
    expect(await c.emitted).toBe(1);
  });

  it('a TRUNCATE leaves nothing to hand over', async () => {
    const merge = new WatermarkMerge();
    const { c, out, emitted } = rawChunk(merge, [row(1, 'a')], [[{ op: 'truncate', table, key: {}, position: 'p' }]]);
    expect(out).toEqual([]);
    expect(emitted).toEqual([]);
    expect(await c.emitted).toBe(0);
  });

  it('an evicting update that left a TOAST column unchanged: the rows are decoded here and emitted as events, completed', () => {
    const merge = new WatermarkMerge();
    const { out, emitted, decoded } = rawChunk(
      merge,
      [row(1, 'a', 'the big document'), row(2, 'b')],
      [[change('update', 1, 'a2', { unchanged: ['doc'] })]],
    );
    expect(emitted).toEqual([]);
    expect(decoded()).toBe(1);
    expect(out!.map((e) => [e.op, e.key.id])).toEqual([
      ['read', 2],
      ['update', 1],
    ]);
    expect(out![0]!.after).toEqual(row(2, 'b'));
    expect(out![1]!.after).toEqual({ id: 1, note: 'a2', doc: 'the big document' });
  });
});
