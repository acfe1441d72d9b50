import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { descendantsOf, ProcessTreeMonitor, parseProcStat, parseProcStatus } from '../../src/proc.js';

describe('/proc parsing', () => {
  it('reads pid, ppid and all four CPU counters from a stat line', () => {
    const line =
      '4242 (node) S 4200 4242 4200 0 -1 4194560 1000 0 0 0 150 30 7 3 20 0 11 0 12345 1000000 5000 18446744073709551615';
    expect(parseProcStat(line)).toEqual({ pid: 4242, ppid: 4200, cpuTicks: 150 + 30 + 7 + 3 });
  });

  it('copes with spaces and parentheses inside the command name', () => {
    const line = '77 (my (odd) proc) R 1 77 77 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 1 1 1';
    expect(parseProcStat(line)).toEqual({ pid: 77, ppid: 1, cpuTicks: 30 });
  });

  it('reads VmRSS and VmHWM in bytes, zero when a field is missing', () => {
    const status = 'Name:\tjava\nVmPeak:\t 9000000 kB\nVmHWM:\t  524288 kB\nVmRSS:\t  262144 kB\nThreads:\t40\n';
    expect(parseProcStatus(status)).toEqual({ rssBytes: 262144 * 1024, hwmBytes: 524288 * 1024 });
    expect(parseProcStatus('Name:\tkthreadd\n')).toEqual({ rssBytes: 0, hwmBytes: 0 });
  });

  it('finds a process tree from the parent links', () => {
    const parents = new Map([
      [1, 0],
      [10, 1],
      [11, 10],
      [12, 10],
      [13, 12],
      [20, 1],
    ]);
    expect(descendantsOf(10, parents).sort((a, b) => a - b)).toEqual([10, 11, 12, 13]);
    expect(descendantsOf(20, parents)).toEqual([20]);
  });
});

describe('ProcessTreeMonitor', () => {
  it.runIf(ProcessTreeMonitor.supported())('counts the CPU a child process burned and its memory', async () => {
    // The child spins until it has used 300 ms of CPU (however busy the machine is), says so, then idles.
    const script =
      "while (process.cpuUsage().user < 300000); process.stdout.write('done\\n'); setInterval(() => {}, 1000)";
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const monitor = new ProcessTreeMonitor(child.pid as number, 20).start();
      await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
      const usage = monitor.stop();
      expect(usage.cpuSeconds).toBeGreaterThanOrEqual(0.29);
      expect(usage.peakRssBytes).toBeGreaterThan(10 * 1024 * 1024);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
