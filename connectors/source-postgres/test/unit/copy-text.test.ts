import { describe, expect, it } from 'vitest';
import { CopyOutQuery, parseCopyTextRow } from '../../src/snapshot/copy-out.js';

describe('COPY text rows', () => {
  it('splits on tabs, maps \\N to null and keeps empty strings', () => {
    expect(parseCopyTextRow(Buffer.from('1\tabc\t\\N\t\n'), 4)).toEqual(['1', 'abc', null, '']);
  });
  it('undoes the backslash escapes', () => {
    expect(parseCopyTextRow(Buffer.from('a\\tb\\nc\\\\d\\re\\bf\\fg\\vh\t\\101\\x42\n'), 2)).toEqual([
      'a\tb\nc\\d\re\bf\fg\vh',
      'AB',
    ]);
    expect(parseCopyTextRow('\\\\N\n', 1)).toEqual(['\\N']);
    expect(parseCopyTextRow('\\\\x00ff\n', 1)).toEqual(['\\x00ff']);
  });
  it('decodes UTF-8 including astral characters', () => {
    expect(parseCopyTextRow(Buffer.from('ü✓\t𝄞\n', 'utf8'), 2)).toEqual(['ü✓', '𝄞']);
  });
  it('rejects rows with the wrong number of columns', () => {
    expect(() => parseCopyTextRow('1\t2\n', 3)).toThrow(/2 columns, expected 3/);
    expect(() => parseCopyTextRow('1\t2\t3\n', 2)).toThrow(/more than 2/);
  });
  it('handles tables without columns', () => {
    expect(parseCopyTextRow('\n', 0)).toEqual([]);
  });
});

describe('CopyOutQuery flow control (fakeConnection stands in for pg internals)', () => {
  function fakeConnection() {
    const calls: string[] = [];
    return {
      calls,
      query: (text: string) => calls.push(`query ${text}`),
      stream: { pause: () => calls.push('pause'), resume: () => calls.push('resume') },
    };
  }
  it('pauses the socket above the high-water mark and resumes once drained', async () => {
    const conn = fakeConnection();
    const copy = new CopyOutQuery('COPY x TO STDOUT', 4);
    copy.submit(conn);
    for (let i = 0; i < 5; i++) copy.handleCopyData({ chunk: Buffer.from(`${i}\n`) });
    expect(conn.calls).toEqual(['query COPY x TO STDOUT', 'pause']);
    expect((await copy.next(2)).map(String)).toEqual(['0\n', '1\n']);
    expect(conn.calls.at(-1)).toBe('pause');
    expect((await copy.next(2)).map(String)).toEqual(['2\n', '3\n']);
    expect(conn.calls.at(-1)).toBe('resume');
    copy.handleCommandComplete();
    copy.handleReadyForQuery();
    expect((await copy.next(3)).map(String)).toEqual(['4\n']);
    expect(await copy.next(3)).toEqual([]);
  });
  it('surfaces the server error to the reader', async () => {
    const copy = new CopyOutQuery('COPY x TO STDOUT');
    copy.submit(fakeConnection());
    const pending = copy.next(10);
    copy.handleError(new Error('permission denied for table x'));
    await expect(pending).rejects.toThrow(/permission denied/);
  });
});
