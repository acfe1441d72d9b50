import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, startServing } from './cli-process.js';
import { CliTestContext, LITERAL_SECRET, uniqueName } from './fixtures.js';

const OTHER_SECRET = 'An0ther-S3cret-never-shown';

interface Spec {
  name: string;
  type: string;
  connection: string;
  tables: string[];
  out: string;
}

describe('nanosync plan', () => {
  it('says what apply would create, change field by field and leave, with what it implies, and applies nothing', async () => {
    await using ctx = await CliTestContext.create(5);
    await ctx.db.query('CREATE TABLE public.items (id int PRIMARY KEY, label text)');
    const other = new URL(ctx.dsnWithSecret);
    other.password = OTHER_SECRET;
    const [a, b, c, k] = [uniqueName('pa'), uniqueName('pb'), uniqueName('pc'), uniqueName('pk')];
    const config = (dsnB: string, specs: Spec[]) => `connections:
  - name: pgA
    type: postgres
    dsn: ${JSON.stringify(ctx.dsnWithSecret)}
  - name: pgB
    type: postgres
    dsn: ${JSON.stringify(dsnB)}
  - name: out
    type: file
    properties:
      path: ${JSON.stringify(ctx.outDir)}
pipelines:
${specs
  .map(
    (s) => `  - name: ${s.name}
    replication_type: ${s.type}
    source:
      connection: ${s.connection}
      tables: [${s.tables.join(', ')}]
    sink:
      connection: out
      properties:
        path: ${JSON.stringify(join(ctx.outDir, s.out))}
`,
  )
  .join('')}`;
    const v1 = config(ctx.dsnWithSecret, [
      { name: a, type: 'cdc', connection: 'pgA', tables: ['public.orders'], out: 'a' },
      { name: b, type: 'cdc_backfill', connection: 'pgB', tables: ['public.orders'], out: 'b' },
      { name: k, type: 'cdc', connection: 'pgA', tables: ['public.orders'], out: 'k' },
    ]);
    const v2 = config(other.toString(), [
      { name: a, type: 'cdc_backfill', connection: 'pgA', tables: ['public.orders', 'public.items'], out: 'a' },
      { name: b, type: 'cdc_backfill', connection: 'pgB', tables: ['public.orders'], out: 'b2' },
      { name: c, type: 'cdc', connection: 'pgA', tables: ['public.items'], out: 'c' },
    ]);
    await writeFile(join(ctx.dir, 'v1.yaml'), v1);
    await writeFile(join(ctx.dir, 'v2.yaml'), v2);

    const { proc, server } = await startServing(['serve', '--state', ctx.stateFile]);
    await using _server = proc;
    const cli = (...args: string[]) =>
      runCli([...args, '--server', server, '--state', ctx.stateFile], { cwd: ctx.dir });

    // Nothing on the server yet: every pipeline is created, and nothing is.
    const first = await cli('plan', '--file', 'v1.yaml');
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(first.stdout).toContain(`+ create ${a} (cdc)`);
    expect(first.stdout).toContain('implies: creates a replication slot and a publication on pgA');
    expect(first.stdout).toContain(
      'implies: streams changes of public.orders from the moment it starts; existing rows are not sent',
    );
    expect(first.stdout).toContain(`+ create ${b} (cdc_backfill)`);
    expect(first.stdout).toContain('implies: snapshots public.orders, then streams their changes');
    expect(first.stdout).toContain('3 to create, 0 to update, 0 unchanged. Nothing was applied.');
    expect(first.stdout).toContain('To apply: nanosync apply --file v1.yaml');
    expect(await ctx.slotsAndPublications()).toEqual({ slots: [], publications: [] });

    const applied = await cli('apply', '--file', 'v1.yaml');
    expect(applied.stdout).toContain(`${a} created`);
    expect((await cli('plan', '--file', 'v1.yaml')).stdout).toContain('0 to create, 0 to update, 3 unchanged.');
    expect((await cli('pipeline', 'pause', b)).code).toBe(0);

    const second = await cli('plan', '--file', 'v2.yaml');
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const out = second.stdout;
    // a: the type and the tables, field by field, and the re-snapshot they imply.
    expect(out).toContain(`~ update ${a} (cdc_backfill)`);
    expect(out).toContain('    replication_type: cdc → cdc_backfill');
    expect(out).toContain('    source.tables: ["public.orders"] → +public.items');
    expect(out).toContain('implies: the pipeline stops at a checkpoint and starts again with the new definition');
    expect(out).toContain(
      'implies: re-snapshot of public.orders, public.items; the slot is kept and the stream goes on',
    );
    // b: a password inside the DSN and the sink's folder; the secret is masked, its change named.
    expect(out).toContain(`~ update ${b} (cdc_backfill)`);
    expect(out).toMatch(
      / {4}connections\.pgB\.dsn: postgres:\/\/[^:]+:\*\*\*@[^ ]+ → postgres:\/\/[^:]+:\*\*\*@[^ ]+ \(secret changed\)/,
    );
    expect(out).toContain(`    sink.properties.path: ${join(ctx.outDir, 'b')} → ${join(ctx.outDir, 'b2')}`);
    expect(out).toContain('implies: the source reconnects with the new connection settings; nothing is read again');
    expect(out).toContain(
      'implies: sink out restarts with its new settings from its checkpoint; nothing is sent again',
    );
    expect(out).toContain('implies: the pipeline is paused: it stays paused and runs with the change once resumed');
    // c is new, k is only on the server.
    expect(out).toContain(`+ create ${c} (cdc)`);
    expect(out).toContain(`  keep ${k} (cdc): on the server, not in the file; apply leaves it`);
    expect(out).toContain('1 to create, 2 to update, 0 unchanged, 1 on the server only (kept). Nothing was applied.');
    expect(out + second.stderr).not.toContain(LITERAL_SECRET);
    expect(out + second.stderr).not.toContain(OTHER_SECRET);

    // The plan applied nothing: v1 is still what the server holds, and v2's apply does what the plan said.
    const again = await cli('apply', '--file', 'v1.yaml');
    expect(again.stdout.split('\n').filter((l) => l.endsWith(' unchanged'))).toHaveLength(3);
    const applied2 = await cli('apply', '--file', 'v2.yaml');
    expect(applied2.stdout).toContain(`${a} updated`);
    expect(applied2.stdout).toContain(`${b} updated`);
    expect(applied2.stdout).toContain(`${c} created`);
  });
});
