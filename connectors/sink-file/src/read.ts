import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileSinkRecord } from './encode.js';

export interface ReadJsonLinesOptions {
  /**
   * A line without its terminating newline can only be the tail of a write that was cut
   * short by a crash (never acknowledged). By default it is skipped; `strict` throws instead.
   */
  strict?: boolean;
}

/**
 * Stream the records of a `.jsonl` file one at a time (memory stays bounded whatever the
 * file size). Given a directory, reads every `*.jsonl` file in it, in name order.
 */
export async function* iterateJsonLines<T = FileSinkRecord>(
  target: string,
  options: ReadJsonLinesOptions = {},
): AsyncGenerator<T> {
  const info = await stat(target);
  if (info.isDirectory()) {
    const names = (await readdir(target)).filter((n) => n.endsWith('.jsonl')).sort();
    for (const name of names) yield* iterateFile<T>(join(target, name), options);
    return;
  }
  yield* iterateFile<T>(target, options);
}

async function* iterateFile<T>(file: string, options: ReadJsonLinesOptions): AsyncGenerator<T> {
  let rest = '';
  let lineNumber = 0;
  for await (const chunk of createReadStream(file, { encoding: 'utf8' })) {
    rest += chunk as string;
    let newline = rest.indexOf('\n');
    while (newline !== -1) {
      const line = rest.slice(0, newline);
      rest = rest.slice(newline + 1);
      lineNumber++;
      if (line.length > 0) {
        try {
          yield JSON.parse(line) as T;
        } catch (err) {
          throw new Error(`${file}:${lineNumber}: not a JSON line (${(err as Error).message})`);
        }
      }
      newline = rest.indexOf('\n');
    }
  }
  if (rest.length > 0 && options.strict) throw new Error(`${file}:${lineNumber + 1}: unterminated last line`);
}

/** Every record of a `.jsonl` file (or of every `.jsonl` file in a directory), in file order. For tests and tools. */
export async function readJsonLines<T = FileSinkRecord>(
  target: string,
  options: ReadJsonLinesOptions = {},
): Promise<T[]> {
  const out: T[] = [];
  for await (const record of iterateJsonLines<T>(target, options)) out.push(record);
  return out;
}

/**
 * Replay records in order and keep the latest row image per (table, key); a delete removes
 * the key and a truncate every key of its table. The result is what a key-upserting
 * consumer would hold. The map key is `table` + NUL + the JSON of the key object.
 */
export function latestByKey(records: Iterable<FileSinkRecord>): Map<string, FileSinkRecord> {
  const latest = new Map<string, FileSinkRecord>();
  for (const record of records) {
    if (record.op === 'truncate') {
      const prefix = `${record.table}\u0000`;
      for (const id of [...latest.keys()]) if (id.startsWith(prefix)) latest.delete(id);
      continue;
    }
    const id = `${record.table}\u0000${JSON.stringify(record.key)}`;
    if (record.op === 'delete') {
      latest.delete(id);
      continue;
    }
    if (record.op === 'update' && record.before) {
      // An update that changed the key moved the row away from its old key.
      const before = record.before;
      const oldKey = Object.fromEntries(Object.keys(record.key).map((column) => [column, before[column] ?? null]));
      const oldId = `${record.table}\u0000${JSON.stringify(oldKey)}`;
      if (oldId !== id && Object.keys(record.key).every((column) => Object.hasOwn(before, column)))
        latest.delete(oldId);
    }
    latest.set(id, record);
  }
  return latest;
}
