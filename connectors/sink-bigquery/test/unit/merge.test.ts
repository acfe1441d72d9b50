import type { ChangeEvent, TableSchema } from '@nanosync/core';
import { describe, expect, test } from 'vitest';
import { foldEvents } from '../../src/merge/fold.js';
import { mergeSql, stagingTargetFor } from '../../src/merge/merge-sql.js';
import { targetTableFor } from '../../src/schema/target-table.js';
import { resolveUnchanged } from '../../src/write/unchanged.js';

const docs: TableSchema = {
  schema: 'public',
  name: 'docs',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'title', type: { kind: 'string' }, nullable: true },
    { name: 'body', type: { kind: 'string' }, nullable: true },
    { name: 'meta', type: { kind: 'json' }, nullable: true },
  ],
};
let n = 0;
const ev = (
  op: ChangeEvent['op'],
  after: Record<string, unknown> | undefined,
  extra: Partial<ChangeEvent> = {},
): ChangeEvent => ({
  op,
  table: docs,
  key: { id: (after?.id ?? extra.key?.id) as number },
  position: `00000000000000A0:${(++n).toString(16).padStart(8, '0')}`,
  ...(after ? { after: after as ChangeEvent['after'] } : {}),
  ...extra,
});

describe('the unchanged-column rule', () => {
  test('a column left out is taken from the full old image, else from an earlier event, else stays unchanged — never NULL', () => {
    const update = { after: { id: 1, title: 't2' }, unchanged: ['body', 'meta'] };
    expect(resolveUnchanged({ ...update, before: { id: 1, title: 't', body: 'B', meta: '{}' } }, undefined)).toEqual({
      row: { id: 1, title: 't2', body: 'B', meta: '{}' },
      unchanged: [],
    });
    expect(resolveUnchanged(update, { id: 1, body: 'from earlier' })).toEqual({
      row: { id: 1, title: 't2', body: 'from earlier' },
      unchanged: ['meta'],
    });
    const unknown = resolveUnchanged(update, undefined);
    expect(unknown.unchanged).toEqual(['body', 'meta']);
    expect(Object.hasOwn(unknown.row, 'body')).toBe(false);
  });

  test('folding: last change per key wins; an insert then a TOAST-less update keeps the inserted body', () => {
    const folded = foldEvents(
      [
        ev('insert', { id: 1, title: 'a', body: 'BIG', meta: null }),
        ev('update', { id: 1, title: 'b', meta: null }, { unchanged: ['body'] }),
        ev('insert', { id: 2, title: 'x', body: 'y', meta: null }),
        ev('delete', undefined, { key: { id: 2 } }),
        ev('update', { id: 3, title: 'c', meta: null }, { unchanged: ['body'] }),
      ],
      ['id'],
    );
    expect(folded.map((f) => [f.op, f.key.id, f.row.body, f.unchanged])).toEqual([
      ['upsert', 1, 'BIG', []],
      ['delete', 2, undefined, []],
      ['upsert', 3, undefined, ['body']],
    ]);
  });

  test('a key-changing update deletes the old key; without the left-out value it stops with table, keys and the fix', () => {
    const moved = foldEvents(
      [ev('update', { id: 9, title: 't', body: 'b', meta: null }, { before: { id: 8 } })],
      ['id'],
    );
    expect(moved.map((f) => [f.op, f.key.id])).toEqual([
      ['delete', 8],
      ['upsert', 9],
    ]);
    expect(() =>
      foldEvents([ev('update', { id: 9, title: 't', meta: null }, { before: { id: 8 }, unchanged: ['body'] })], ['id']),
    ).toThrow(/table public\.docs: an update moved key \{"id":8\} to \{"id":9\}.*"body".*REPLICA IDENTITY FULL/);
  });
});

describe('MERGE SQL', () => {
  test('one WHEN MATCHED clause per set of unchanged columns, inserts only complete rows, dedupes per key', () => {
    const target = targetTableFor(docs, 'mirror');
    const sql = mergeSql(target, {
      targetPath: '`p.d.public_docs`',
      stagingPath: '`p.d._ns_staging_public_docs`',
      unchangedSets: [['body'], ['meta', 'body']],
    });
    expect(sql).toBe(
      [
        'MERGE `p.d.public_docs` AS T',
        'USING (',
        '  SELECT * FROM `p.d._ns_staging_public_docs`',
        '  WHERE `_ns_batch` = @batch',
        '  QUALIFY ROW_NUMBER() OVER (PARTITION BY `id` ORDER BY `_ns_seq` DESC) = 1',
        ') AS S',
        'ON T.`id` = S.`id`',
        "WHEN MATCHED AND S.`_ns_op` = 'D' THEN DELETE",
        "WHEN MATCHED AND S.`_ns_op` = 'U' AND S.`_ns_unchanged` = '' THEN UPDATE SET `title` = S.`title`, `body` = S.`body`, `meta` = S.`meta`",
        "WHEN MATCHED AND S.`_ns_op` = 'U' AND S.`_ns_unchanged` = '[\"body\"]' THEN UPDATE SET `title` = S.`title`, `meta` = S.`meta`",
        'WHEN MATCHED AND S.`_ns_op` = \'U\' AND S.`_ns_unchanged` = \'["body","meta"]\' THEN UPDATE SET `title` = S.`title`',
        "WHEN NOT MATCHED AND S.`_ns_op` = 'U' AND S.`_ns_unchanged` = '' THEN INSERT (`id`, `title`, `body`, `meta`) VALUES (S.`id`, S.`title`, S.`body`, S.`meta`)",
      ].join('\n'),
    );
  });

  test('odd names are backtick-quoted everywhere, and a name crafted as SQL stays an identifier', () => {
    const odd: TableSchema = {
      schema: 'we`ird',
      name: 'x',
      keyColumns: ['Key Col'],
      columns: [
        { name: 'Key Col', type: { kind: 'string' }, nullable: false },
        { name: 'v`; DROP TABLE t; --', type: { kind: 'string' }, nullable: true },
      ],
    };
    const sql = mergeSql(targetTableFor(odd, 'mirror'), {
      targetPath: '`p.d.t`',
      stagingPath: '`p.d.s`',
      unchangedSets: [],
    });
    expect(sql).toContain('PARTITION BY `Key Col`');
    expect(sql).toContain('ON T.`Key Col` = S.`Key Col`');
    expect(sql).toContain('UPDATE SET `v__ DROP TABLE t_ --` = S.`v__ DROP TABLE t_ --`');
    expect(sql).not.toMatch(/[^`]DROP TABLE t; --/);
  });

  test('staging keeps the target columns nullable and adds the batch fields', () => {
    const staging = stagingTargetFor(targetTableFor(docs, 'mirror'));
    expect(staging.fields.map((f) => `${f.name}:${f.mode}`)).toEqual([
      'id:NULLABLE',
      'title:NULLABLE',
      'body:NULLABLE',
      'meta:NULLABLE',
      '_ns_batch:REQUIRED',
      '_ns_seq:REQUIRED',
      '_ns_op:REQUIRED',
      '_ns_unchanged:REQUIRED',
      '_ns_staged_at:REQUIRED',
    ]);
  });
});
