import type { ChangeEvent, TableSchema } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import type { CaptureInstance } from '../../src/catalog.js';
import { changePageSql, maxLsnPerInstanceSql } from '../../src/cdc/change-query.js';
import { planInstanceReads } from '../../src/cdc/instances.js';
import { managedInstanceName } from '../../src/cdc/manage.js';
import {
  ChangeAssembler,
  type ChangeCursor,
  ChangeMerger,
  type ChangeRow,
  commitOrderBatches,
} from '../../src/cdc/merge.js';
import { nextPollDelay } from '../../src/cdc/poll-delay.js';
import { commitTimeUtc } from '../../src/cdc/stream.js';
import { chooseKey } from '../../src/catalog.js';
import { decodePosition } from '../../src/position.js';

const L = (n: number) => n.toString(16).toUpperCase().padStart(20, '0');

function row(
  source: number,
  lsn: number,
  commandId: number,
  seqval: number,
  operation: number,
  values: Record<string, unknown>,
): ChangeRow {
  return {
    source,
    position: { startLsn: L(lsn), commandId, seqval: L(seqval), operation },
    row: values as ChangeRow['row'],
    bytes: 10,
  };
}

/** A cursor over rows held in memory, served in pages of `pageSize` (the shape of the SQL pages). */
class InMemoryCursor implements ChangeCursor {
  pagesServed = 0;
  constructor(
    private rows: ChangeRow[],
    private readonly pageSize: number,
  ) {}
  async nextPage(): Promise<ChangeRow[]> {
    const page = this.rows.slice(0, this.pageSize);
    this.rows = this.rows.slice(this.pageSize);
    if (page.length) this.pagesServed++;
    return page;
  }
}

async function drain(merger: ChangeMerger): Promise<ChangeRow[]> {
  const out: ChangeRow[] = [];
  for (let r = await merger.next(); r; r = await merger.next()) out.push(r);
  return out;
}

describe('merging several tables into commit order', () => {
  it('orders by start_lsn, then command_id, then seqval, then operation, across tables and pages', async () => {
    const orders = [
      row(0, 10, 1, 11, 2, { id: 1 }),
      row(0, 12, 2, 13, 3, { id: 1 }),
      row(0, 12, 2, 13, 4, { id: 1 }),
      row(0, 20, 1, 21, 1, { id: 1 }),
    ];
    const lines = [
      row(1, 10, 2, 12, 2, { id: 7 }),
      row(1, 12, 1, 14, 2, { id: 8 }), // command 1 comes before command 2 of LSN 12 although its seqval is larger
      row(1, 15, 1, 16, 2, { id: 9 }),
    ];
    const merged = await drain(new ChangeMerger([new InMemoryCursor(orders, 1), new InMemoryCursor(lines, 2)]));
    expect(
      merged.map((r) => [r.source, parseInt(r.position.startLsn, 16), r.position.commandId, r.position.operation]),
    ).toEqual([
      [0, 10, 1, 2],
      [1, 10, 2, 2],
      [1, 12, 1, 2],
      [0, 12, 2, 3],
      [0, 12, 2, 4],
      [1, 15, 1, 2],
      [0, 20, 1, 1],
    ]);
  });

  it('keeps at most one page per table in memory', async () => {
    const many = Array.from({ length: 100 }, (_, i) => row(0, 100 + i, 1, 1, 2, { id: i }));
    const cursor = new InMemoryCursor(many, 10);
    const merger = new ChangeMerger([cursor, new InMemoryCursor([], 10)]);
    await merger.next();
    expect(cursor.pagesServed).toBe(1);
    expect((await drain(merger)).length).toBe(99);
  });
});

