import type { CheckResult } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { pgFixture, uniqueName } from './fixture.js';

const t = (name: string) => ({ schema: 'public', name });
const failures = (results: CheckResult[]) => results.filter((r) => !r.ok);
const byName = (results: CheckResult[], name: string) => results.find((r) => r.name === name);

describe('check()', () => {
  it('passes for the least-privilege role on a prepared database, warning only about unlimited WAL retention', async () => {
    await using fx = await pgFixture();
    await fx.admin.query('CREATE TABLE public.good (id int PRIMARY KEY)');
    await fx.grantRead([t('good')]);
    const pipeline = uniqueName('chk');
    await fx.preparePublication(pipeline, [t('good')]);
    const source = await fx.source(pipeline);
    const results = await source.check([t('good')]);
    expect(failures(results).map((r) => r.name)).toEqual(['max_slot_wal_keep_size']);
    expect(byName(results, 'max_slot_wal_keep_size')).toMatchObject({
      severity: 'warning',
      fix: expect.stringContaining('ALTER SYSTEM SET max_slot_wal_keep_size'),
    });
    for (const name of [
      'server_version',
      'wal_level',
      'replication_role',
      'replication_slot',
      'publication',
      'select "public"."good"',
      'replica_identity "public"."good"',
    ]) {
      expect(byName(results, name)?.ok).toBe(true);
    }
    const slots = await fx.admin.query('SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1', [
      source.slotName,
    ]);
    expect(slots.rows[0].n).toBe(0);
  });

  it('names each missing privilege with the SQL that fixes it', async () => {
    await using fx = await pgFixture({ roleAttributes: 'NOREPLICATION' });
    await fx.admin.query('CREATE TABLE public.unreadable (id int PRIMARY KEY)');
    await fx.admin.query('CREATE TABLE public.nokey (v text)');
    await fx.admin.query('CREATE TABLE public.secret (id int PRIMARY KEY, owner text)');
    await fx.admin.query('ALTER TABLE public.secret ENABLE ROW LEVEL SECURITY');
    await fx.admin.query('CREATE TABLE public.fullid (v text)');
    await fx.admin.query('ALTER TABLE public.fullid REPLICA IDENTITY FULL');
    await fx.grantRead([t('nokey'), t('secret'), t('fullid')]);
    const source = await fx.source(uniqueName('chk'));
    const results = await source.check([t('unreadable'), t('nokey'), t('secret'), t('fullid'), t('ghost')]);
    const role = `"${fx.role}"`;

    expect(byName(results, 'replication_role')).toMatchObject({ ok: false, fix: `ALTER ROLE ${role} REPLICATION;` });
    expect(byName(results, 'select "public"."unreadable"')).toMatchObject({
      ok: false,
      message: expect.stringContaining('no SELECT privilege on "public"."unreadable"'),
      fix: `GRANT SELECT ON "public"."unreadable" TO ${role};`,
    });
    expect(byName(results, 'replica_identity "public"."nokey"')).toMatchObject({
      ok: false,
      fix: expect.stringContaining('ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL;'),
    });
    expect(byName(results, 'replica_identity "public"."fullid"')?.ok).toBe(true);
    expect(byName(results, 'row_security "public"."secret"')).toMatchObject({
      ok: false,
      fix: `ALTER ROLE ${role} BYPASSRLS;`,
    });
    expect(byName(results, 'table "public"."ghost"')).toMatchObject({
      ok: false,
      message: expect.stringContaining('"public"."ghost" does not exist'),
    });
    for (const failure of failures(results)) {
      if (failure.name.startsWith('table ') || failure.name === 'publication') continue;
      expect(failure.fix, failure.name).toBeTruthy();
    }
  });

  it('reports that the role cannot create the publication, and the owner SQL to run', async () => {
    await using fx = await pgFixture();
    await fx.admin.query('CREATE TABLE public.good (id int PRIMARY KEY)');
    await fx.grantRead([t('good')]);
    const source = await fx.source(uniqueName('chk'));
    const results = await source.check([t('good')]);
    expect(byName(results, 'publication')).toMatchObject({
      ok: false,
      fix: `CREATE PUBLICATION "${source.publicationName}" FOR TABLE "public"."good" WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true); ALTER PUBLICATION "${source.publicationName}" OWNER TO "${fx.role}";`,
    });
  });

  it('reports a connection failure as one result instead of throwing', async () => {
    await using fx = await pgFixture();
    const source = await fx.source(uniqueName('chk'), { password: 'wrong', port: 1 });
    const results = await source.check([t('x')]);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ name: 'connection', ok: false });
    expect(results[0]!.message).not.toContain(fx.rolePassword);
  });
});
