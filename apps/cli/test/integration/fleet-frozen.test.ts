/**
 * A frozen server of a fleet (SIGSTOP past its lease, then SIGCONT) is fenced off: real
 * `nanosync serve` processes on one PostgreSQL state store, a real PostgreSQL source, a file
 * sink. Nothing is asserted on time.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { eventually } from './cli-process.js';
import { Fleet } from './fleet-fixtures.js';

/** `0/1A2B3C` → a number that sorts like the LSN. */
function lsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** A stored position (`<16 hex LSN>:<8 hex seq>`) → its LSN. */
function positionLsn(position: string): bigint {
  return BigInt(`0x${position.split(':')[0]}`);
}

describe('a fleet of servers on one PostgreSQL state store', () => {
  it('a server frozen past its lease (SIGSTOP, then SIGCONT) lands nothing after the standby took over at a higher epoch (its fenced write refused, or it stops on its lease check first); the slot never passes the stored checkpoint; nothing lost', async () => {
    await using fleet = await Fleet.create({ pipelines: 1, rows: 100 });
    const [pipeline] = fleet.pipelines as [string];
    const a = await fleet.startServer('frozen-a');
    await fleet.apply(a);
    await eventually(async () => ((await fleet.slotOwner(pipeline)) === 'frozen-a' ? true : undefined), 'A streaming');
    const b = await fleet.startServer('standby-b');
    const first = (await fleet.leases()).get(pipeline)!;
    expect(first.holder).toBe('frozen-a');

    fleet.writer.start();
    await fleet.writer.more(20);
    a.proc.child.kill('SIGSTOP');
    const taken = await eventually(async () => {
      const lease = (await fleet.leases()).get(pipeline);
      return lease?.holder === 'standby-b' ? lease : undefined;
    }, 'B to take the lease of the frozen A');
    expect(taken.epoch).toBeGreaterThan(first.epoch);
    // A's walsender still holds the slot (A is frozen, its connection open): B waits for it.
    await fleet.writer.more(20);

    // From here on, sample the slot against the stored checkpoint (read after it).
    const samples: { confirmed: string; checkpoint: string | undefined }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const confirmed = (await fleet.slots()).get(fleet.slotOf(pipeline))?.confirmedFlush;
        const checkpoint = await fleet.checkpoint(pipeline);
        if (confirmed) samples.push({ confirmed, checkpoint });
        await sleep(100);
      }
    })();
    a.proc.child.kill('SIGCONT');
    // A wakes up with changes in its socket. Either it tries to write them and its next
    // fenced write (the checkpoint, or when it was frozen inside a store transaction the
    // database ended, the probe that follows) is refused at its old epoch; or its lease
    // check runs first and stops the pipeline without writing (seen on a fast machine).
    // Either way nothing of A's lands after the takeover, which the samples below check.
    const woke = await a.proc.waitFor(
      /refused to (?:save a checkpoint|update a pipeline|mark a partition done) for frozen-a at lease epoch (\d+)|lost the pipeline lease to another server; stopping here/,
    );
    if (woke[1] !== undefined) expect(Number(woke[1])).toBe(first.epoch);
    await eventually(async () => ((await fleet.slotOwner(pipeline)) === 'standby-b' ? true : undefined), 'B streaming');
    await fleet.writer.more(20);
    await fleet.writer.stop();
    await fleet.drainAll(9_000_002);
    sampling = false;
    await sampler;

    expect(a.proc.running, 'A keeps serving, without the pipeline').toBe(true);
    const listed = await fleet.list(a);
    expect(listed[0]).toMatchObject({ name: pipeline, state: 'LIVE_CDC', server: 'standby-b' });
    // The slot never confirmed past the stored checkpoint's transaction: at most up to the
    // next transaction the sink holds after it.
    const { readJsonLines } = await import('@nanosync/sink-file');
    const positions = [
      ...new Set((await readJsonLines(fleet.sinkFile(pipeline))).filter((r) => r.op !== 'read').map((r) => r.position)),
    ].sort();
    let checked = 0;
    for (const sample of samples) {
      if (sample.checkpoint === undefined) continue;
      const next = positions.find((p) => p > sample.checkpoint!);
      if (next === undefined) continue;
      checked++;
      expect(lsn(sample.confirmed) <= positionLsn(next), `${sample.confirmed} passed ${sample.checkpoint}`).toBe(true);
    }
    expect(checked).toBeGreaterThan(0);
    await fleet.oracle(pipeline);
    void b;
  }, 420_000);
});
