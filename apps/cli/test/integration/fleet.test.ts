/**
 * A fleet of real `nanosync serve` processes on one PostgreSQL state store, a real
 * PostgreSQL source and file sinks: placement, failover after SIGKILL, and the state store
 * going away (a frozen server: fleet-frozen.test.ts). Lease times are short (`--lease-ttl`) so the
 * tests are quick; nothing is asserted on time.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { startPostgres } from '@nanosync/testcontainers';
import { describe, expect, it } from 'vitest';
import { eventually } from './cli-process.js';
import { Fleet, type FleetServer } from './fleet-fixtures.js';

/** `0/1A2B3C` → a number that sorts like the LSN. */
function lsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

describe('a fleet of servers on one PostgreSQL state store', () => {
  it('three servers, six pipelines: each runs exactly once, two per server; SIGKILL of one moves its two to the others under a concurrent writer, and every sink passes the oracle', async () => {
    await using fleet = await Fleet.create({ pipelines: 6, rows: 200 });
    const servers: FleetServer[] = [];
    for (const name of ['s1', 's2', 's3']) servers.push(await fleet.startServer(name));
    await fleet.apply(servers[0]!);

    // All six streaming, as every server reports it.
    await eventually(async () => {
      const listed = await fleet.list(servers[2]!);
      return listed.length === 6 && listed.every((p) => p.state === 'LIVE_CDC' && p.server) ? true : undefined;
    }, 'six pipelines streaming');
    const leases = await fleet.leases();
    const perServer = new Map<string, string[]>();
    for (const pipeline of fleet.pipelines) {
      const holder = leases.get(pipeline)?.holder;
      expect(holder, pipeline).toBeDefined();
      perServer.set(holder!, [...(perServer.get(holder!) ?? []), pipeline]);
    }
    // Fewest running first: two each.
    expect([...perServer.keys()].sort()).toEqual(['s1', 's2', 's3']);
    for (const list of perServer.values()) expect(list).toHaveLength(2);
    // Exactly once: each slot has one walsender, and it belongs to the process holding the lease.
    for (const pipeline of fleet.pipelines) {
      const owner = await eventually(() => fleet.slotOwner(pipeline), `the walsender of ${pipeline}`);
      expect(owner, pipeline).toBe(leases.get(pipeline)!.holder);
    }
    // Every server's API says the same about where each pipeline runs.
    for (const server of servers) {
      const listed = await fleet.list(server);
      for (const p of listed) expect(p.server, `${p.name} as seen by ${server.name}`).toBe(leases.get(p.name)!.holder);
    }
    // And `list pipelines` shows it in its SERVER column.
    const table = await fleet.listText(servers[1]!);
    expect(table.split('\n')[0]).toMatch(/\bSERVER$/);
    for (const pipeline of fleet.pipelines)
      expect(table).toMatch(new RegExp(`^${pipeline}\\s+LIVE_CDC\\s.*\\s${leases.get(pipeline)!.holder}$`, 'm'));

    fleet.writer.start();
    await fleet.writer.more(40);
    const victim = servers[1]!;
    const moved = perServer.get(victim.name)!;
    await victim.proc.kill('SIGKILL');
    // Once the lease runs out, the survivors take both over (from their checkpoints).
    const after = await eventually(async () => {
      const now = await fleet.leases();
      return moved.every((p) => {
        const holder = now.get(p)?.holder;
        return holder !== undefined && holder !== victim.name;
      })
        ? now
        : undefined;
    }, 'the killed server’s pipelines taken over');
    for (const p of moved) expect(after.get(p)!.epoch).toBeGreaterThan(leases.get(p)!.epoch);
    // The others did not move.
    for (const p of fleet.pipelines.filter((x) => !moved.includes(x))) expect(after.get(p)).toEqual(leases.get(p));
    for (const p of moved) {
      const owner = await eventually(
        async () => ((await fleet.slotOwner(p)) === after.get(p)!.holder ? true : undefined),
        `the new holder streaming ${p}`,
      );
      expect(owner).toBe(true);
    }
    await fleet.writer.more(40);
    await fleet.writer.stop();
    await fleet.drainAll(9_000_001);
    const listed = await fleet.list(servers[0]!);
    expect(listed.every((p) => p.state === 'LIVE_CDC')).toBe(true);
    for (const p of moved) expect(listed.find((x) => x.name === p)?.server).toBe(after.get(p)!.holder);
    for (const pipeline of fleet.pipelines) await fleet.oracle(pipeline);
  }, 420_000);

  it('the state store stopped for 30 s while streaming: the pipeline is RETRYING naming the store, the slot does not move, and it resumes by itself with nothing lost', async () => {
    await using stateService = await startPostgres({ fresh: true });
    await using fleet = await Fleet.create({ pipelines: 1, rows: 100, stateService });
    const [pipeline] = fleet.pipelines as [string];
    const server = await fleet.startServer('only');
    await fleet.apply(server);
    await eventually(async () => ((await fleet.slotOwner(pipeline)) === 'only' ? true : undefined), 'streaming');
    fleet.writer.start();
    await fleet.writer.more(30);

    await fleet.dropStateClient();
    await stateService.stop();
    const outageEnds = Date.now() + 30_000;
    const retrying = await eventually(async () => {
      const p = (await fleet.list(server))[0];
      return p?.state === 'RETRYING' ? p : undefined;
    }, 'RETRYING');
    expect((retrying as { error?: string }).error).toContain(`127.0.0.1:${stateService.port}`);
    expect((retrying as { error?: string }).error).toContain('state store');
    // From now on no checkpoint can be written, so nothing may be acknowledged.
    const frozenAt = (await fleet.slots()).get(fleet.slotOf(pipeline))!.confirmedFlush;
    const seen = new Set<string | null>();
    while (Date.now() < outageEnds) {
      seen.add((await fleet.slots()).get(fleet.slotOf(pipeline))!.confirmedFlush);
      await sleep(500);
    }
    expect([...seen]).toEqual([frozenAt]);
    expect(fleet.writer.committed).toBeGreaterThan(30);

    await stateService.start();
    await eventually(async () => {
      const p = (await fleet.list(server))[0];
      return p?.state === 'LIVE_CDC' ? true : undefined;
    }, 'LIVE_CDC again');
    await fleet.writer.more(20);
    await fleet.writer.stop();
    await fleet.drainAll(9_000_003);
    const confirmed = (await fleet.slots()).get(fleet.slotOf(pipeline))!.confirmedFlush!;
    expect(lsn(confirmed) > lsn(frozenAt!)).toBe(true);
    expect(server.proc.running).toBe(true);
    await fleet.oracle(pipeline);
  }, 420_000);
});
