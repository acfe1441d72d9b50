/**
 * Microbenchmark (issue 19): what a snapshot row costs from COPY text to JSON bytes, the way
 * nanosync decodes it against the PostgreSQL source's JSON row writer, which never makes the
 * row an object.
 *
 *   rows:       COPY line → fields (`parseCopyTextRow`) → values (the source's row decoder)
 *               → row object → `JSON.stringify(row)` → `Buffer.from(text)`
 *   JSON text:  COPY bytes → every value's JSON text (`jsonRowWriter`, the product's), then
 *               each row's object (`{"name":value,…}`) assembled from it into one buffer
 *
 * Both give the row image the envelope's `after` carries; every row's bytes are compared
 * before anything is timed. Run on a quiet machine, from apps/bench: `npx tsx
 * --conditions=@nanosync/source src/micro/copy-to-json.ts [chunks of 1,000 rows, default
 * 200]`; it prints CPU-µs per row of each, five rounds alternating, and the ratio of the
 * medians. Results: apps/bench/README.md, "A COPY-to-JSON transcoder measured alone" and
 * "The JSON text path in the product".
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
const names = table.schema.columns.map((c) => c.name);
/** `{"name":` and `,"name":` as bytes, per column. */
const heads = names.map((name, i) => Uint8Array.from(Buffer.from(`${i === 0 ? '{' : ','}${JSON.stringify(name)}:`)));

/** Today's path: each line's fields, the decoded row, `JSON.stringify`, `Buffer.from`. */
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

const write = jsonRowWriter(table.schema, { columns: table.columns });
let out = Buffer.allocUnsafeSlow(4 * 1024 * 1024);

/** The product's writer, then each row's object assembled from the values' texts; row ends in `ends`. */
function viaJsonText(chunk: Buffer, ends?: number[]): number {
  const rows = write(chunk);
  if (rows === undefined) throw new Error('the JSON row writer declined an S1 chunk');
  const { text, ends: valueEnds, columns } = rows;
  if (out.length < text.length * 2) out = Buffer.allocUnsafeSlow(text.length * 2);
  let at = 0;
  let from = 0;
  for (let r = 0; r < rows.rows; r++) {
    for (let c = 0; c < columns; c++) {
      const head = heads[c]!;
      for (let k = 0; k < head.length; k++) out[at++] = head[k]!;
      const to = valueEnds[r * columns + c]!;
      for (let k = from; k < to; k++) out[at++] = text[k]!;
      from = to;
    }
    out[at++] = 125;
    ends?.push(at);
  }
  // A typed array drops writes past its end without a word: say so instead of timing less work.
  if (at > out.length) throw new Error(`${at} bytes did not fit the ${out.length}-byte buffer`);
  return at;
}

// Same bytes, row for row, for every chunk before any timing.
for (const chunk of chunks) {
  const expected: Buffer[] = [];
  viaRows(chunk, expected);
  const ends: number[] = [];
  viaJsonText(chunk, ends);
  let from = 0;
  for (let r = 0; r < expected.length; r++) {
    const got = out.subarray(from, ends[r]!);
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
