import { open } from 'node:fs/promises';

/** Counts newline-terminated lines of a growing file, reading only what was appended since the last call. */
export class LineCounter {
  private offset = 0;
  private lines = 0;
  private readonly buffer = Buffer.allocUnsafe(1 << 20);

  constructor(readonly file: string) {}

  async count(): Promise<number> {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(this.file, 'r');
    } catch {
      return this.lines;
    }
    try {
      for (;;) {
        const { bytesRead } = await handle.read(this.buffer, 0, this.buffer.length, this.offset);
        if (bytesRead === 0) break;
        this.lines += countNewlines(this.buffer, bytesRead);
        this.offset += bytesRead;
      }
    } finally {
      await handle.close();
    }
    return this.lines;
  }
}

export function countNewlines(buffer: Buffer, length: number): number {
  let count = 0;
  let at = buffer.indexOf(10);
  while (at !== -1 && at < length) {
    count++;
    at = buffer.indexOf(10, at + 1);
  }
  return count;
}
