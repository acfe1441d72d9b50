import { describe, expect, it } from 'vitest';
import { checkFlushSamples, FlushSampler } from '../../src/flush-sampler.js';

const lsnOf = (position: string) => BigInt(`0x${position.split(':')[0]}`);
const p = (lsn: number, index = 1) =>
  `${lsn.toString(16).toUpperCase().padStart(16, '0')}:${index.toString(16).padStart(8, '0')}`;

describe('checkFlushSamples (oracle item 4)', () => {
  const delivered = [p(0x100), p(0x200), p(0x200, 2), p(0x300)];

  it('passes while the source was acknowledged at most to the next delivered commit after the checkpoint', () => {
    const { problems, judged } = checkFlushSamples(
      [
        { confirmedFlush: 0x100n, checkpoint: p(0x100) },
        { confirmedFlush: 0x200n, checkpoint: p(0x100) },
        { confirmedFlush: 0x300n, checkpoint: p(0x200, 2) },
        { confirmedFlush: 0x999n, checkpoint: p(0x300) }, // nothing after it: not judged
      ],
      delivered,
      lsnOf,
    );
    expect(problems).toEqual([]);
    expect(judged).toBe(3);
  });

  it('names a sample where the source was acknowledged past the stored checkpoint', () => {
    const { problems } = checkFlushSamples([{ confirmedFlush: 0x201n, checkpoint: p(0x100) }], delivered, lsnOf);
    expect(problems).toEqual([
      `the source was acknowledged to 201, past the stored checkpoint ${p(0x100)} (next delivered commit at ${p(0x200)})`,
    ]);
  });

  it('fails when no sample could be judged', () => {
    expect(checkFlushSamples([], delivered, lsnOf).problems[0]).toMatch(/only 0 of 0 flush samples/);
  });

  it('samples the acknowledged point, then the checkpoint, dropping samples it cannot read', async () => {
    let n = 0;
    const sampler = new FlushSampler({
      confirmedFlush: async () => (++n % 2 === 0 ? undefined : BigInt(n)),
      checkpoint: () => 'cp',
      intervalMs: 1,
    });
    while (sampler.samples.length < 3) await new Promise((r) => setTimeout(r, 2));
    await sampler.stop();
    expect(sampler.samples.every((s) => s.checkpoint === 'cp' && s.confirmedFlush % 2n === 1n)).toBe(true);
  });
});
