/**
 * Microbenchmark (issue 19): what a snapshot row costs from COPY text to JSON bytes, the way
 * nanosync decodes it against the PostgreSQL source's JSON row writer, which never makes the
 * row an object.
 *
 *   rows:       COPY line → fields (`parseCopyTextRow`) → values (the source's row decoder)
 *               → row object → `JSON.stringify(row)` → `Buffer.from(text)`
 *   JSON text:  COPY bytes → each row's JSON object (`jsonRowWriter` with `objects`, the
 *               product's writer as the file and Kafka sinks ask for it)
 *
 * Both give the row image the envelope's `after` carries; every row's bytes are compared
 * before anything is timed. Run on a quiet machine, from apps/bench: `npx tsx
 * --conditions=@nanosync/source src/micro/copy-to-json.ts [chunks of 1,000 rows, default
 * 200]`; it prints CPU-µs per row of each, five rounds alternating, and the ratio of the
 * medians. Results: apps/bench/README.md, "A COPY-to-JSON transcoder measured alone", "The
 * JSON text path in the product" and "Fields copied in one pass" (rows as objects from then on).
 */
import { jsonRowWriter, parseCopyTextRow } from '@nanosync/source-postgres/internal';
import { copyChunk, s1Table } from '../s0-rows.js';

const ROWS_PER_CHUNK = 1_000;
const table = s1Table();
/** S1 chunks as the source reads them raw: each line starts with the row's ctid. */
const chunks = Array.from({ length: Number(process.argv[2] ?? 200) }, (_, i) => {
  const lines = copyChunk(1 + i * ROWS_PER_CHUNK, ROWS_PER_CHUNK)
    .toString('utf8')
    .split('\n');
  return Buffer.from(
    lines
      .filter((line) => line !== '')
      .map((line, r) => `(${i},${r + 1})\t${line}\n`)
      .join(''),
    'utf8',
  );
});
/** The decoded path: each line's fields, the decoded row, `JSON.stringify`, `Buffer.from`. */
function viaRows(chunk: Buffer, keep?: Buffer[]): number {
  let bytes = 0;
  const width = table.columns.length;
  let start = 0;
  while (start < chunk.length) {
    let end = chunk.indexOf(10, start);
    if (end < 0) end = chunk.length;
    const tab = chunk.indexOf(9, start);
    const row = table.decodeRow(parseCopyTextRow(chunk.subarray(tab + 1, end), width));
    const value = Buffer.from(JSON.stringify(row), 'utf8');
    bytes += value.length;
    keep?.push(value);
    start = end + 1;
  }
  return bytes;
}

const write = jsonRowWriter(table.schema, { columns: table.columns }, { objects: true });

/** The product's writer with rows as objects, as the file and Kafka sinks take them; row ends in `ends`. */
function viaJsonText(chunk: Buffer, ends?: number[]): number {
  const rows = write(chunk);
  if (rows === undefined) throw new Error('the JSON row writer declined an S1 chunk');
  if (rows.starts === undefined) throw new Error('the JSON row writer did not write rows as objects');
  // Row r's object ends one byte past its last value.
  if (ends !== undefined)
    for (let r = 0; r < rows.rows; r++) ends.push(rows.ends[r * rows.columns + rows.columns - 1]! + 1);
  return rows.text.length;
}

// Same bytes, row for row, for every chunk before any timing.
for (const chunk of chunks) {
  const expected: Buffer[] = [];
  viaRows(chunk, expected);
  const ends: number[] = [];
  viaJsonText(chunk, ends);
  const text = write(chunk)!.text;
  if (ends.length !== expected.length) throw new Error(`${ends.length} rows written, ${expected.length} decoded`);
  let from = 0;
  for (let r = 0; r < expected.length; r++) {
    const got = Buffer.from(text.buffer, text.byteOffset + from, ends[r]! - from);
    if (!got.equals(expected[r]!))
      throw new Error(`row ${r}: JSON text ${got.toString()} != ${expected[r]!.toString()}`);
    from = ends[r]!;
  }
}

function cpuMicrosPerRow(work: (chunk: Buffer) => number): number {
  const start = process.cpuUsage();
  for (const chunk of chunks) work(chunk);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / (chunks.length * ROWS_PER_CHUNK);
}

// Warm-up, then alternating rounds.
cpuMicrosPerRow(viaRows);
cpuMicrosPerRow(viaJsonText);
const rows: number[] = [];
const json: number[] = [];
for (let round = 0; round < 5; round++) {
  rows.push(cpuMicrosPerRow(viaRows));
  json.push(cpuMicrosPerRow(viaJsonText));
}
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
console.log(
  `rows, stringify, Buffer.from: ${rows.map((v) => v.toFixed(2)).join(' ')} CPU-µs/row (median ${median(rows).toFixed(2)})`,
);
console.log(
  `JSON text (jsonRowWriter):    ${json.map((v) => v.toFixed(2)).join(' ')} CPU-µs/row (median ${median(json).toFixed(2)})`,
);
console.log(`JSON text ÷ rows: ${(median(json) / median(rows)).toFixed(2)}`);
