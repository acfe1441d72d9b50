import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError } from '../../src/errors.js';
import { ConfigError, parseConfig } from '../../src/host.js';
import type { ChangeEvent, TableSchema } from '../../src/model.js';
import { describeShapeChange, SchemaGuard, type SchemaGuardOptions } from '../../src/runtime/schema-changes.js';
import { openSqliteStateStore } from '../../src/state/sqlite.js';
import type { StateStore } from '../../src/state/store.js';
import { captureLogger } from './fixtures/in-memory.js';
import { baseConfig } from './config-fixtures.js';

const withOption = (line: string) => baseConfig.replace('    source:\n', `    ${line}\n    source:\n`);

describe('schema_changes config', () => {
  it('defaults to propagate and accepts pause and fail', () => {
    expect(parseConfig(baseConfig, { env: {} }).config.pipelines[0]!.schema_changes).toBe('propagate');
    for (const policy of ['propagate', 'pause', 'fail'])
      expect(
        parseConfig(withOption(`schema_changes: ${policy}`), { env: {} }).config.pipelines[0]!.schema_changes,
      ).toBe(policy);
  });

  it('refuses another value, naming the path, the line and the choices', () => {
    let error: unknown;
    try {
      parseConfig(withOption('schema_changes: pasue'), { env: {}, file: 'p.yaml' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const [issue] = (error as ConfigError).issues;
    expect(issue?.path).toBe('pipelines[0].schema_changes');
    expect(issue?.line).toBe(11);
    expect(issue?.message).toMatch(/must be one of propagate, pause, fail, found "pasue".*did you mean "pause"/);
  });

  it('warns that it does nothing on a snapshot pipeline', () => {
    const text = withOption('schema_changes: fail').replace(
      '    source:\n',
      '    replication_type: snapshot\n    source:\n',
    );
    const { warnings } = parseConfig(text, { env: {} });
    expect(warnings.some((w) => w.includes('schema_changes') && w.includes('no effect on a snapshot pipeline'))).toBe(
      true,
    );
  });
});

const table = (columns: [string, string][], key = ['id']): TableSchema => ({
  schema: 'public',
  name: 'items',
  columns: columns.map(([name, sourceType]) => ({
    name,
    sourceType,
    nullable: name !== 'id',
    type: { kind: sourceType === 'int8' ? 'int64' : sourceType === 'int4' ? 'int32' : 'string' },
  })),
  keyColumns: key,
});
const V1 = table([
  ['id', 'int4'],
  ['label', 'text'],
]);
const event = (t: TableSchema, position: string): ChangeEvent => ({
  op: 'insert',
  table: t,
  key: { id: 1 },
  after: { id: 1 },
  position,
});

describe('describeShapeChange', () => {
  it('names added, dropped, renamed and retyped columns and a redefined key', () => {
    const before = JSON.stringify({ columns: V1.columns.map((c) => [c.name, c.sourceType, c.type]), key: ['id'] });
    expect(
      describeShapeChange(
        before,
        table([...V1.columns.map((c) => [c.name, c.sourceType!] as [string, string]), ['note', 'text']]),
      ),
    ).toBe('column "note" added (text)');
    expect(describeShapeChange(before, table([['id', 'int4']]))).toBe('column "label" dropped');
    expect(
      describeShapeChange(
        before,
        table([
          ['id', 'int4'],
          ['title', 'text'],
        ]),
      ),
    ).toBe('column "label" renamed to "title"');
    expect(
      describeShapeChange(
        before,
        table([
          ['id', 'int8'],
          ['label', 'text'],
        ]),
      ),
    ).toBe('column "id" type int4 → int8');
    expect(describeShapeChange(before, { ...V1, keyColumns: ['id', 'label'] })).toBe('key (id) → (id, label)');
  });
});

describe('SchemaGuard', () => {
  const dirs: string[] = [];
  const stores: StateStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  async function store(): Promise<StateStore> {
    const dir = mkdtempSync(path.join(tmpdir(), 'ns-schema-'));
    dirs.push(dir);
    const s = await openSqliteStateStore(path.join(dir, 'state.sqlite'));
    stores.push(s);
    return s;
  }
  const options = (s: StateStore, policy: SchemaGuardOptions['policy'], startPosition = 'L0'): SchemaGuardOptions => ({
    pipeline: 'p',
    policy,
    store: s,
    startPosition,
    logger: captureLogger().logger,
    formatPosition: (p) => `pos ${p}`,
  });
  const V2 = table([
    ['id', 'int4'],
    ['label', 'text'],
    ['note', 'text'],
  ]);

  it('passes the described shape, and pauses at a new one naming the table, the change, the position and how to resume', async () => {
    const s = await store();
    const guard = await SchemaGuard.load(options(s, 'pause'), [V1]);
    const copy = { ...V1, columns: [...V1.columns] }; // another relation version with the same shape
    expect(guard.needsReview([event(copy, 'a')])).toBe(true);
    await guard.review([event(copy, 'a')]);
    expect(guard.needsReview([event(copy, 'b')])).toBe(false);
    const error = await guard.review([event(copy, 'c'), event(V2, 'd')]).catch((e: unknown) => e);
    expect(NanosyncError.is(error, ErrorCode.SchemaChangePaused)).toBe(true);
    expect((error as Error).message).toMatch(
      /table public\.items changed shape at pos d: column "note" added \(text\)\. Pipeline p is paused.*nanosync pipeline resume p/,
    );
    // Still unknown on a start without resume… (a server restart with the paused flag never starts it; this is the guard alone)
    // …and accepted on the next start, which only `resume` allows.
    const resumed = await SchemaGuard.load(options(s, 'pause'), [V2]);
    await resumed.review([event(V1, 'a'), event(V2, 'd')]);
    const V3 = table([['id', 'int4']]);
    await expect(resumed.review([event(V3, 'e')])).rejects.toThrow(/column "label" dropped; column "note" dropped/);
  });

  it('fail stops with its own code and the way out; propagate remembers every shape so a later pause passes replays', async () => {
    const s = await store();
    const failing = await SchemaGuard.load(options(s, 'fail'), [V1]);
    const error = await failing.review([event(V2, 'd')]).catch((e: unknown) => e);
    expect(NanosyncError.is(error, ErrorCode.SchemaChanged)).toBe(true);
    expect((error as Error).message).toMatch(
      /set schema_changes: propagate \(or pause\).*apply, then nanosync pipeline resume p/,
    );

    const propagating = await SchemaGuard.load(options(s, 'propagate'), [V1]);
    await propagating.review([event(V1, 'a'), event(V2, 'd')]);
    // Switched to pause afterwards: a replay of both shapes passes.
    const paused = await SchemaGuard.load(options(s, 'pause'), [V2]);
    await paused.review([event(V1, 'a'), event(V2, 'd')]);
  });

  it('a shape described at a later start is not taken as accepted (a change made while the pipeline was down is caught)', async () => {
    const s = await store();
    await SchemaGuard.load(options(s, 'pause'), [V1]);
    const later = await SchemaGuard.load(options(s, 'pause'), [V2]);
    await expect(later.review([event(V2, 'd')])).rejects.toThrow(/column "note" added/);
    // A pipeline created again (new start position) starts from what it describes.
    const fresh = await SchemaGuard.load(options(s, 'pause', 'L1'), [V2]);
    await fresh.review([event(V2, 'd')]);
  });
});
