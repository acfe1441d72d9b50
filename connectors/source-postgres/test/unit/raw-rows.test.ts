import { hasNegativeZero, jsonValueText, keyString, type Row, rowIdentity, type TableSchema } from '@nanosync/core';
import { afterAll, describe, expect, it } from 'vitest';
import type { PgColumn } from '../../src/describe.js';
import { CopyOutBytes, parseCopyTextRow } from '../../src/snapshot/copy-out.js';
import { jsonRowWriter } from '../../src/snapshot/json-rows.js';
import { rawRowKeys } from '../../src/snapshot/raw-rows.js';
import { ChunkBuffer } from '../../src/snapshot/read-chunk.js';
import { rowDecoder } from '../../src/snapshot/read-partition.js';
import type { PgTypeInfo } from '../../src/types/index.js';
import { builtinType, logicalTypeOf, sourceTypeName } from '../../src/types/index.js';
import { startDecodePool } from '../fixtures/decode-pool.js';
import { jsonObjects, jsonTexts } from '../fixtures/json-texts.js';

/**
 * Raw snapshot chunks (readPartitionChunk with `raw`): the bytes kept are exactly the rows the
 * decoded read keeps, and the worker module, run in real worker threads, decodes them into
 * exactly the rows the decoded read gives (every value kind, NULLs, COPY escapes). The key
 * strings the main thread computes equal `keyString` of the decoded rows.
 */

let seed = 0x2545f491;
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(list: readonly T[]): T => list[int(list.length)]!;

