import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SinkThrottle, testFaults } from '../../src/runtime/test-faults.js';

describe('NANOSYNC_TEST_FAULT (the chaos runner’s test-only fault hook)', () => {
  it('is off when unset or empty', () => {
    expect(testFaults({})).toBeUndefined();
    expect(testFaults({ NANOSYNC_TEST_FAULT: '', NODE_ENV: 'test' })).toBeUndefined();
  });

  it('is refused outside NODE_ENV=test, naming the variable', () => {
    for (const NODE_ENV of [undefined, 'production', 'development', 'TEST']) {
      expect(() => testFaults({ NANOSYNC_TEST_FAULT: 'ack-before-write', NODE_ENV })).toThrow(
        /NANOSYNC_TEST_FAULT is a test-only fault hook.*refused unless NODE_ENV=test/,
      );
    }
  });

  it('parses a list of faults under NODE_ENV=test and rejects unknown ones', () => {
    expect(testFaults({ NANOSYNC_TEST_FAULT: 'kill-after-write:7', NODE_ENV: 'test' })).toEqual({
      killAfterWrite: 7,
      ackBeforeWrite: false,
    });
    expect(testFaults({ NANOSYNC_TEST_FAULT: 'ack-before-write, kill-after-write:2', NODE_ENV: 'test' })).toEqual({
      killAfterWrite: 2,
      ackBeforeWrite: true,
    });
    expect(testFaults({ NANOSYNC_TEST_FAULT: 'kill-after-events:250', NODE_ENV: 'test' })).toEqual({
      killAfterEvents: 250,
      ackBeforeWrite: false,
    });
    expect(testFaults({ NANOSYNC_TEST_FAULT: 'kill-after-reads:120', NODE_ENV: 'test' })).toEqual({
      killAfterReads: 120,
      ackBeforeWrite: false,
    });
    expect(testFaults({ NANOSYNC_TEST_FAULT: 'throttle:/tmp/x/throttle', NODE_ENV: 'test' })).toEqual({
      ackBeforeWrite: false,
      throttleFile: '/tmp/x/throttle',
    });
    expect(() => testFaults({ NANOSYNC_TEST_FAULT: 'lose-everything', NODE_ENV: 'test' })).toThrow(/unknown fault/);
    expect(() => testFaults({ NANOSYNC_TEST_FAULT: 'throttle:', NODE_ENV: 'test' })).toThrow(/unknown fault/);
  });
});

describe('throttle:FILE (a sink slowed to a share of the other sinks’ speed)', () => {
  /** Whether `promise` settled within a few of the throttle's polls (only ever asserted false: no timing). */
  const settled = async (promise: Promise<unknown>) => {
    let done = false;
    void promise.then(() => {
      done = true;
    });
    // Several of the throttle's polls.
    await new Promise((resolve) => setTimeout(resolve, 200));
    return done;
  };

  it('lets a sink write only its share of what the fastest other sink of its pipeline wrote since the line appeared, and lets it go once the line is removed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ns-throttle-'));
    try {
      const file = join(dir, 'throttle');
      // A clock that moves on at every look, so the file is read again each time.
      let clock = 0;
      const throttle = new SinkThrottle(file, () => {
        clock += 1000;
        return clock;
      });
      const signal = new AbortController().signal;
      // No file, no line: no wait.
      await throttle.wait('p', '1:slow', 1000, signal);
      throttle.written('p', '0:fast', 500);
      writeFileSync(file, '1:slow 10%\n');
      // 10 events need 100 more from the fast sink (what it wrote before the line does not count).
      const first = throttle.wait('p', '1:slow', 10, signal);
      expect(await settled(first)).toBe(false);
      throttle.written('p', '0:fast', 99);
      throttle.written('q', '0:fast', 10_000); // another pipeline's sinks do not count
      throttle.written('p', '2:other-slow', 50);
      expect(await settled(first)).toBe(false);
      throttle.written('p', '0:fast', 1);
      await first;
      throttle.written('p', '1:slow', 10);
      // The next write waits again, until the line is removed.
      const second = throttle.wait('p', '1:slow', 1, signal);
      expect(await settled(second)).toBe(false);
      writeFileSync(file, '');
      await second;
      // An aborted wait returns (the lane stops).
      writeFileSync(file, '1:slow 10%\n');
      const stop = new AbortController();
      const third = throttle.wait('p', '1:slow', 1_000_000, stop.signal);
      expect(await settled(third)).toBe(false);
      stop.abort();
      await third;
      writeFileSync(file, '1:slow ten percent\n');
      await expect(new SinkThrottle(file).wait('p', '1:slow', 1, signal)).rejects.toThrow(
        /throttle file .*, line 1: expected '<sink> <percent>%'/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
