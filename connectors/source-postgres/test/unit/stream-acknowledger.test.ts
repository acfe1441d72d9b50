import { describe, expect, it } from 'vitest';
import { encodePosition } from '../../src/position.js';
import { createAcknowledger, internalsOf } from '../../src/stream/acknowledger.js';

describe('acknowledger', () => {
  it('flushes the commit end LSN registered for an acknowledged position, never more', async () => {
    const acknowledger = internalsOf(createAcknowledger());
    acknowledger.register(encodePosition(0x100n, 3), 0x140n);
    acknowledger.register(encodePosition(0x200n, 1), 0x240n);
    expect(acknowledger.flushLsn).toBe(0n);
    await acknowledger.acknowledge(encodePosition(0x100n, 3));
    expect(acknowledger.flushLsn).toBe(0x140n);
    expect(acknowledger.confirmedPosition).toBe(encodePosition(0x100n, 3));
    await acknowledger.acknowledge(encodePosition(0x200n, 1));
    expect(acknowledger.flushLsn).toBe(0x240n);
  });

  it('a position it did not hand out flushes its LSN, which cannot skip anything unacknowledged', async () => {
    const acknowledger = internalsOf(createAcknowledger());
    await acknowledger.acknowledge(encodePosition(0x500n, 0));
    expect(acknowledger.flushLsn).toBe(0x500n);
    await acknowledger.acknowledge(encodePosition(0x600n, 4));
    expect(acknowledger.flushLsn).toBe(0x600n);
  });

  it('an acknowledgement between two registered boundaries uses the last one at or before it', async () => {
    const acknowledger = internalsOf(createAcknowledger());
    acknowledger.register(encodePosition(0x100n, 1), 0x140n);
    acknowledger.register(encodePosition(0x900n, 2), 0x940n);
    await acknowledger.acknowledge(encodePosition(0x100n, 5));
    expect(acknowledger.flushLsn).toBe(0x140n);
  });

  it('never moves backwards: not below the slot, not for an older acknowledgement', async () => {
    const acknowledger = internalsOf(createAcknowledger());
    acknowledger.observeSlotFlush(0x1000n);
    acknowledger.register(encodePosition(0x100n, 1), 0x140n);
    await acknowledger.acknowledge(encodePosition(0x100n, 1));
    expect(acknowledger.flushLsn).toBe(0x1000n);
    await acknowledger.acknowledge(encodePosition(0x2000n, 0));
    await acknowledger.acknowledge(encodePosition(0x1500n, 0));
    expect(acknowledger.flushLsn).toBe(0x2000n);
    expect(acknowledger.confirmedPosition).toBe(encodePosition(0x2000n, 0));
  });

  it('tells listeners and answers isConfirmed', async () => {
    const acknowledger = internalsOf(createAcknowledger());
    let calls = 0;
    const stop = acknowledger.onChange(() => calls++);
    acknowledger.assumeConfirmed(encodePosition(0x10n, 0));
    expect(acknowledger.isConfirmed(encodePosition(0x10n, 0))).toBe(true);
    expect(acknowledger.isConfirmed(encodePosition(0x10n, 1))).toBe(false);
    await acknowledger.acknowledge(encodePosition(0x20n, 0));
    stop();
    await acknowledger.acknowledge(encodePosition(0x30n, 0));
    expect(calls).toBe(1);
  });
});