describe('assembling events', () => {
  const schema: TableSchema = {
    schema: 'dbo',
    name: 'orders',
    keyColumns: ['id'],
    columns: [
      { name: 'id', type: { kind: 'int32' }, nullable: false },
      { name: 'doc', type: { kind: 'string' }, nullable: true },
    ],
  };
  const assembler = () => new ChangeAssembler([{ schema, lobColumns: new Set(['doc']) }]);

  it('folds an update pair (3 then 4) into one update with before and after', () => {
    const a = assembler();
    expect(a.push(row(0, 5, 1, 6, 3, { id: 1, doc: 'old' }))).toBeUndefined();
    expect(a.pending).toBe(true);
    const event = a.push(row(0, 5, 1, 6, 4, { id: 1, doc: 'new' })) as ChangeEvent;
    expect(event).toMatchObject({
      op: 'update',
      key: { id: 1 },
      before: { id: 1, doc: 'old' },
      after: { id: 1, doc: 'new' },
    });
    expect(decodePosition(event.position).operation).toBe(4);
  });

  it('a key-changing update keeps the old key in before and the new one as the key', () => {
    const a = assembler();
    a.push(row(0, 5, 1, 6, 3, { id: 1, doc: 'x' }));
    expect(a.push(row(0, 5, 1, 6, 4, { id: 2, doc: 'x' }))).toMatchObject({ key: { id: 2 }, before: { id: 1 } });
  });

  it('leaves LOB columns SQL Server sent as NULL out of the before-image (unchanged LOBs are not logged)', () => {
    const a = assembler();
    a.push(row(0, 5, 1, 6, 3, { id: 1, doc: null }));
    const event = a.push(row(0, 5, 1, 6, 4, { id: 1, doc: 'kept' }));
    expect(event?.before).toEqual({ id: 1 });
  });

  it('a deferred update stays a delete followed by an insert, in that order', () => {
    const a = assembler();
    const del = a.push(row(0, 7, 1, 8, 1, { id: 3, doc: 'a' }));
    const ins = a.push(row(0, 7, 2, 8, 2, { id: 3, doc: 'b' }));
    expect([del?.op, ins?.op]).toEqual(['delete', 'insert']);
    expect(del?.before).toEqual({ id: 3, doc: 'a' });
  });

  it('an after-image without before-images (mode all) is an update without before', () => {
    expect(assembler().push(row(0, 9, 1, 9, 4, { id: 1, doc: 'z' }))).toMatchObject({
      op: 'update',
      after: { doc: 'z' },
    });
  });

  it('refuses a before-image that is not followed by its after-image', () => {
    const a = assembler();
    a.push(row(0, 5, 1, 6, 3, { id: 1 }));
    expect(() => a.push(row(0, 5, 2, 7, 2, { id: 2 }))).toThrow(/not followed by its after-image/);
  });
});

function instance(name: string, startLsn: number | null, created = 0): CaptureInstance {
  return {
    name,
    sourceObjectId: 1,
    changeTableObjectId: 100 + created,
    changeTable: `${name}_CT`,
    startLsn: startLsn === null ? null : L(startLsn),
    createDate: new Date(2026, 0, 1, 0, 0, created),
    roleName: null,
    indexName: null,
  };
}

describe('capture instance and retention decisions', () => {
  it('reads one instance from the position to the bound', () => {
    const plan = planInstanceReads([instance('dbo_t', 5)], L(100), true, L(200));
    expect(plan.gap).toBeUndefined();
    expect(plan.reads).toHaveLength(1);
    expect(plan.reads[0]).toMatchObject({
      afterLsn: L(100),
      fromPosition: false,
      functionFromLsn: L(101),
      toLsn: L(200),
    });
  });

  it('continues inside an unfinished transaction from the exact row', () => {
    const plan = planInstanceReads([instance('dbo_t', 5)], L(100), false, L(200));
    expect(plan.reads[0]).toMatchObject({ fromPosition: true, functionFromLsn: L(100) });
  });

  it('follows a new capture instance exactly at its start LSN: old up to it, new after it', () => {
    const plan = planInstanceReads([instance('dbo_t_v2', 150, 1), instance('dbo_t', 5, 0)], L(100), true, L(200));
    expect(
      plan.reads.map((r) => [r.instance.name, parseInt(r.functionFromLsn, 16), parseInt(r.toLsn, 16), r.fromPosition]),
    ).toEqual([
      ['dbo_t', 101, 150, false],
      ['dbo_t_v2', 151, 200, false],
    ]);
    expect(plan.gap).toBeUndefined();
  });

  it('reads only the new instance once past its start, and names the old one as superseded', () => {
    const plan = planInstanceReads([instance('dbo_t', 5, 0), instance('dbo_t_v2', 150, 1)], L(160), true, L(200));
    expect(plan.reads.map((r) => r.instance.name)).toEqual(['dbo_t_v2']);
    expect(plan.superseded.map((i) => i.name)).toEqual(['dbo_t']);
  });

  it('a new instance created while stopped, the old one already dropped: the changes in between are a gap', () => {
    const plan = planInstanceReads([instance('dbo_t_v2', 150, 1)], L(100), true, L(200));
    expect(plan.gap).toMatchObject({ lostAfter: L(100), lostBefore: L(150) });
  });

  it('detects a retention gap when cleanup moved the low end past the position, and not when it did not', () => {
    expect(planInstanceReads([instance('dbo_t', 130)], L(100), true, L(200)).gap).toMatchObject({
      lostAfter: L(100),
      lostBefore: L(130),
    });
    expect(planInstanceReads([instance('dbo_t', 101)], L(100), true, L(200)).gap).toBeUndefined();
    expect(planInstanceReads([instance('dbo_t', 100)], L(100), false, L(200)).gap).toBeUndefined();
    expect(planInstanceReads([instance('dbo_t', 101)], L(100), false, L(200)).gap).toBeDefined();
  });

  it('an instance the capture job has not established yet is not read and is no gap', () => {
    const plan = planInstanceReads([instance('dbo_t', null)], L(100), true, L(200));
    expect(plan).toEqual({ reads: [], superseded: [] });
  });

  it('nothing to read when the position is at the bound', () => {
    expect(planInstanceReads([instance('dbo_t', 5)], L(200), true, L(200)).reads).toEqual([]);
  });
});

