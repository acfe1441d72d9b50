/**
 * Microbenchmark (issue 19): what a snapshot row costs from COPY text to JSON bytes, the way
 * nanosync does it now against a transcoder that never makes the row an object.
 *
 *   now:        COPY line → fields (`parseCopyTextRow`) → values (the source's row decoder)
 *               → row object → `JSON.stringify(row)` → `Buffer.from(text)`
 *   transcoded: COPY bytes → JSON bytes, written straight into one output buffer, column by
 *               column by the column's type (S1's: int8, int4, float8, date, varchar)
 *
 * Both produce the row image as the JSON envelope's `after` carries it; every row's bytes are
 * compared before anything is timed. The transcoder is a measuring prototype for S1's columns
 * only (a float special throws), not product code. Run on a quiet machine, from apps/bench:
 * `npx tsx --conditions=@nanosync/source src/micro/copy-to-json.ts [chunks of 1,000 rows,
 * default 200]`; it prints CPU-µs per row of each, five rounds alternating, and the ratio of
 * the medians. Results: apps/bench/README.md, "A COPY-to-JSON transcoder measured alone".
 */
import { parseCopyTextRow } from '@nanosync/source-postgres/internal';
import { copyChunk, s1Table } from '../s0-rows.js';

const ROWS_PER_CHUNK = 1_000;
const chunks = Array.from({ length: Number(process.argv[2] ?? 200) }, (_, i) =>
  copyChunk(1 + i * ROWS_PER_CHUNK, ROWS_PER_CHUNK),
);
const table = s1Table();
const names = table.schema.columns.map((c) => c.name);

type Kind = 'int64' | 'int32' | 'float' | 'date' | 'text';
const kinds: Kind[] = table.columns.map((c) => {
  switch (c.type.oid) {
    case 20:
      return 'int64';
    case 23:
      return 'int32';
    case 701:
      return 'float';
    case 1082:
      return 'date';
    default:
      return 'text';
  }
});
/** `{"name":` and `,"name":` as bytes, per column. */
const heads = names.map((name, i) => Uint8Array.from(Buffer.from(`${i === 0 ? '{' : ','}${JSON.stringify(name)}:`)));
const HEX = Uint8Array.from(Buffer.from('0123456789abcdef'));
const NULL = Uint8Array.from(Buffer.from('null'));

/**
 * Today's path: each line's fields, the decoded row, `JSON.stringify`, `Buffer.from`. Returns
 * the bytes of every row. No event and no key: the transcoded path would still need those.
 */
function viaRows(chunk: Buffer, keep?: Buffer[]): number {
  let bytes = 0;
  const width = table.columns.length;
  let start = 0;
  while (start < chunk.length) {
    let end = chunk.indexOf(10, start);
    if (end < 0) end = chunk.length;
    const row = table.decodeRow(parseCopyTextRow(chunk.subarray(start, end), width));
    const value = Buffer.from(JSON.stringify(row), 'utf8');
    bytes += value.length;
    keep?.push(value);
    start = end + 1;
  }
  return bytes;
}

let out = new Uint8Array(4 * 1024 * 1024);

function put(bytes: Uint8Array, at: number): number {
  for (let k = 0; k < bytes.length; k++) out[at + k] = bytes[k]!;
  return at + bytes.length;
}

/**
 * The transcoder: every row of the chunk as JSON into `out`; row ends in `ends`. Only JS
 * operations on bytes in the common case: a call into C++ per value (`Buffer#copy`,
 * `toString`, `write`) costs about as much as today's whole path (measured: 4.9 µs a row).
 */
