import type { Position } from '@nanosync/core';
import { describe, expect, it, vi } from 'vitest';
import { comparePositions, decodePosition } from '../../src/position.js';
import type { AttachMessage } from '../../src/stream/attach-snapshot.js';
import { expectOrderedBatches, ids, quoteIdent, streamPipeline } from './stream-helpers.js';

/**
 * A statement to run in the transaction that writes the next last-chunk high message, before
 * the message. Fault injection: that transaction's commit record then directly follows the
 * message in the WAL, which a concurrent writer's commit reaches only by chance (it did, once
 * in about fifty runs of partitioned.test.ts, and its insert was lost).
 */
const injected = vi.hoisted(() => ({ statement: undefined as string | undefined }));

vi.mock('../../src/stream/attach-snapshot.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/stream/attach-snapshot.js')>();
  const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;
  return {
    ...original,
    writeAttachMessages: async (
      client: Parameters<typeof original.writeAttachMessages>[0],
      prefix: string,
      messages: AttachMessage[],
    ) => {
      const statement = injected.statement;
      const lastHigh = messages.length === 1 && messages[0]?.attach === 'high' && messages[0].last === true;
      if (statement === undefined || !lastHigh) return original.writeAttachMessages(client, prefix, messages);
      injected.statement = undefined;
      await client.query(
        `BEGIN; ${statement}; SELECT pg_catalog.pg_logical_emit_message(false, ${literal(prefix)}, ${literal(JSON.stringify(messages[0]))}); COMMIT`,
      );
    },
  };
});

const ORDERS_DDL = [
  `CREATE TABLE public.orders (id int NOT NULL, created date NOT NULL, note text, PRIMARY KEY (id, created))
     PARTITION BY RANGE (created)`,
  `CREATE TABLE public.orders_01 PARTITION OF public.orders FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')`,
];
const orders = { schema: 'public', name: 'orders' };

describe('streamChanges: a transaction whose commit record directly follows a chunk’s high message', () => {
  it('is delivered after the chunk’s rows, by the stream that read the chunk and by one resumed at the chunk’s acknowledged position', async () => {
    await using p = await streamPipeline({ ddl: ORDERS_DDL, tables: [orders] });
    const prefix = `nanosync.watermark.${p.slot}`;
    // The injected insert runs on the chunk reader's connection, as the pipeline's role.
    await p.fx.admin.query(`GRANT INSERT ON public.orders TO ${quoteIdent(p.fx.role)}`);
    // The periodic catalog check finds the new leaf.
    const options = { watermarkPrefix: prefix, catalogCheckIntervalMs: 200 };
    const first = p.open(p.startPosition, options);
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (100, '2024-01-06', 'streamed')`);
    await first.waitFor(() => first.events.some((e) => e.after?.id === 100), 'the stream running');
    // Nothing from here on is acknowledged: the second stream gets it all again from the server.
    first.autoAcknowledge = false;

    // The layout needs no other WAL record between the message and the commit; tests running
    // at the same time on the same server can slip one in, so up to five partitions are
    // attached, each read with its own injected insert, until one gets it.
    const inserted: number[] = [];
    let hit: { id: number; chunkEnd: Position } | undefined;
    for (let attempt = 0; attempt < 5 && hit === undefined; attempt++) {
      const id = 200 + attempt;
      const month = String(attempt + 2).padStart(2, '0');
      const leaf = `orders_${month}`;
      const delivered = () =>
        p.logLines.filter((l) => l.includes('rows of an attached partition delivered') && l.includes('"last":true'))
          .length;
      const before = delivered();
      injected.statement = `INSERT INTO public.orders VALUES (${id}, '2024-01-08', 'committed right after the high message')`;
      await p.fx.admin.query(`CREATE TABLE public.${leaf} (LIKE public.orders INCLUDING ALL)`);
      await p.fx.admin.query(
        `INSERT INTO public.${leaf} SELECT g, '2024-${month}-03', 'brought' FROM generate_series(${id * 10}, ${id * 10 + 49}) g`,
      );
      await p.fx.admin.query(
        `ALTER TABLE public.orders ATTACH PARTITION public.${leaf} FOR VALUES FROM ('2024-${month}-01') TO ('2024-${String(attempt + 3).padStart(2, '0')}-01')`,
      );
      await first.waitFor(() => delivered() > before, `the attached partition ${leaf} read`);
      expect(injected.statement, 'the injected transaction ran').toBeUndefined();
      inserted.push(id);
      await first
        .waitFor(() => first.events.some((e) => e.after?.id === id), `the insert ${id}`, 10_000)
        .catch(() => {
          // Lost: the assertions below name it.
        });
      const reads = first.events.filter((e) => e.op === 'read' && String(e.after?.created).startsWith(`2024-${month}`));
      expect(ids(reads).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => id * 10 + i));
      const change = first.events.find((e) => e.op === 'insert' && e.after?.id === id);
      expect(change, `insert ${id}, committed right after the chunk's high message`).toBeDefined();
      expect(comparePositions(change!.position, reads.at(-1)!.position)).toBeGreaterThan(0);
      // The layout made: the insert's commit record starts where the message ends, one byte
      // after the LSN the chunk's rows take.
      if (decodePosition(change!.position).lsn === decodePosition(reads[0]!.position).lsn + 1n)
        hit = { id, chunkEnd: reads.at(-1)!.position };
    }
    expect(hit, 'a commit record directly after a high message, in five attempts').toBeDefined();
    expect(p.logLines.some((l) => l.includes('reading a chunk of rows for the stream failed'))).toBe(false);
    await p.fx.admin.query(`INSERT INTO public.orders VALUES (102, '2024-01-09', 'after')`);
    await first.waitFor(() => first.events.some((e) => e.after?.id === 102), 'a change after the chunks');
    expect(first.error).toBeUndefined();
    expect(ids(first.events.filter((e) => e.op !== 'read'))).toEqual([100, ...inserted, 102]);
    expectOrderedBatches(first.batches);

    // A restart right after the chunk's rows (the position its commit boundary had; nothing
    // after it acknowledged): the server sends everything again from the slot's start, and
    // the insert right after the message comes again.
    await first.stop();
    const secondFrom = p.logLines.length;
    const second = p.open(hit!.chunkEnd, options);
    await second.waitFor(() => second.events.some((e) => e.after?.id === 102), 'the changes after the chunk');
    expect(second.error).toBeUndefined();
    expect(ids(second.events)).toEqual([hit!.id, 102]);
    expect(p.logLines.slice(secondFrom).some((l) => l.includes('reading again a chunk'))).toBe(false);
    expectOrderedBatches(second.batches);
  });
});
