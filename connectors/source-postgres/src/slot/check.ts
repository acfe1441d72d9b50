import type { CheckResult, TableRef } from '@nanosync/core';
import { lostRange, quoteIdent, quoteTable } from '../errors.js';
import type { Queryable } from '../types/index.js';
import { createPublicationSql, publicationChanges, readPublication } from './publication.js';
import { describeMissingIdentity, findMissingIdentity } from './replica-identity.js';
import { readSlot, serverWalPosition } from './replication-slot.js';

interface RoleRow {
  user: string;
  database: string;
  rolreplication: string;
  rolsuper: string;
  rolbypassrls: string;
  can_create: string;
  wal_level: string;
  max_slots: string;
  used_slots: string;
  max_senders: string;
  used_senders: string;
  keep_size: string;
  version_num: string;
  version: string;
}

interface TableRow {
  exists: string;
  kind: string | null;
  schema_usage: string | null;
  can_select: string | null;
  has_pk: string | null;
  replident: string | null;
  has_replident_index: string | null;
  rls: string | null;
  rls_forced: string | null;
  is_owner: string | null;
}

const ok = (name: string, message: string): CheckResult => ({ name, ok: true, message });
const bad = (name: string, message: string, fix?: string, severity: 'error' | 'warning' = 'error'): CheckResult =>
  fix === undefined ? { name, ok: false, message, severity } : { name, ok: false, message, fix, severity };

/** The oldest PostgreSQL release the source supports (`server_version_num`). */
export const MIN_SERVER_VERSION_NUM = 140000;

/**
 * PostgreSQL 14 or later: the snapshot's watermarks are logical messages, which pgoutput
 * sends from 14 on (its `messages` option), and streaming relies on 14's pgoutput.
 */
export function serverVersionCheck(versionNum: number, version: string): CheckResult {
  if (Number.isFinite(versionNum) && versionNum >= MIN_SERVER_VERSION_NUM)
    return ok('server_version', `PostgreSQL ${version} (14 or later is required)`);
  return bad(
    'server_version',
    `PostgreSQL ${version} is not supported: nanosync needs PostgreSQL 14 or later (pgoutput sends the logical messages its snapshot watermarks are made of only from 14 on)`,
    'upgrade the server to PostgreSQL 14 or later (pg_upgrade, or logical replication into a newer server)',
  );
}

/**
 * Preflight for a pipeline: read-only queries, one result per thing that can stop it,
 * each failure with the SQL that fixes it.
 */
