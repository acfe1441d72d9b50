import { readFileSync, writeSync } from 'node:fs';
import { sleep } from './backoff.js';

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
 * - `kill-after-reads:N` — once a durable sink write brings the snapshot events (op `read`)
 *   this process has written to that sink to N or more, the process SIGKILLs itself, before
 *   the chunk of that write can be recorded as done: the crash between a snapshot chunk's
 *   durable write and its record, at a point that does not depend on timing.
 * - `throttle:FILE` — a slow sink whose speed is a share of the others' (see {@link SinkThrottle}):
 *   FILE holds lines `<sink> <percent>%`, read again while the process runs, so a test can
 *   throttle a sink, change the share or lift it (remove the line) at any point.
 *
 * It cannot be switched on by accident: the variable is read only when `NODE_ENV=test`, and
 * a process that has it set without `NODE_ENV=test` refuses to run pipelines at all.
 */
export interface TestFaults {
  killAfterWrite?: number;
  killAfterEvents?: number;
  killAfterReads?: number;
  ackBeforeWrite: boolean;
  throttleFile?: string;
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
    const reads = /^kill-after-reads:(\d+)$/.exec(part);
    if (kill) faults.killAfterWrite = Number(kill[1]);
    else if (events) faults.killAfterEvents = Number(events[1]);
    else if (reads) faults.killAfterReads = Number(reads[1]);
    else if (part === 'ack-before-write') faults.ackBeforeWrite = true;
    else if (part.startsWith('throttle:') && part.length > 'throttle:'.length)
      faults.throttleFile = part.slice('throttle:'.length);
    else
      throw new Error(
        `${TEST_FAULT_ENV}: unknown fault '${part}' (known: kill-after-write:N, kill-after-events:N, kill-after-reads:N, ack-before-write, throttle:FILE)`,
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

/** How often the throttle file is read again, and how often a held write looks again. */
const THROTTLE_POLL_MS = 50;

/**
 * A sink slowed to a share of the speed of the fastest other sink of its pipeline (test-only,
 * `throttle:FILE`). From the moment its line appears in FILE, a write of `n` events waits
 * until the sink's events written since then, plus `n`, are at most `percent`% of what the
 * fastest other sink wrote since then: whatever speed this machine gives the healthy sink,
 * the throttled one gets that share of it. Removing the line lifts the throttle at once (a
 * waiting write goes ahead). Counts are per process, from the lanes' successful writes.
 */
export class SinkThrottle {
  /** `pipeline` → sink → events written by this process. */
  readonly #written = new Map<string, Map<string, number>>();
  /** Per throttled sink: its share and the counts when that share was first seen. */
  readonly #since = new Map<string, { share: number; own: number; others: number }>();
  #shares = new Map<string, number>();
  #readAt = Number.NEGATIVE_INFINITY;

  constructor(
    readonly file: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** A lane made `events` events durable. */
  written(pipeline: string, sink: string, events: number): void {
    let sinks = this.#written.get(pipeline);
    if (sinks === undefined) {
      sinks = new Map();
      this.#written.set(pipeline, sinks);
    }
    sinks.set(sink, (sinks.get(sink) ?? 0) + events);
  }

  /** Resolves once `sink` may write `events` more events (at once when not throttled, or when `signal` aborts). */
  async wait(pipeline: string, sink: string, events: number, signal: AbortSignal): Promise<void> {
    const key = `${pipeline}\u0000${sink}`;
    while (!signal.aborted) {
      const share = this.#shareOf(sink);
      if (share === undefined) {
        this.#since.delete(key);
        return;
      }
      const sinks = this.#written.get(pipeline);
      const own = sinks?.get(sink) ?? 0;
      let others = 0;
      for (const [name, count] of sinks ?? []) if (name !== sink) others = Math.max(others, count);
      let since = this.#since.get(key);
      if (since === undefined || since.share !== share) {
        since = { share, own, others };
        this.#since.set(key, since);
      }
      if (own - since.own + events <= share * (others - since.others)) return;
      await sleep(THROTTLE_POLL_MS, signal);
    }
  }

  #shareOf(sink: string): number | undefined {
    if (this.now() - this.#readAt >= THROTTLE_POLL_MS) {
      this.#shares = parseThrottleFile(this.file);
      this.#readAt = this.now();
    }
    return this.#shares.get(sink);
  }
}

/** `<sink> <percent>%` per line (blank lines ignored); a missing file throttles nothing. */
export function parseThrottleFile(file: string): Map<string, number> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  const shares = new Map<string, number>();
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    const match = /^\s*(\S+)\s+(\d+(?:\.\d+)?)%\s*$/.exec(line);
    if (!match)
      throw new Error(
        `${TEST_FAULT_ENV} throttle file ${file}, line ${i + 1}: expected '<sink> <percent>%' (e.g. '1:out2 10%'), got '${line}'`,
      );
    shares.set(match[1]!, Number(match[2]) / 100);
  }
  return shares;
}

const throttles = new Map<string, SinkThrottle>();

/** The one throttle of `file` in this process: every lane of every pipeline counts into it. */
export function sinkThrottle(file: string): SinkThrottle {
  let throttle = throttles.get(file);
  if (throttle === undefined) {
    throttle = new SinkThrottle(file);
    throttles.set(file, throttle);
  }
  return throttle;
}