/** COPY text escaping of one field (what the server does on output). */
function copyEscape(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}
/** An array literal element, quoted the way the server quotes it. */
function arrayElement(text: string): string {
  return /^[A-Za-z0-9._:+-]+$/.test(text) && text.toUpperCase() !== 'NULL'
    ? text
    : `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}
const TEXTS = ['plain', 'tab\there', 'new\nline', 'back\\slash', 'q"uote', 'ü✓𝄞', '', 'NULL', '\\N', 'a,b', ' sp '];

const MOOD: PgTypeInfo = {
  oid: 90_001,
  schema: 'public',
  name: 'mood',
  codec: 'enum',
  enumLabels: ['sad', 'ok', 'happy'],
};
const PRICE: PgTypeInfo = {
  oid: 90_002,
  schema: 'public',
  name: 'price',
  codec: 'domain',
  base: builtinType(1700)!,
  baseTypmod: (10 << 16) + 2 + 4,
};

/** Column name, type, and a generator of the server's text output for a non-NULL value. */
const COLUMNS: [string, PgTypeInfo, () => string][] = [
  ['id', builtinType(23)!, () => String(int(2 ** 31))],
  ['i2', builtinType(21)!, () => String(int(65536) - 32768)],
  ['i8', builtinType(20)!, () => pick(['9223372036854775807', '-9223372036854775808', String(int(1e9))])],
  ['f4', builtinType(700)!, () => pick(['NaN', 'Infinity', '-Infinity', '1.5', '-0', '3.4028235e+38'])],
  ['f8', builtinType(701)!, () => pick(['NaN', '1e-300', String(random() * 1e6), '-0.1'])],
  ['num', builtinType(1700)!, () => pick(['NaN', '0.000', '123456789012345678901234567890.0123456789', '-1.50'])],
  ['b', builtinType(16)!, () => pick(['t', 'f'])],
  ['t', builtinType(25)!, () => copyEscape(pick(TEXTS))],
  ['vc', builtinType(1043)!, () => copyEscape(pick(TEXTS))],
  ['by', builtinType(17)!, () => `\\\\x${Buffer.from([int(256), int(256), 0, 255]).toString('hex')}`],
  ['d', builtinType(1082)!, () => pick(['2024-01-02', '0044-03-15 BC', 'infinity', '-infinity'])],
  ['ts', builtinType(1114)!, () => pick(['2024-01-02 03:04:05.123456', '1999-12-31 23:59:59', 'infinity'])],
  ['tstz', builtinType(1184)!, () => pick(['2024-01-02 03:04:05.000001+00', '2000-01-01 00:00:00+00'])],
  ['tm', builtinType(1083)!, () => pick(['24:00:00', '13:45:06.123456'])],
  ['iv', builtinType(1186)!, () => pick(['P1Y2M3DT4H5M6.000007S', 'PT0S', 'P-1D'])],
  ['u', builtinType(2950)!, () => 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
  ['jb', builtinType(3802)!, () => copyEscape(pick(['{"a": [1, 2.50]}', '{"t": "x\\ty"}', '[]', 'null']))],
  ['ia', builtinType(1007)!, () => pick(['{1,2,NULL}', '{{1,2},{NULL,4}}', '{}'])],
  ['ta', builtinType(1009)!, () => copyEscape(`{${[pick(TEXTS), pick(TEXTS)].map(arrayElement).join(',')},NULL}`)],
  ['na', builtinType(1231)!, () => pick(['{1.5,NaN,-Infinity}', '{}'])],
  ['e', MOOD, () => pick(['sad', 'ok', 'happy'])],
  ['dom', PRICE, () => pick(['99.95', '0.00'])],
];

function tableOf(keyColumns: string[]): { table: TableSchema; columns: PgColumn[] } {
  const columns: PgColumn[] = COLUMNS.map(([name, type]) => ({ name, type, typmod: -1, notNull: name === 'id' }));
  const table: TableSchema = {
    schema: 'public',
    name: 'raw_rows',
    columns: columns.map((c) => ({
      name: c.name,
      type: logicalTypeOf(c.type, c.typmod),
      nullable: !c.notNull,
      sourceType: sourceTypeName(c.type, c.typmod),
    })),
    keyColumns,
  };
  return { table, columns };
}

/** `n` random COPY lines of `SELECT ctid, <COLUMNS>` (NULL in about one field out of six). */
function copyLines(n: number): string[] {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const fields = [`(${i >> 4},${(i & 15) + 1})`];
    for (const [name, , make] of COLUMNS) fields.push(name !== 'id' && random() < 1 / 6 ? '\\N' : make());
    lines.push(`${fields.join('\t')}\n`);
  }
  return lines;
}

/** What the decoded read gives for these lines (copyChunkRows: parse, drop the ctid, decode). */
function inlineRows(lines: string[], table: TableSchema, columns: PgColumn[]): Row[] {
  const decode = rowDecoder({ table, columns, keyColumns: table.keyColumns });
  return lines.map((line) => decode(parseCopyTextRow(line, columns.length + 1).slice(1)));
}

function fakeConnection() {
  return { query: () => {}, stream: { pause: () => {}, resume: () => {} } };
}

/** The lines through a CopyOutBytes bounded like a chunk read. */
function collect(lines: string[], maxRows: number, maxBytes: number): CopyOutBytes {
  const copy = new CopyOutBytes('COPY x TO STDOUT', maxRows, maxBytes);
  copy.submit(fakeConnection());
  for (const line of lines) copy.handleCopyData({ chunk: Buffer.from(line, 'utf8') });
  copy.handleCommandComplete();
  copy.handleReadyForQuery();
  return copy;
}

const pools: { close(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

describe('raw snapshot chunks of PostgreSQL', () => {
  it('CopyOutBytes keeps exactly the rows a ChunkBuffer keeps, for any bounds', async () => {
    const lines = copyLines(300);
    for (let round = 0; round < 200; round++) {
      const maxRows = 1 + int(400);
      const maxBytes = 1 + int(40_000);
      const count = int(lines.length + 1);
      const offered = lines.slice(0, count);
      const reference = new ChunkBuffer<string>(maxRows, maxBytes);
      for (const line of offered) reference.offer(Buffer.byteLength(line), () => line);
      const copy = collect(offered, maxRows, maxBytes);
      await copy.done;
      expect([copy.rows, copy.bytes, copy.returned]).toEqual([
        reference.rows.length,
        reference.bytes,
        reference.returned,
      ]);
      expect(copy.lastLine()?.toString('utf8')).toBe(reference.rows.at(-1)?.slice(0, -1));
      const raw = copy.take();
      expect(raw.byteLength).toBe(reference.bytes);
      expect(Buffer.from(raw).toString('utf8')).toBe(reference.rows.join(''));
    }
  });

  it('CopyOutBytes stops after the row that reaches maxBytes exactly, and keeps one row however wide', async () => {
    const lines = ['a\tb\n', 'c\td\n', 'e\tf\n', 'g\th\n'];
    const exact = collect(lines, 100, 8);
    expect([exact.rows, exact.bytes, exact.returned]).toEqual([2, 8, 4]);
    const wide = collect(lines, 100, 1);
    expect([wide.rows, wide.bytes, wide.lastLine()?.toString()]).toEqual([1, 4, 'a\tb']);
    expect(collect(lines, 3, 1000).rows).toBe(3);
  });

  it('CopyOutBytes hands out exactly its own lines when its staging buffer is reused or has to grow', async () => {
    // A line wider than the staging buffer's slack past maxBytes makes it grow; the chunks after
    // it reuse the spare buffers of the ones before, which held other (longer) lines.
    const wide = `${'w'.repeat(200_000)}\t1\n`;
    const chunks = [['a\tb\n', wide, 'c\td\n'], copyLines(50), ['x\ty\n'], [wide], copyLines(3)];
    for (let round = 0; round < 3; round++) {
      for (const lines of chunks) {
        const copy = collect(lines, 1_000, 64);
        await copy.done;
        const expected = new ChunkBuffer<string>(1_000, 64);
        for (const line of lines) expected.offer(Buffer.byteLength(line), () => line);
        const raw = copy.take();
        expect(raw.byteLength).toBe(expected.bytes);
        expect(Buffer.from(raw).toString('utf8')).toBe(expected.rows.join(''));
      }
    }
  });

  it('CopyOutBytes passes the server error on', async () => {
    const copy = new CopyOutBytes('COPY x TO STDOUT', 10, 100);
    copy.submit(fakeConnection());
    copy.handleError(new Error('permission denied for table x'));
    copy.handleReadyForQuery();
    await expect(copy.done).rejects.toThrow(/permission denied/);
  });

  it('the worker module, in real worker threads, decodes exactly the rows the decoded read gives', async () => {
    const { table, columns } = tableOf(['id']);
    const pool = await startDecodePool(table, { columns }, 2);
    pools.push(pool);
    const chunks: string[][] = [];
    for (let c = 0; c < 12; c++) chunks.push(copyLines(1 + int(400)));
    const tasks = chunks.map((lines) => {
      const copy = collect(lines, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
      const raw = copy.take();
      return { task: raw, transfer: [raw], bytes: raw.byteLength };
    });
    const decoded: Row[][] = [];
    for await (const rows of pool.map(tasks)) decoded.push(rows);
    expect(decoded).toHaveLength(chunks.length);
    for (let c = 0; c < chunks.length; c++) expect(decoded[c]).toEqual(inlineRows(chunks[c]!, table, columns));
    // Every kind of value really went through: NULLs, bytes, arrays, escaped text.
    const all = decoded.flat();
    expect(all.some((r) => r.t === null)).toBe(true);
    expect(all.some((r) => r.by instanceof Uint8Array)).toBe(true);
    expect(all.some((r) => typeof r.t === 'string' && r.t.includes('\t'))).toBe(true);
    expect(all.some((r) => Array.isArray(r.ta))).toBe(true);
  });

  it('a value the worker cannot decode fails that task with the error the decoded read gives', async () => {
    const { table, columns } = tableOf(['id']);
    const pool = await startDecodePool(table, { columns }, 1);
    pools.push(pool);
    const lines = copyLines(3);
    lines[1] = lines[1]!.replace(/^([^\t]*\t[^\t]*\t)[^\t]*/, '$1not-a-number');
    let inline: unknown;
    try {
      inlineRows(lines, table, columns);
    } catch (err) {
      inline = err;
    }
    expect(inline).toBeInstanceOf(Error);
    const raw = Buffer.from(lines.join(''));
    const buffer = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length);
    const results = pool.map([{ task: buffer as ArrayBuffer, bytes: raw.length }]);
    await expect(results.next()).rejects.toMatchObject({
      message: (inline as Error).message,
      code: (inline as { code: string }).code,
    });
  });

  it('raw keys equal keyString of the decoded rows (one column, composite, and a table without key)', async () => {
    const lines = copyLines(500);
    const raw = new Uint8Array(collect(lines, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER).take());
    for (const keyColumns of [['id'], ['t', 'by', 'id'], ['ta', 'tstz'], []]) {
      const { table, columns } = tableOf(keyColumns);
      const expected = inlineRows(lines, table, columns).map((row) =>
        keyColumns.length === 0 ? rowIdentity(row) : keyString(keyColumns, row),
      );
      expect(rawRowKeys(raw, table, columns)).toEqual(expected);
    }
  });
});

/** One line per odd text, in every column it is valid for (the rest NULL). */
const ODD: Record<string, string[]> = {
  id: ['0', '-1', '2147483647', '-2147483648'],
  i2: ['0', '-32768', '32767'],
  i8: ['0', '-0', '007', '-9223372036854775808', '9223372036854775807'],
  f4: ['0', '-0', '1e+30', '1.17549435e-38', '16777216', '0.1', '-3.4028235e+38', 'Infinity'],
  f8: [
    '0',
    '-0',
    '-0.0',
    '0.5',
    '-0.000001',
    '0.0000001',
    '1e-05',
    '0.0001',
    '123456789012345',
    '1e+15',
    '1.7976931348623157e+308',
    '5e-324',
    '0.30000000000000004',
    '-1.2345678901234567',
    'NaN',
    '-Infinity',
  ],
  num: ['0', '-0.00', 'NaN', 'Infinity', '-Infinity', '1e5'],
  b: ['t', 'f'],
  t: [
    'a\\\\b',
    'q"uote',
    '\\b\\f\\n\\r\\t\\v',
    '\\x41\\101',
    '\\q',
    '\u0001\u001f\u007f',
    'ü✓𝄞',
    '\u2028\u2029',
    '',
    '\\\\N',
  ],
  u: ['A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
  d: ['2024-01-02', '0044-03-15 BC', '0001-01-01', 'infinity', '-infinity', '12345-01-01'],
};

/** Lines of ODD's values, one value per line, the other columns NULL (the id always set). */
function oddLines(): string[] {
  const lines: string[] = [];
  for (const [column, texts] of Object.entries(ODD)) {
    for (const text of texts) {
      const fields = ['(0,1)'];
      for (const [name] of COLUMNS) fields.push(name === column ? text : name === 'id' ? '1' : '\\N');
      lines.push(`${fields.join('\t')}\n`);
    }
  }
  return lines;
}

describe('the JSON row writer of raw chunks', () => {
  it('writes each value as jsonValueText of the value the decoded read gives (every kind, odd texts, NULLs)', () => {
    const { table, columns } = tableOf(['id']);
    const write = jsonRowWriter(table, { columns });
    const lines = [...copyLines(3000), ...oddLines()];
    // Chunks of several sizes, so the writer's buffers are reused and grown.
    for (const size of [1, 7, 500, lines.length]) {
      for (let from = 0; from < lines.length; from += size) {
        const chunk = lines.slice(from, from + size);
        const rows = inlineRows(chunk, table, columns);
        const json = write(Buffer.from(chunk.join(''), 'utf8'));
        expect(json).toBeDefined();
        expect(json!.rows).toBe(chunk.length);
        expect(json!.columns).toBe(columns.length);
        expect(jsonTexts(json!)).toEqual(rows.map((row) => table.columns.map((c) => jsonValueText(row[c.name]))));
        expect(json!.negativeZero).toBe(rows.some((row) => Object.values(row).some(hasNegativeZero)));
      }
    }
    // Every value, read back as JSON, is valid JSON.
    const json = write(Buffer.from(lines.join(''), 'utf8'))!;
    for (const row of jsonTexts(json)) for (const text of row) JSON.parse(text);
  });

  it('writes each row as the JSON object of its column names when asked for objects, with the same value texts', () => {
    const { table, columns } = tableOf(['id']);
    // A name JSON.stringify escapes: the object's labels are written as it writes them.
    table.columns[1] = { ...table.columns[1]!, name: 'we"ird\\name' };
    const plain = jsonRowWriter(table, { columns });
    const objects = jsonRowWriter(table, { columns }, { objects: true });
    const lines = [...copyLines(3000), ...oddLines()];
    for (const size of [1, 7, 500, lines.length]) {
      for (let from = 0; from < lines.length; from += size) {
        const chunk = Buffer.from(lines.slice(from, from + size).join(''), 'utf8');
        const expected = jsonTexts(plain(chunk)!);
        const json = objects(chunk)!;
        expect(json.starts).toBeDefined();
        expect(json.rows).toBe(expected.length);
        expect(jsonTexts(json)).toEqual(expected);
        const texts = jsonObjects(json);
        expect(texts).toEqual(
          expected.map(
            (values) => `{${table.columns.map((c, i) => `${JSON.stringify(c.name)}:${values[i]}`).join(',')}}`,
          ),
        );
        // The rows lie back to back: nothing before, between or after them.
        expect(texts.join('')).toBe(Buffer.from(json.text).toString('utf8'));
        for (const text of texts) expect(Object.keys(JSON.parse(text))).toEqual(table.columns.map((c) => c.name));
      }
    }
    // A huge value (written through the slow path's growth) ends a row whose brace still follows it.
    const t = columns.findIndex((c) => c.name === 't');
    const huge = 'x'.repeat(300_000);
    const line = `${['(0,1)', ...columns.map((_, c) => (c === 0 ? '1' : c === t ? huge : '\\N'))].join('\t')}\n`;
    expect(JSON.parse(jsonObjects(objects(Buffer.from(line))!)[0]!).t).toBe(huge);
  });

  it('writes fields of every length around where it stops copying in one pass as the decoded read does', () => {
    const { table, columns } = tableOf(['id']);
    const plain = jsonRowWriter(table, { columns });
    const objects = jsonRowWriter(table, { columns }, { objects: true });
    const t = columns.findIndex((c) => c.name === 't');
    const num = columns.findIndex((c) => c.name === 'num');
    // The table's last column: a line's last field ends the chunk when the line has no newline.
    const dom = columns.findIndex((c) => c.name === 'dom');
    expect(dom).toBe(columns.length - 1);
    const lines: string[] = [];
    // Text of 200 to 320 bytes: plain, or with a byte to escape (a COPY escape, a quote, a
    // control byte, a multi-byte character) at its start, in its middle or at its end.
    for (let length = 200; length <= 320; length++) {
      for (const odd of ['', '\\t', '"', '\u0001', 'ü']) {
        for (const at of odd === '' ? [0] : [0, Math.floor(length / 2), length - 1]) {
          const body = 'x'.repeat(length);
          const text = `${body.slice(0, at)}${odd}${body.slice(at + 1)}`;
          const fields = ['(0,1)', ...columns.map((_, c) => (c === 0 ? '1' : c === t ? text : '\\N'))];
          lines.push(`${fields.join('\t')}\n`);
        }
      }
      // Numerics of that many digits (JSON text: the digits in quotes), one in the last column.
      const digits = `1${'2'.repeat(length - 1)}`;
      const numbers = columns.map((_, c) => (c === 0 ? '1' : c === num || c === dom ? digits : '\\N'));
      lines.push(`${['(0,1)', ...numbers].join('\t')}\n`);
    }
    const rows = inlineRows(lines, table, columns);
    const expected = rows.map((row) => table.columns.map((c) => jsonValueText(row[c.name])));
    // All in one chunk, and each line as a chunk of its own (its field then ends the chunk).
    expect(jsonTexts(plain(Buffer.from(lines.join(''), 'utf8'))!)).toEqual(expected);
    expect(jsonTexts(objects(Buffer.from(lines.join(''), 'utf8'))!)).toEqual(expected);
    lines.forEach((line, i) => {
      expect(jsonTexts(plain(Buffer.from(line, 'utf8'))!)).toEqual([expected[i]]);
      expect(jsonTexts(objects(Buffer.from(line.slice(0, -1), 'utf8'))!)).toEqual([expected[i]]);
    });
  });

  it('writes text that is not valid UTF-8 as the decoded read does (replacement characters)', () => {
    const { table, columns } = tableOf(['id']);
    const write = jsonRowWriter(table, { columns });
    const t = columns.findIndex((c) => c.name === 't');
    for (const bad of [
      [0xc3],
      [0xe2, 0x9c],
      [0xed, 0xa0, 0x80],
      [0xf8, 0x41],
      [0xc0, 0xaf],
      [0xf4, 0x90, 0x80, 0x80],
    ]) {
      const fields: Buffer[] = [Buffer.from('(0,1)')];
      for (let c = 0; c < columns.length; c++)
        fields.push(c === 0 ? Buffer.from('1') : c === t ? Buffer.from([0x61, ...bad, 0x62]) : Buffer.from('\\N'));
      const line = Buffer.concat([
        ...fields.flatMap((f, i) => (i === 0 ? [f] : [Buffer.from('\t'), f])),
        Buffer.from('\n'),
      ]);
      const [row] = inlineRows([line.toString('utf8')], table, columns);
      // Bytes, not a string: reading the output as UTF-8 would replace bad bytes itself.
      const json = write(line)!;
      const value = Buffer.from(json.text.subarray(json.ends[t - 1], json.ends[t]));
      expect(value.toString('hex')).toBe(Buffer.from(JSON.stringify(row!.t), 'utf8').toString('hex'));
    }
  });

  it('writes a chunk of a huge value, then the next chunks as before (its buffers start small again)', () => {
    const { table, columns } = tableOf(['id']);
    const write = jsonRowWriter(table, { columns });
    const t = columns.findIndex((c) => c.name === 't');
    const line = (text: string) =>
      `${['(0,1)', ...columns.map((_, c) => (c === 0 ? '1' : c === t ? text : '\\N'))].join('\t')}\n`;
    const huge = 'x'.repeat(20 * 1024 * 1024);
    const big = write(Buffer.from(line(huge)))!;
    expect(jsonTexts(big)[0]![t]).toBe(JSON.stringify(huge));
    const small = write(Buffer.from(line('small')))!;
    expect(jsonTexts(small)[0]![t]).toBe('"small"');
    const lines = copyLines(500);
    const rows = inlineRows(lines, table, columns);
    expect(jsonTexts(write(Buffer.from(lines.join('')))!)).toEqual(
      rows.map((row) => table.columns.map((c) => jsonValueText(row[c.name]))),
    );
  });

  it('gives undefined for a chunk with a value that does not decode or a line of the wrong width', () => {
    const { table, columns } = tableOf(['id']);
    const write = jsonRowWriter(table, { columns });
    const [good] = copyLines(1);
    expect(write(Buffer.from(good!))).toBeDefined();
    const fields = good!.slice(0, -1).split('\t');
    const i2 = columns.findIndex((c) => c.name === 'i2') + 1;
    const bad = [...fields];
    bad[i2] = 'x1';
    expect(write(Buffer.from(`${bad.join('\t')}\n`))).toBeUndefined();
    expect(write(Buffer.from(`${fields.slice(0, -1).join('\t')}\n`))).toBeUndefined();
    expect(write(Buffer.from(`${fields.join('\t')}\t1\n`))).toBeUndefined();
    // The decoded read throws for the same chunk: core falls back to it and reports its error.
    expect(() => inlineRows([`${bad.join('\t')}\n`], table, columns)).toThrow(/i2/);
  });
});
