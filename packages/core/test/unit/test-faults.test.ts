import { describe, expect, it } from 'vitest';
import { testFaults } from '../../src/runtime/test-faults.js';

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
    expect(() => testFaults({ NANOSYNC_TEST_FAULT: 'lose-everything', NODE_ENV: 'test' })).toThrow(/unknown fault/);
  });
});
