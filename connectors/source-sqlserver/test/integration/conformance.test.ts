import { type DriverChange, registerSourceTests } from '@nanosync/connector-testkit';
import type { TableRef } from '@nanosync/core';
import type sql from 'mssql';
import { liveSkip, type MssqlFixture, mssqlFixture, quoteTable } from './fixture.js';

async function apply(tx: sql.Transaction, changes: DriverChange[]): Promise<void> {
  for (const change of changes) {
    const request = tx.request();
    if (change.op === 'insert') {
      request.input('id', change.row.id).input('note', change.row.note).input('qty', change.row.qty);
      await request.query(`INSERT INTO ${quoteTable(change.table)} (id, note, qty) VALUES (@id, @note, @qty)`);
    } else if (change.op === 'update') {
      const columns = Object.keys(change.set);
      request.input('id', change.key.id);
      columns.forEach((c, n) => {
        request.input(`v${n}`, change.set[c as keyof typeof change.set]);
      });
      await request.query(
        `UPDATE ${quoteTable(change.table)} SET ${columns.map((c, n) => `[${c}] = @v${n}`).join(', ')} WHERE id = @id`,
      );
    } else if (change.op === 'delete') {
      await request.input('id', change.key.id).query(`DELETE FROM ${quoteTable(change.table)} WHERE id = @id`);
    } else {
      await request.query(`DELETE FROM ${quoteTable(change.table)}`);
    }
  }
}

// manage_cdc: the source enables CDC on the kit's tables at open and disables it at drop, so
// a dropped pipeline really has nothing left to resume from.
registerSourceTests(
  async () => {
    const fx: MssqlFixture = await mssqlFixture();
    return {
      schema: 'dbo',
      driver: {
        async createTable(table: TableRef) {
          await fx.exec(`CREATE TABLE ${quoteTable(table)} (id int PRIMARY KEY, note nvarchar(max), qty int)`);
        },
        async transaction(changes) {
          const tx = fx.admin.transaction();
          await tx.begin();
          try {
            await apply(tx, changes);
            await tx.commit();
          } catch (error) {
            await tx.rollback().catch(() => undefined);
            throw error;
          }
        },
        async rows(table) {
          return (await fx.admin.request().query(`SELECT id, note, qty FROM ${quoteTable(table)}`)).recordset;
        },
      },
      createSource: (pipeline) => fx.source(pipeline, { manage_cdc: true }),
      dispose: () => fx[Symbol.asyncDispose](),
    };
  },
  { name: 'sqlserver', skip: await liveSkip(), exportsSnapshot: false, truncate: false },
);
