import {
  type JsonRows,
  jsonValueText,
  keyString,
  type PartitionSpec,
  type Row,
  type TableSchema,
} from '@nanosync/core';
import { afterAll, describe, expect, it } from 'vitest';
import { jsonRowWriter } from '../../src/snapshot/json-rows.js';
import type { RawDecoderSetup } from '../../src/snapshot/raw-rows.js';
import type { PostgresSource } from '../../src/source.js';
import { startDecodePool } from '../fixtures/decode-pool.js';
import { pgFixture, uniqueName } from './fixture.js';
import { COLUMNS, DDL, RANDOM_ROWS, ROWS } from './types-data.js';
import { jsonObjects, jsonTexts } from '../fixtures/json-texts.js';

/**
 * readPartitionChunk with `raw` against a real server: the same chunks (bytes, `next`) as
 * the decoded read, and the rows a real worker pool decodes from them with the source's
 * worker module equal the decoded read's rows, value for value — every type of the type
 * test plus random rows with NULLs, escapes, arrays, numerics, bytea and timestamps. The
 * keys given with `rawKeys` equal `keyString` of the decoded rows, and the JSON row writer
 * gives, value for value, `jsonValueText` of the decoded values.
 */

const table = { schema: 'public', name: 'all_types' };
const signal = new AbortController().signal;

const pools: { close(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

interface Read {
  rows: Row[];
  bytes: number[];
  nexts: unknown[];
  keys: string[];
  /** Per row, each value's JSON text as the JSON row writer wrote it. */
  json: string[][];
}

async function readAllChunks(
  source: PostgresSource,
  schema: TableSchema,
  partition: PartitionSpec,
  decodeRaw: ((raw: ArrayBuffer) => Promise<Row[]>) | undefined,
  writeJson?: (raw: Uint8Array) => JsonRows | undefined,
  writeObjects?: (raw: Uint8Array) => JsonRows | undefined,
): Promise<Read> {
  const read: Read = { rows: [], bytes: [], nexts: [], keys: [], json: [] };
  let after: unknown;
  for (;;) {
    const chunk = await source.readPartitionChunk(schema, partition, {
      after,
      maxRows: 700,
      maxBytes: 64 << 10,
      signal,
      ...(decodeRaw ? { raw: true, rawKeys: true } : {}),
    });
    if (decodeRaw) {
      expect(chunk.rows).toEqual([]);
      expect(chunk.raw!.keys).toHaveLength(chunk.raw!.rows);
      read.keys.push(...chunk.raw!.keys!);
      if (writeJson) {
        const json = writeJson(new Uint8Array(chunk.raw!.bytes));
        expect(json).toBeDefined();
        expect(json!.rows).toBe(chunk.raw!.rows);
        const texts = jsonTexts(json!);
        read.json.push(...texts);
        // Each row as an object too (what the file and Kafka sinks ask for): the same value
        // texts, and each row's object text is valid JSON holding them under the column names.
        const objects = writeObjects!(new Uint8Array(chunk.raw!.bytes))!;
        expect(jsonTexts(objects)).toEqual(texts);
        jsonObjects(objects).forEach((text, r) => {
          expect(Object.keys(JSON.parse(text))).toEqual(schema.columns.map((c) => c.name));
          expect(text).toBe(`{${schema.columns.map((c, i) => `${JSON.stringify(c.name)}:${texts[r]![i]}`).join(',')}}`);
        });
      }
      const rows = await decodeRaw(chunk.raw!.bytes);
      expect(rows).toHaveLength(chunk.raw!.rows);
      read.rows.push(...rows);
    } else read.rows.push(...chunk.rows);
    read.bytes.push(chunk.bytes);
    read.nexts.push(chunk.next);
    if (chunk.next === undefined) break;
    after = chunk.next;
  }
  return read;
}

describe('readPartitionChunk raw (rows decoded in worker threads)', () => {
  it('gives the decoded read’s chunks, and a real worker pool decodes them into the same rows', async () => {
    await using fx = await pgFixture();
    for (const statement of DDL) await fx.admin.query(statement);
    for (const row of ROWS) await fx.admin.query(`INSERT INTO public.all_types (${COLUMNS}) VALUES (${row.sql})`);
    await fx.admin.query(RANDOM_ROWS, [3000]);
    await fx.admin.query('ALTER TABLE public.all_types SET (autovacuum_enabled = false)');
    await fx.grantRead([table]);
    const pipeline = uniqueName('raw');
    await fx.preparePublication(pipeline, [table]);
    const source = await fx.source(pipeline);
    await source.open([table], { wantSnapshot: false });
    const [schema] = await source.describe([table]);
    const partitions = await source.planPartitions(schema!, { targetRowsPerPartition: 1200 });
    expect(partitions.length).toBeGreaterThan(1);

    const setup = await source.decoderSetup(schema!);
    // Structured clone, as core hands it to a worker: nothing in it may be lost on the way.
    expect(structuredClone(setup)).toEqual(setup);
    const pool = await startDecodePool(schema!, setup, 2);
    pools.push(pool);
    const decodeRaw = async (raw: ArrayBuffer) => {
      const out: Row[][] = [];
      for await (const rows of pool.map([{ task: raw, transfer: [raw], bytes: raw.byteLength }])) out.push(rows);
      expect(raw.byteLength).toBe(0); // moved to the worker, not copied
      return out[0]!;
    };

    const writeJson = jsonRowWriter(schema!, setup as RawDecoderSetup);
    const writeObjects = jsonRowWriter(schema!, setup as RawDecoderSetup, { objects: true });
    let total = 0;
    for (const partition of partitions) {
      const decoded = await readAllChunks(source, schema!, partition, undefined);
      const raw = await readAllChunks(source, schema!, partition, decodeRaw, writeJson, writeObjects);
      expect(raw.json).toEqual(decoded.rows.map((row) => schema!.columns.map((c) => jsonValueText(row[c.name]))));
      expect(raw.bytes).toEqual(decoded.bytes);
      expect(raw.nexts).toEqual(decoded.nexts);
      expect(raw.rows).toEqual(decoded.rows);
      expect(raw.keys).toEqual(decoded.rows.map((row) => keyString(schema!.keyColumns, row)));
      total += decoded.rows.length;
    }
    expect(total).toBe(ROWS.length + 3000);

    // A chunk read again over its recorded range (upTo) gives the same raw rows.
    const first = partitions[0]!;
    const once = await source.readPartitionChunk(schema!, first, {
      after: undefined,
      maxRows: 500,
      maxBytes: 1 << 20,
      signal,
    });
    const again = await source.readPartitionChunk(schema!, first, {
      after: undefined,
      maxRows: 1,
      maxBytes: 1,
      upTo: { next: once.next },
      raw: true,
      signal,
    });
    expect(again.next).toEqual(once.next);
    expect(again.bytes).toBe(once.bytes);
    expect(again.raw!.keys).toBeUndefined();
    expect(await decodeRaw(again.raw!.bytes)).toEqual(once.rows);
  });
});
