import { describe, expect, it } from 'vitest';
import { pipelineRow } from './e2e/harness.js';
import { waitFor } from './e2e/scenario.js';
import { reduceByKey, TablesScenario, tableState } from './e2e/tables.js';

const ITEMS = { schema: 'public', name: 'items' };
const DDL = [
  'CREATE TABLE public.items (id int PRIMARY KEY, label text)',
  `INSERT INTO public.items SELECT g, 'seed' FROM generate_series(1, 50) g`,
];

describe('schema_changes', () => {
  it('pause: a column added while streaming stops the pipeline in PAUSED, naming the table and the change, before anything of the new shape is written; resume accepts it and nothing is lost', async () => {
    await using s = await TablesScenario.create({ ddl: DDL, tables: [ITEMS], schemaChanges: 'pause' });
    const proc = s.spawn();
    await s.waitState(proc, 'LIVE_CDC');
    const admin = s.fx.admin;
    // Same shape as described at the start: streams.
    await admin.query(`INSERT INTO public.items VALUES (100, 'before')`);
    await waitFor(async () => (await s.lines()).some((l) => l.op === 'insert' && l.key.id === 100), 'row 100', proc);

    await admin.query(`ALTER TABLE public.items ADD COLUMN note text DEFAULT 'n'`);
    await admin.query(`INSERT INTO public.items VALUES (101, 'after', 'x')`);
    const paused = await s.waitState(proc, 'PAUSED');
    expect(paused).toMatch(/table public\.items changed shape at [0-9A-F]+\/[0-9A-F]+.*: column "note" added \(text\)/);
    expect(paused).toContain(`nanosync pipeline resume ${s.pipeline}`);
    expect(pipelineRow(s.work.stateFile, s.pipeline)?.state).toBe('PAUSED');
    // Committed while paused, in the new shape.
    await admin.query(`UPDATE public.items SET note = 'changed' WHERE id = 100`);
    await admin.query(`INSERT INTO public.items VALUES (102, 'while paused', 'y')`);
    const atPause = await s.lines();
    expect(atPause.some((l) => l.key.id === 101 || l.key.id === 102)).toBe(false);
    expect(atPause.some((l) => l.after !== undefined && 'note' in l.after)).toBe(false);

    proc.kill('SIGUSR2'); // nanosync pipeline resume
    await waitFor(async () => (await s.lines()).some((l) => l.op === 'insert' && l.key.id === 102), 'row 102', proc);
    const lines = await s.lines();
    expect(lines.find((l) => l.op === 'insert' && l.key.id === 101)?.after).toEqual({
      id: 101,
      label: 'after',
      note: 'x',
    });
    // Every row is there; the ones written since the change carry its shape (rows untouched
    // since ADD COLUMN get no event, so a consumer holds them without the column).
    const held = reduceByKey(lines).get('public.items') ?? new Map();
    const expected = await tableState(admin, ITEMS, ['id']);
    expect([...held.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const id of [100, 101, 102]) {
      const key = JSON.stringify({ id });
      expect(held.get(key), `row ${id}`).toEqual(expected.get(key));
    }
    expect(proc.logLines('schema change accepted on resume').length).toBe(1);
  });

  it('fail: a dropped column stops the pipeline in ERRORED with the way out; the slot and publication stay, nothing of the new shape is written', async () => {
    await using s = await TablesScenario.create({ ddl: DDL, tables: [ITEMS], schemaChanges: 'fail' });
    const proc = s.spawn();
    await s.waitState(proc, 'LIVE_CDC');
    const admin = s.fx.admin;
    await admin.query(`INSERT INTO public.items VALUES (100, 'before')`);
    await waitFor(async () => (await s.lines()).some((l) => l.op === 'insert' && l.key.id === 100), 'row 100', proc);
    await admin.query('ALTER TABLE public.items DROP COLUMN label');
    await admin.query('INSERT INTO public.items VALUES (101)');
    const errored = await s.waitState(proc, 'ERRORED');
    expect(errored).toMatch(/table public\.items changed shape at .*: column "label" dropped/);
    expect(errored).toMatch(/set schema_changes: propagate \(or pause\).*apply, then nanosync pipeline resume/);
    expect((await s.lines()).some((l) => l.key.id === 101)).toBe(false);
    // Not a failed first start: what the pipeline created stays, so it can carry on from its checkpoint.
    expect((await s.leftovers()).sort()).toEqual([`publication ${s.publication}`, `slot ${s.slot}`]);
  });
});
