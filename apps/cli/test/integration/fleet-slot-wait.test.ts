/**
 * A server that takes a pipeline over keeps its lease while the pipeline's start waits for
 * its replication slot (another process has it active): real `nanosync serve` processes on
 * a PostgreSQL state store, a real PostgreSQL source, a file sink. Nothing is asserted on time.
 */
import type { PipelineStatus } from '@nanosync/core/host';
import { readJsonLines } from '@nanosync/sink-file';
import { renderToString } from 'ink';
import pg from 'pg';
import { createElement } from 'react';
import { describe, expect, it } from 'vitest';
import { DashboardView } from '../../src/monitor/dashboard.js';
import { INITIAL_NAVIGATION } from '../../src/monitor/navigation.js';
import { eventually } from './cli-process.js';
import { Fleet, TABLE } from './fleet-fixtures.js';

/**
 * A replication connection of the test's own with the slot active, as a frozen server's
 * walsender or `pg_recvlogical` would have it; it confirms nothing, so the slot does not
 * move. Ends (and frees the slot) when disposed.
 */
async function holdSlot(url: string, slot: string, publication: string): Promise<{ pid: number } & AsyncDisposable> {
  const client = new pg.Client({ connectionString: url, replication: 'database' } as pg.ClientConfig);
  client.on('error', () => {});
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  // Resolves only when replication ends; the copy data it receives is dropped.
  client
    .query(`START_REPLICATION SLOT "${slot}" LOGICAL 0/0 (proto_version '1', publication_names '"${publication}"')`)
    .catch(() => {});
  return {
    pid: rows[0]!.pid,
    [Symbol.asyncDispose]: async () => {
      (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      await client.end().catch(() => {});
    },
  };
}

describe('a server starting a pipeline whose replication slot another process holds', () => {
  it('keeps its lease (same holder and epoch, renewed) for more than three lease times while the start waits, is WAITING (not LIVE_CDC) in status, list, metrics, Prometheus and monitor with what it waits for (slot and pid), then streams every row written meanwhile once', async () => {
    await using fleet = await Fleet.create({ pipelines: 1, rows: 50 });
    const [pipeline] = fleet.pipelines as [string];
    const slot = fleet.slotOf(pipeline);
    const ttlSeconds = 3;
    const a = await fleet.startServer('first-a', ttlSeconds);
    await fleet.apply(a);
    await eventually(async () => ((await fleet.slotOwner(pipeline)) === 'first-a' ? true : undefined), 'A streaming');
    fleet.writer.start();
    await fleet.writer.more(10);
    await fleet.writer.stop();
    await fleet.drainAll(9_000_001);

    // A stops cleanly (checkpoint, acknowledgement, lease released); the slot goes to the test.
    a.proc.kill('SIGTERM');
    expect((await a.proc.exited).code).toBe(0);
    await eventually(
      async () => ((await fleet.slots()).get(slot)?.activePid === null ? true : undefined),
      'A’s walsender to let the slot go',
    );
    const seen = fleet.writer.changes.length;
    let released = false;
    {
      await using holder = await holdSlot(fleet.sourceUrl, slot, `nanosync_pub_${pipeline}`);
      await eventually(
        async () => ((await fleet.slots()).get(slot)?.activePid === holder.pid ? true : undefined),
        'the test’s connection to have the slot',
      );
      fleet.writer.start();
      await fleet.writer.more(10);

      const b = await fleet.startServer('starting-b', ttlSeconds);
      const taken = await eventually(async () => {
        const lease = await fleet.leaseRow(pipeline);
        return lease?.holder === 'starting-b' && lease.valid ? lease : undefined;
      }, 'B to take the lease');
      const waiting = await eventually(async () => {
        const status = (await fleet.list(b)).find((p) => p.name === pipeline);
        return status?.waitingFor?.includes(`pid ${holder.pid}`) ? status.waitingFor : undefined;
      }, 'B’s status to say what its start waits for');
      expect(waiting).toContain(`replication slot "${slot}" is in use by another process (pid ${holder.pid}`);
      expect(b.proc.output).toContain('waiting for the replication slot');

      // The state says it waits (never LIVE_CDC while the stream does not run), wherever an
      // operator looks: the status API, `list pipelines`, `metrics pipeline`, Prometheus and
      // `monitor` (its view drawn from the server's own answer), each with what holds the slot.
      const statuses = (await fleet.list(b)) as unknown as PipelineStatus[];
      const shown = statuses.find((p) => p.name === pipeline)!;
      expect(shown.state).toBe('WAITING');
      expect(shown.server).toBe('starting-b');
      const listed = await fleet.listText(b);
      expect(listed).toMatch(new RegExp(`^${pipeline}\\s+WAITING\\s`, 'm'));
      expect(listed).toContain(
        `${pipeline}: waiting for source: replication slot "${slot}" is in use by another process (pid ${holder.pid}`,
      );
      const report = await fleet.metricsText(b, pipeline);
      expect(report).toMatch(/state\s+WAITING \(/);
      expect(report).toMatch(new RegExp(`waits for\\s+source: replication slot "${slot}" .*pid ${holder.pid}`));
      const scrape = await fleet.scrape(b);
      expect(scrape).toContain(`ns_pipeline_state{pipeline="${pipeline}",state="WAITING"} 1`);
      expect(scrape).toContain(`ns_pipeline_state{pipeline="${pipeline}",state="LIVE_CDC"} 0`);
      const monitor = renderToString(
        createElement(DashboardView, {
          state: { pipelines: statuses, updatedAt: new Date() },
          navigation: INITIAL_NAVIGATION,
          server: b.url,
          intervalMs: 1000,
        }),
        { columns: 240 },
      );
      expect(monitor).toMatch(new RegExp(`${pipeline}\\s+WAITING\\s`));
      expect(monitor).toContain(
        `⏸ ${pipeline}: waiting for source: replication slot "${slot}" is in use by another process (pid ${holder.pid}`,
      );

      // Another server of the fleet, which does not run the pipeline, lists it WAITING too (stored).
      const observer = await fleet.startServer('observer-c', ttlSeconds);
      const seen = await eventually(async () => {
        const listed = (await fleet.list(observer)).find((p) => p.name === pipeline);
        return listed?.state === 'WAITING' ? listed : undefined;
      }, 'the other server to list it WAITING');
      expect(seen.server).toBe('starting-b');

      // While the slot stays held, B renews: same holder and epoch, never expired, the
      // expiry carried past three lease times after the one it took.
      const problems: string[] = [];
      await eventually(async () => {
        const lease = await fleet.leaseRow(pipeline);
        if (lease === undefined || lease.holder !== 'starting-b' || lease.epoch !== taken.epoch || !lease.valid)
          problems.push(`lease while the slot was held: ${JSON.stringify(lease)}`);
        if (problems.length > 0) return 'failed';
        return lease!.expiresAt.getTime() > taken.expiresAt.getTime() + 3 * ttlSeconds * 1000 ? 'renewed' : undefined;
      }, 'B’s lease to be renewed past three lease times');
      expect(problems).toEqual([]);
      expect((await fleet.slots()).get(slot)?.activePid, 'the slot was held throughout').toBe(holder.pid);
      released = true;
    }
    expect(released).toBe(true);

    // Freed: B's stream takes the slot, under the same lease, and nothing waits any more.
    await eventually(
      async () => ((await fleet.slotOwner(pipeline)) === 'starting-b' ? true : undefined),
      'B streaming',
    );
    await fleet.writer.more(10);
    await fleet.writer.stop();
    await fleet.drainAll(9_000_002);
    const status = (await fleet.list(fleet.servers[1]!)).find((p) => p.name === pipeline);
    expect(status).toMatchObject({ state: 'LIVE_CDC', server: 'starting-b' });
    expect(status?.waitingFor).toBeUndefined();
    await eventually(async () => {
      const seen = (await fleet.list(fleet.servers[2]!)).find((p) => p.name === pipeline);
      return seen?.state === 'LIVE_CDC' ? true : undefined;
    }, 'the other server to list it LIVE_CDC again');
    expect(fleet.servers[1]!.proc.output).toContain('replication slot is free again');
    expect(fleet.servers[1]!.proc.output).not.toMatch(/lost the pipeline lease|lease expired and was taken again/);

    await fleet.oracle(pipeline);
    // Every insert the writer made after A stopped (while the slot was held, and after) is in
    // the sink exactly once.
    const records = await readJsonLines(fleet.sinkFile(pipeline));
    const inserted = fleet.writer.changes.slice(seen).filter((c) => c.op === 'insert');
    expect(inserted.length).toBeGreaterThanOrEqual(20);
    for (const change of inserted) {
      const id = String(change.key.id);
      const found = records.filter((r) => r.op === 'insert' && String(r.key.id) === id);
      expect(found, `insert of ${TABLE} id ${id}`).toHaveLength(1);
    }
  }, 300_000);
});