describe('change page SQL', () => {
  const columns = [
    { name: 'id', typeName: 'int', maxLength: 4, precision: 10, scale: 0, nullable: false },
    { name: 'amo]unt', typeName: 'money', maxLength: 8, precision: 19, scale: 4, nullable: true },
  ];
  it('reads through the CDC function, ordered and resumed on the full tuple', () => {
    const sql = changePageSql({
      instance: "dbo_o'rd]ers",
      changeTable: 'x_CT',
      columns,
      beforeImages: true,
      path: 'function',
      afterTuple: true,
    });
    expect(sql).toContain("FROM cdc.[fn_cdc_get_all_changes_dbo_o'rd]]ers](@from, @to, N'all update old') c");
    expect(sql).toContain('CONVERT(varchar(32), c.[amo]]unt], 2) AS [v1]');
    expect(sql).toContain('c.__$command_id > @after_cmd');
    expect(sql).toContain('ORDER BY c.__$start_lsn, c.__$command_id, c.__$seqval, c.__$operation');
    expect(sql).toContain('LEFT JOIN cdc.lsn_time_mapping m ON m.start_lsn = c.__$start_lsn');
  });
  it('or from the change table itself, without before-images when not wanted', () => {
    const sql = changePageSql({
      instance: 'dbo_orders',
      changeTable: 'dbo_orders_CT',
      columns,
      beforeImages: false,
      path: 'change_table',
      afterTuple: false,
    });
    expect(sql).toContain('FROM cdc.[dbo_orders_CT] c');
    expect(sql).toContain('c.__$operation <> 3');
    expect(sql).toContain('c.__$start_lsn > @after_lsn');
    expect(sql).not.toContain('@after_cmd');
  });
  it('finds idle tables with one statement', () => {
    expect(
      maxLsnPerInstanceSql([
        { instance: 'a', changeTable: 'a_CT' },
        { instance: 'b', changeTable: 'b]_CT' },
      ]),
    ).toBe(
      'SELECT @i0 AS capture_instance, (SELECT MAX(__$start_lsn) FROM cdc.[a_CT]) AS max_lsn\nUNION ALL\nSELECT @i1 AS capture_instance, (SELECT MAX(__$start_lsn) FROM cdc.[b]]_CT]) AS max_lsn',
    );
  });
});

describe('polling, commit times, keys, names', () => {
  it('polls back to back with a backlog and backs off to poll_interval when idle', () => {
    expect(nextPollDelay(500, { changes: 10, backlog: true }, 500)).toBe(0);
    expect(nextPollDelay(0, { changes: 10, backlog: false }, 500)).toBe(25);
    const idle = [25];
    for (let i = 0; i < 6; i++) idle.push(nextPollDelay(idle.at(-1)!, { changes: 0, backlog: false }, 500));
    expect(idle).toEqual([25, 50, 100, 200, 400, 500, 500]);
  });
  it('turns lsn_time_mapping local times into UTC', () => {
    expect(commitTimeUtc('2026-03-01 00:30:00.123', 60)).toBe('2026-02-28T23:30:00.123000Z');
    expect(commitTimeUtc('2026-03-01 23:30:00.000', -120)).toBe('2026-03-02T01:30:00.000000Z');
  });
  it('prefers the primary key, else the narrowest unique index', () => {
    expect(
      chooseKey([
        { index_id: 3, index_name: 'ux_wide', is_primary_key: false, column_name: 'a' },
        { index_id: 3, index_name: 'ux_wide', is_primary_key: false, column_name: 'b' },
        { index_id: 4, index_name: 'ux_code', is_primary_key: false, column_name: 'code' },
      ]),
    ).toMatchObject({ indexName: 'ux_code', columns: ['code'] });
    expect(
      chooseKey([
        { index_id: 1, index_name: 'PK_t', is_primary_key: true, column_name: 'id' },
        { index_id: 4, index_name: 'ux_code', is_primary_key: false, column_name: 'code' },
      ]),
    ).toMatchObject({ indexName: 'PK_t', primary: true });
    expect(chooseKey([])).toBeUndefined();
  });
  it('names managed capture instances per pipeline and table, within 100 characters', () => {
    expect(managedInstanceName('orders', { schema: 'dbo', name: 'orders' })).toBe('nanosync_orders_dbo_orders');
    const odd = managedInstanceName('p', { schema: 'dbo', name: 'na me]' });
    expect(odd).toMatch(/^nanosync_p_dbo_na_me__[0-9a-f]{8}$/);
    expect(odd).not.toBe(managedInstanceName('p', { schema: 'dbo', name: 'na_me_' }));
    expect(managedInstanceName('p', { schema: 'dbo', name: 'x'.repeat(300) }).length).toBeLessThanOrEqual(100);
  });
});