export async function runChecks(
  client: Queryable,
  opts: { tables: TableRef[]; slot: string; publication: string },
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const { rows } = await client.query(
    `SELECT current_user::text AS user, current_database()::text AS database,
            r.rolreplication::text AS rolreplication, r.rolsuper::text AS rolsuper, r.rolbypassrls::text AS rolbypassrls,
            has_database_privilege(current_database(), 'CREATE')::text AS can_create,
            current_setting('wal_level') AS wal_level,
            current_setting('max_replication_slots') AS max_slots,
            (SELECT count(*) FROM pg_catalog.pg_replication_slots)::text AS used_slots,
            current_setting('max_wal_senders') AS max_senders,
            (SELECT count(*) FROM pg_catalog.pg_stat_replication)::text AS used_senders,
            current_setting('max_slot_wal_keep_size') AS keep_size,
            current_setting('server_version_num') AS version_num, current_setting('server_version') AS version
       FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`,
  );
  const role = rows[0] as unknown as RoleRow;
  const user = quoteIdent(role.user);
  const superuser = role.rolsuper === 'true';

  results.push(serverVersionCheck(Number(role.version_num), role.version));

  results.push(
    role.wal_level === 'logical'
      ? ok('wal_level', 'wal_level is logical')
      : bad(
          'wal_level',
          `wal_level is ${role.wal_level}; logical decoding needs logical`,
          "ALTER SYSTEM SET wal_level = 'logical'; -- then restart PostgreSQL",
        ),
  );

  results.push(
    role.rolreplication === 'true' || superuser
      ? ok('replication_role', `role ${user} has the REPLICATION attribute`)
      : bad(
          'replication_role',
          `role ${user} lacks the REPLICATION attribute needed to create and read a replication slot`,
          `ALTER ROLE ${user} REPLICATION;`,
        ),
  );

  const slotInfo = await readSlot(client, opts.slot);
  if (slotInfo) {
    results.push(
      slotInfo.wal_status === 'lost'
        ? bad(
            'replication_slot',
            // The slot's confirmed position is the checkpoint it was last told of.
            `replication slot "${opts.slot}" exists but was invalidated (wal_status: lost); ${lostRange(slotInfo.confirmed_flush_lsn ?? undefined, await serverWalPosition(client))} can no longer be read; the pipeline must be re-snapshotted`,
            `SELECT pg_drop_replication_slot('${opts.slot}'); -- then delete and re-apply the pipeline`,
          )
        : ok(
            'replication_slot',
            `replication slot "${opts.slot}" exists (wal_status: ${slotInfo.wal_status ?? 'unknown'})`,
          ),
    );
  } else {
    const free = Number(role.max_slots) - Number(role.used_slots);
    results.push(
      free > 0
        ? ok('replication_slot', `${free} of ${role.max_slots} replication slots free`)
        : bad(
            'replication_slot',
            `no free replication slot: ${role.used_slots} of max_replication_slots=${role.max_slots} are used`,
            `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active AND slot_name = '<unused slot>'; -- or: ALTER SYSTEM SET max_replication_slots = ${Number(role.max_slots) + 4}; then restart PostgreSQL`,
          ),
    );
  }
  const freeSenders = Number(role.max_senders) - Number(role.used_senders);
  results.push(
    freeSenders > 0
      ? ok('wal_senders', `${freeSenders} of ${role.max_senders} WAL senders free`)
      : bad(
          'wal_senders',
          `no free WAL sender: max_wal_senders=${role.max_senders} are all in use`,
          `ALTER SYSTEM SET max_wal_senders = ${Number(role.max_senders) + 4}; -- then restart PostgreSQL`,
        ),
  );

  results.push(
    role.keep_size === '-1'
      ? bad(
          'max_slot_wal_keep_size',
          'max_slot_wal_keep_size is -1: a stopped or slow pipeline makes the server keep WAL without limit and can fill the disk',
          "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf(); -- size it to the disk",
          'warning',
        )
      : ok('max_slot_wal_keep_size', `max_slot_wal_keep_size is ${role.keep_size}`),
  );

  let allTablesUsable = true;
  const ownsAll: boolean[] = [];
  for (const table of opts.tables) {
    const name = quoteTable(table);
    const t = (
      await client.query(
        `SELECT (c.oid IS NOT NULL)::text AS exists, c.relkind::text AS kind,
                has_schema_privilege(n.oid, 'USAGE')::text AS schema_usage,
                has_table_privilege(c.oid, 'SELECT')::text AS can_select,
                EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)::text AS has_pk,
                c.relreplident::text AS replident,
                EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)::text AS has_replident_index,
                c.relrowsecurity::text AS rls, c.relforcerowsecurity::text AS rls_forced,
                pg_has_role(c.relowner, 'USAGE')::text AS is_owner
           FROM (SELECT 1) one
           LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1
           LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
        [table.schema, table.name],
      )
    ).rows[0] as unknown as TableRow;
    if (t.exists !== 'true') {
      allTablesUsable = false;
      results.push(
        bad(`table ${name}`, `table ${name} does not exist in database "${role.database}" (names are case-sensitive)`),
      );
      continue;
    }
    ownsAll.push(t.is_owner === 'true');
    if (t.schema_usage !== 'true') {
      allTablesUsable = false;
      results.push(
        bad(
          `usage ${quoteIdent(table.schema)}`,
          `role ${user} has no USAGE on schema ${quoteIdent(table.schema)}`,
          `GRANT USAGE ON SCHEMA ${quoteIdent(table.schema)} TO ${user};`,
        ),
      );
    }
    results.push(
      t.can_select === 'true'
        ? ok(`select ${name}`, `role ${user} may SELECT from ${name}`)
        : bad(
            `select ${name}`,
            `role ${user} has no SELECT privilege on ${name}`,
            `GRANT SELECT ON ${name} TO ${user};`,
          ),
    );
    if (t.can_select !== 'true') allTablesUsable = false;
    const missing = await findMissingIdentity(client, [table]);
    if (missing.length === 0) {
      results.push(
        ok(
          `replica_identity ${name}`,
          `${name} has ${t.replident === 'f' ? 'REPLICA IDENTITY FULL' : t.replident === 'i' ? 'a replica identity index' : 'a primary key'}${t.kind === 'p' ? ', and so do its partitions' : ''}`,
        ),
      );
    } else {
      allTablesUsable = false;
      for (const m of missing) {
        const { message, fix } = describeMissingIdentity(m);
        results.push(bad(`replica_identity ${quoteTable(m.relation)}`, message, fix));
      }
    }
    const rlsApplies =
      t.rls === 'true' &&
      !superuser &&
      role.rolbypassrls !== 'true' &&
      (t.is_owner !== 'true' || t.rls_forced === 'true');
    results.push(
      rlsApplies
        ? bad(
            `row_security ${name}`,
            `row-level security is enabled on ${name} and role ${user} does not bypass it: the snapshot would silently miss rows the policies hide`,
            `ALTER ROLE ${user} BYPASSRLS;`,
          )
        : ok(
            `row_security ${name}`,
            t.rls === 'true'
              ? `row-level security on ${name} is bypassed by role ${user}`
              : `no row-level security on ${name}`,
          ),
    );
  }

  const pub = await readPublication(client, opts.publication);
  const wanted = createPublicationSql(opts.publication, opts.tables);
  if (pub.allTables) {
    results.push(
      bad(
        'publication',
        `publication "${opts.publication}" is FOR ALL TABLES; nanosync needs a FOR TABLE publication`,
        `DROP PUBLICATION ${quoteIdent(opts.publication)}; ${wanted};`,
      ),
    );
  } else if (allTablesUsable) {
    const changes = publicationChanges(opts.publication, opts.tables, pub);
    const membershipChanges = changes.filter((sql) => !sql.includes(' SET ('));
    const ownsPublication = pub.exists && pub.owned;
    const canManage =
      superuser ||
      (membershipChanges.length === 0 && ownsPublication) ||
      (ownsAll.every(Boolean) && (pub.exists || role.can_create === 'true'));
    if (changes.length === 0)
      results.push(ok('publication', `publication "${opts.publication}" lists exactly the pipeline's tables`));
    else if (canManage)
      results.push(
        ok('publication', `publication "${opts.publication}" will be ${pub.exists ? 'altered' : 'created'} at start`),
      );
    else {
      const sql = pub.exists
        ? `${changes.join('; ')};`
        : `${wanted}; ALTER PUBLICATION ${quoteIdent(opts.publication)} OWNER TO ${user};`;
      results.push(
        bad(
          'publication',
          `publication "${opts.publication}" ${pub.exists ? 'does not list exactly the pipeline tables' : 'does not exist'} and role ${user} cannot ${pub.exists ? 'change' : 'create'} it (adding a table needs ownership of the table${pub.exists ? '' : ' and CREATE on the database'}); run as a table owner`,
          sql,
        ),
      );
    }
  }
  return results;
}
