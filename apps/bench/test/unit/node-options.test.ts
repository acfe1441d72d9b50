import { describe, expect, it } from 'vitest';
import { binEnvironment, binNodeOptions, cpuProfileOptions } from '../../src/nanosync.js';
import { stallSeconds } from '../../src/scenarios/s3-latency.js';

describe('the Node options nanosync is measured with', () => {
  it('are those of the nanosync binary’s #! line', () => {
    expect(binNodeOptions()).toContain('--max-semi-space-size=4');
    expect(binEnvironment()).toEqual({ MALLOC_ARENA_MAX: '2' });
  });

  it('are read from an env -S line only', () => {
    expect(binNodeOptions('#!/usr/bin/env -S node --a=1 --b\nrest')).toEqual(['--a=1', '--b']);
    expect(binNodeOptions('#!/usr/bin/env node\n')).toEqual([]);
    expect(binNodeOptions('// no shebang\n')).toEqual([]);
  });

  it('and the environment the line sets before node', () => {
    const line = '#!/usr/bin/env -S MALLOC_A=1 B_=x node --a=1\nrest';
    expect(binNodeOptions(line)).toEqual(['--a=1']);
    expect(binEnvironment(line)).toEqual({ MALLOC_A: '1', B_: 'x' });
    expect(binEnvironment('#!/usr/bin/env -S node --a=1\n')).toEqual({});
    expect(binNodeOptions('#!/usr/bin/env -S node\n')).toEqual([]);
  });
});

describe('the CPU profile switch', () => {
  it('adds --cpu-prof into the work folder only when NANOSYNC_BENCH_CPU_PROF=1', () => {
    expect(cpuProfileOptions('/w', {})).toEqual([]);
    expect(cpuProfileOptions('/w', { NANOSYNC_BENCH_CPU_PROF: '0' })).toEqual([]);
    expect(cpuProfileOptions('/w', { NANOSYNC_BENCH_CPU_PROF: '1' })).toEqual([
      '--cpu-prof',
      '--cpu-prof-dir',
      '/w/cpu-prof',
    ]);
    expect(
      cpuProfileOptions('/w', { NANOSYNC_BENCH_CPU_PROF: '1', NANOSYNC_BENCH_CPU_PROF_INTERVAL_US: '250' }),
    ).toEqual(['--cpu-prof', '--cpu-prof-dir', '/w/cpu-prof', '--cpu-prof-interval', '250']);
  });
});

describe('S3 stall seconds', () => {
  it('name the worst seconds of a phase and count those over 100 ms', () => {
    const at = (commit: number, latency: number) => ({ committedAtMs: commit, arrivedAtMs: commit + latency });
    const result = stallSeconds([at(1000, 5), at(1500, 300), at(2100, 20), at(3900, 150), at(3950, 2)], 1000);
    expect(result).toEqual({ worstSeconds: ['0:300', '2:150', '1:20'], secondsOver100Ms: 2, seconds: 3 });
  });
});
