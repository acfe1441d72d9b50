import { writeSync } from 'node:fs';

/**
 * Test-only fault points, for the fault matrix of apps/chaos. NEVER for production use.
 *
 * `NANOSYNC_TEST_FAULT` holds a comma-separated list:
 * - `kill-after-write:N` — the N-th sink write (counted per sink, per process) that holds a
 *   stream event is made durable, then the process SIGKILLs itself before that write's
 *   checkpoint is stored: the crash between a sink's durable write and its checkpoint.
 * - `ack-before-write` — a deliberately broken build: the checkpoint is stored (and the
 *   source acknowledged) BEFORE the sink's write. Exists only so the chaos runner can prove
 *   it catches a build that loses data; combined with `kill-after-write:N` the kill lands
 *   between that early checkpoint and the write.
 * - `kill-after-events:N` — once a durable sink write brings the stream events this process
 *   has written to that sink to N or more, the process SIGKILLs itself, whether or not the
 *   write ends at a commit: the crash with part of a large transaction (events sharing one
 *   commit LSN) in the sink and the rest not.
 *
 * It cannot be switched on by accident: the variable is read only when `NODE_ENV=test`, and
 * a process that has it set without `NODE_ENV=test` refuses to run pipelines at all.
 */
export interface TestFaults {
  killAfterWrite?: number;
  killAfterEvents?: number;
  ackBeforeWrite: boolean;
}

export const TEST_FAULT_ENV = 'NANOSYNC_TEST_FAULT';

/** The faults asked for, or undefined when none. Throws when set outside `NODE_ENV=test` or malformed. */
export function testFaults(env: NodeJS.ProcessEnv = process.env): TestFaults | undefined {
  const spec = env[TEST_FAULT_ENV];
  if (spec === undefined || spec === '') return undefined;
  if (env.NODE_ENV !== 'test')
    throw new Error(
      `${TEST_FAULT_ENV} is a test-only fault hook (it breaks delivery on purpose); it is refused unless NODE_ENV=test — unset ${TEST_FAULT_ENV}`,
    );
  const faults: TestFaults = { ackBeforeWrite: false };
  for (const part of spec.split(',').map((p) => p.trim())) {
    const kill = /^kill-after-write:(\d+)$/.exec(part);
    const events = /^kill-after-events:(\d+)$/.exec(part);
    if (kill) faults.killAfterWrite = Number(kill[1]);
    else if (events) faults.killAfterEvents = Number(events[1]);
    else if (part === 'ack-before-write') faults.ackBeforeWrite = true;
    else
      throw new Error(
        `${TEST_FAULT_ENV}: unknown fault '${part}' (known: kill-after-write:N, kill-after-events:N, ack-before-write)`,
      );
  }
  return faults;
}

/** The crash under test: says so on stderr (synchronously), then SIGKILLs this process. */
export function dieForTest(what: string): Promise<never> {
  writeSync(2, `nanosync test fault: SIGKILL ${what}\n`);
  process.kill(process.pid, 'SIGKILL');
  return new Promise<never>(() => {});
}