describe('batching in commit order', () => {
  const schema: TableSchema = {
    schema: 'dbo',
    name: 't',
    keyColumns: ['id'],
    columns: [{ name: 'id', type: { kind: 'int32' }, nullable: false }],
  };
  const source = () => new ChangeAssembler([{ schema, lobColumns: new Set() }]);
  /** `sizes[i]` rows in transaction i (start LSN 100 + i), inserts with increasing ids. */
  function transactions(sizes: number[]): ChangeRow[] {
    const rows: ChangeRow[] = [];
    let id = 0;
    sizes.forEach((size, tx) => {
      for (let n = 0; n < size; n++) rows.push(row(0, 100 + tx, 1, n + 1, 2, { id: id++ }));
    });
    return rows;
  }
  async function run(rows: ChangeRow[], limits: { batchRows: number; batchBytes?: number; pollRows: number }) {
    const queue = [...rows];
    const batches = commitOrderBatches(async () => queue.shift(), source(), {
      batchRows: limits.batchRows,
      batchBytes: limits.batchBytes ?? 1 << 30,
      pollRows: limits.pollRows,
      pollBytes: 1 << 30,
    });
    const yielded = [];
    for (;;) {
      const step = await batches.next();
      if (step.done) return { yielded, result: step.value, left: queue.length };
      yielded.push(step.value);
    }
  }
  const lsnOf = (p: string | undefined) => (p === undefined ? undefined : parseInt(decodePosition(p).startLsn, 16));

  it('puts a safe position only between transactions, at the end of the earlier one', async () => {
    const { yielded, result } = await run(transactions([3, 3, 3]), { batchRows: 2, pollRows: 1000 });
    for (const batch of yielded) {
      if (batch.safePosition === undefined) continue;
      const last = batch.events.at(-1)!;
      expect(lsnOf(batch.safePosition)).toBe(lsnOf(last.position));
    }
    // [0,1] and [2,3] are cut inside transactions (no safe position); [4,5] ends transaction 101.
    expect(yielded.map((b) => [b.events.map((e) => e.key.id), lsnOf(b.safePosition)])).toEqual([
      [[0, 1], undefined],
      [[2, 3], undefined],
      [[4, 5], 101],
      [[6, 7], undefined],
    ]);
    expect(result).toMatchObject({ backlog: false, lastLsn: L(102) });
    expect([...yielded.flatMap((b) => b.events), ...result.rest].map((e) => e.key.id)).toEqual([
      0, 1, 2, 3, 4, 5, 6, 7, 8,
    ]);
  });

  it('streams a large transaction in bounded batches without a safe position', async () => {
    const { yielded, result } = await run(transactions([2500]), { batchRows: 1000, pollRows: 100 });
    expect(yielded.map((b) => [b.events.length, b.safePosition])).toEqual([
      [1000, undefined],
      [1000, undefined],
    ]);
    expect(result.rest).toHaveLength(500);
    expect(result.backlog).toBe(false); // a poll never stops inside a transaction
  });

  it('stops a poll at the first transaction boundary after its row bound', async () => {
    const { result, left } = await run(transactions([4, 4, 4]), { batchRows: 100, pollRows: 5 });
    expect(result.backlog).toBe(true);
    expect(result.lastLsn).toBe(L(101));
    expect(result.rest.map((e) => e.key.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // The first row of the third transaction was looked at and is read again by the next poll.
    expect(left).toBe(3);
  });

  it('never separates an update pair across batches', async () => {
    const rows = [row(0, 100, 1, 1, 2, { id: 1 }), row(0, 100, 2, 2, 3, { id: 1 }), row(0, 100, 2, 2, 4, { id: 1 })];
    const { yielded, result } = await run(rows, { batchRows: 1, pollRows: 1000 });
    const all = [...yielded.flatMap((b) => b.events), ...result.rest];
    expect(all.map((e) => e.op)).toEqual(['insert', 'update']);
  });
});