function transcode(chunk: Uint8Array, ends?: number[]): number {
  if (out.length < chunk.length * 3) out = new Uint8Array(chunk.length * 3);
  let at = 0;
  let i = 0;
  const n = chunk.length;
  while (i < n) {
    for (let c = 0; c < kinds.length; c++) {
      at = put(heads[c]!, at);
      let end = i;
      while (end < n && chunk[end] !== 9 && chunk[end] !== 10) end++;
      if (end - i === 2 && chunk[i] === 92 && chunk[i + 1] === 78) {
        at = put(NULL, at);
      } else {
        switch (kinds[c]) {
          case 'int32':
            for (let k = i; k < end; k++) out[at++] = chunk[k]!;
            break;
          case 'int64':
          case 'date':
            out[at++] = 34;
            for (let k = i; k < end; k++) out[at++] = chunk[k]!;
            out[at++] = 34;
            break;
          case 'float': {
            // PostgreSQL 12+ writes the shortest exact digits (extra_float_digits > 0), as
            // JavaScript does; in plain notation the texts are the same. An exponent, NaN,
            // the infinities and -0 go through Number.
            let plain = !(chunk[i] === 45 && chunk[i + 1] === 48 && (end - i === 2 || chunk[i + 2] === 46));
            for (let k = i; plain && k < end; k++) {
              const b = chunk[k]!;
              if (!((b >= 48 && b <= 57) || b === 46 || b === 45)) plain = false;
            }
            if (plain) for (let k = i; k < end; k++) out[at++] = chunk[k]!;
            else {
              const value = Number(Buffer.from(chunk.buffer, chunk.byteOffset + i, end - i).toString('latin1'));
              if (!Number.isFinite(value) || Object.is(value, -0)) throw new Error('float special: not in S1');
              const text = String(value);
              for (let k = 0; k < text.length; k++) out[at++] = text.charCodeAt(k);
            }
            break;
          }
          default: {
            out[at++] = 34;
            for (let k = i; k < end; k++) {
              let b = chunk[k]!;
              if (b === 92) {
                // COPY escapes: \b \f \n \r \t \v \\ (octal and hex are not written by the server).
                const e = chunk[++k]!;
                b =
                  e === 98 ? 8 : e === 102 ? 12 : e === 110 ? 10 : e === 114 ? 13 : e === 116 ? 9 : e === 118 ? 11 : e;
              }
              if (b === 34 || b === 92) {
                out[at++] = 92;
                out[at++] = b;
              } else if (b < 32) {
                out[at++] = 92;
                const short = b === 8 ? 98 : b === 12 ? 102 : b === 10 ? 110 : b === 13 ? 114 : b === 9 ? 116 : 0;
                if (short !== 0) out[at++] = short;
                else {
                  out[at++] = 117;
                  out[at++] = 48;
                  out[at++] = 48;
                  out[at++] = HEX[b >> 4]!;
                  out[at++] = HEX[b & 15]!;
                }
              } else out[at++] = b;
            }
            out[at++] = 34;
          }
        }
      }
      i = end + 1;
    }
    out[at++] = 125;
    ends?.push(at);
  }
  // A typed array drops writes past its end without a word: say so instead of timing less work.
  if (at > out.length) throw new Error(`transcoder: ${at} bytes did not fit the ${out.length}-byte buffer`);
  return at;
}

// Same bytes, row for row, for every chunk before any timing.
for (const chunk of chunks) {
  const expected: Buffer[] = [];
  viaRows(chunk, expected);
  const ends: number[] = [];
  transcode(chunk, ends);
  let from = 0;
  for (let r = 0; r < expected.length; r++) {
    const got = Buffer.from(out.buffer, from, ends[r]! - from);
    if (!got.equals(expected[r]!))
      throw new Error(`row ${r}: transcoded ${got.toString()} != ${expected[r]!.toString()}`);
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
cpuMicrosPerRow(transcode);
const rows: number[] = [];
const trans: number[] = [];
for (let round = 0; round < 5; round++) {
  rows.push(cpuMicrosPerRow(viaRows));
  trans.push(cpuMicrosPerRow(transcode));
}
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
console.log(
  `rows, stringify, Buffer.from: ${rows.map((v) => v.toFixed(2)).join(' ')} CPU-µs/row (median ${median(rows).toFixed(2)})`,
);
console.log(
  `transcoded:                   ${trans.map((v) => v.toFixed(2)).join(' ')} CPU-µs/row (median ${median(trans).toFixed(2)})`,
);
console.log(`transcoded ÷ rows: ${(median(trans) / median(rows)).toFixed(2)}`);
