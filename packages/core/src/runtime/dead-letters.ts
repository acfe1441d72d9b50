import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { blamingError, type DeadLetter, type DeadLetterTarget } from '../contract/connector.js';
import { ErrorCode, formatError, NanosyncError } from '../errors.js';
import { describeError } from '../log/logger.js';
import type { ChangeEvent } from '../model.js';
import { qualifiedName } from '../model.js';
import { sinkFileName } from './sink-file-name.js';

/** The dead letter of one event: everything needed to find it again and to see why. */
export function deadLetterOf(pipeline: string, sink: string, event: ChangeEvent, err: unknown): DeadLetter {
  const letter: DeadLetter = {
    pipeline,
    sink,
    table: qualifiedName(event.table),
    op: event.op,
    key: event.key,
    position: event.position,
    error: errorOf(err),
    at: new Date().toISOString(),
  };
  if (event.commitTime !== undefined) letter.commitTime = event.commitTime;
  if (event.before !== undefined) letter.before = event.before;
  if (event.after !== undefined) letter.after = event.after;
  return letter;
}

/** The error that names the event (the sink's own, not core's wrapper around it). */
function errorOf(err: unknown): DeadLetter['error'] {
  const own = blamingError(err);
  if (own instanceof Error) {
    const code = (own as { code?: unknown }).code;
    return typeof code === 'string' ? { code, message: own.message } : { message: own.message };
  }
  return NanosyncError.is(err) ? { code: err.code, message: err.message } : { message: describeError(err) };
}

/** One line of text for a log or a status: `[NS_K6003] Kafka refused …`. */
export function deadLetterReason(letter: DeadLetter): string {
  return formatError({ code: letter.error.code, message: letter.error.message });
}

/**
 * A dead letter as one line of JSON. Values keep their meaning: bytes become
 * `{"base64": "…"}`, NaN and the infinities their names as strings (JSON has no such numbers).
 */
export function deadLetterJson(letter: DeadLetter): string {
  return JSON.stringify(letter, (_key, value: unknown) => {
    if (value instanceof Uint8Array)
      return { base64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
    if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
    if (typeof value === 'bigint') return value.toString();
    return value;
  });
}

/**
 * The default dead-letter target: a JSON-lines file, appended and fsynced before `write`
 * resolves (a dead letter is the only copy of the event outside the source once the
 * checkpoint passes it).
 */
export class JsonLinesDeadLetters implements DeadLetterTarget {
  constructor(readonly file: string) {}

  async write(letters: DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    try {
      await mkdir(path.dirname(this.file), { recursive: true });
      const handle = await open(this.file, 'a');
      try {
        await handle.writeFile(`${letters.map(deadLetterJson).join('\n')}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (err) {
      throw new NanosyncError(
        ErrorCode.SinkWriteFailed,
        `cannot write dead letters to ${this.file}: ${describeError(err)} (set the sink's dead_letter_path to a writable file)`,
        { cause: err, retriable: true, details: { file: this.file } },
      );
    }
  }
}

/** Where a sink's dead letters go by default: `<state folder>/dead-letters/<pipeline>/<sink>.jsonl`. */
export function defaultDeadLetterFile(dataDir: string, pipeline: string, sink: string): string {
  return path.join(dataDir, 'dead-letters', pipeline, `${sinkFileName(sink)}.jsonl`);
}
