import { type DriverChange, registerSourceTests } from '@nanosync/connector-testkit';
import type { TableRef } from '@nanosync/core';
import type pg from 'pg';
import { type PgFixture, pgFixture, quoteTable } from './fixture.js';

/** One statement per run of consecutive inserts into the same table; others one by one. */
async function apply(client: pg.Client, changes: DriverChange[]): Promise<void> {
  for (let i = 0; i < changes.length; ) {
    const change = changes[i]!;
    if (change.op === 'insert') {
      const rows = [];
      while (i < changes.length) {
        const next = changes[i]!;
        if (next.op !== 'insert' || quoteTable(next.table) !== quoteTable(change.table)) break;
        rows.push(next.row);
        i++;
      }
      await client.query(
        `INSERT INTO ${quoteTable(change.table)} (id, note, qty) SELECT * FROM unnest($1::int[], $2::text[], $3::int[])`,
        [rows.map((r) => r.id), rows.map((r) => r.note), rows.map((r) => r.qty)],
      );
      continue;
    }
    i++;
    if (change.op === 'update') {
      const columns = Object.keys(change.set);
      await client.query(
        `UPDATE ${quoteTable(change.table)} SET ${columns.map((c, n) => `${c} = $${n + 2}`).join(', ')} WHERE id = $1`,
        [change.key.id, ...columns.map((c) => change.set[c as keyof typeof change.set])],
      );
    } else if (change.op === 'delete') {
      await client.query(`DELETE FROM ${quoteTable(change.table)} WHERE id = $1`, [change.key.id]);
    } else {
      await client.query(`TRUNCATE ${quoteTable(change.table)}`);
    }
  }
}

// The source runs as the least-privilege role (LOGIN REPLICATION, SELECT on the tables); the
// driver makes changes as the database owner.
registerSourceTests(
  async () => {
    const fx: PgFixture = await pgFixture();
    const published = new Set<string>();
    return {
      schema: 'public',
      driver: {
        async createTable(table: TableRef) {
          await fx.admin.query(`CREATE TABLE ${quoteTable(table)} (id int PRIMARY KEY, note text, qty int)`);
          await fx.grantRead([table]);
        },
        async transaction(changes) {
          await fx.admin.query('BEGIN');
          try {
            await apply(fx.admin, changes);
            await fx.admin.query('COMMIT');
          } catch (error) {
            await fx.admin.query('ROLLBACK').catch(() => undefined);
            throw error;
          }
        },
        async rows(table) {
          return (await fx.admin.query(`SELECT id, note, qty FROM ${quoteTable(table)}`)).rows;
        },
      },
      async createSource(pipeline, tables) {
        if (!published.has(pipeline)) {
          await fx.preparePublication(pipeline, tables);
          published.add(pipeline);
        }
        return fx.source(pipeline);
      },
      dispose: () => fx[Symbol.asyncDispose](),
    };
  },
  { name: 'postgres', exportsSnapshot: true, truncate: true },
);
