import { hostname } from 'node:os';
import type { Logger } from '@nanosync/core';
import type { StateStore } from '@nanosync/core/host';

/** Holder ids of servers started by this CLI: `host/pid-N` (see `defaultHolderId`). */
const HOLDER = /^(.*)\/pid-(\d+)$/;

function processIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * A server that was killed (SIGKILL, OOM killer) could not release its leases, so they stay
 * valid for the lease time and a restarted server would wait that long before resuming.
 * When the holder ran on this host and its process no longer exists, nobody runs those
 * pipelines: release the leases so the restart resumes at once. A holder on another host,
 * or a pid that is alive (even reused by an unrelated process), is left to expire: waiting
 * is the safe side. Returns the pipelines whose lease was released.
 */
export async function releaseLeasesOfDeadProcesses(
  store: StateStore,
  logger: Logger,
  host: string = hostname(),
): Promise<string[]> {
  const released: string[] = [];
  for (const pipeline of await store.listPipelines()) {
    const lease = await store.getLease(pipeline.name);
    const match = lease ? HOLDER.exec(lease.holder) : null;
    if (!lease || !match || match[1] !== host) continue;
    const pid = Number(match[2]);
    if (pid === process.pid || !processIsGone(pid)) continue;
    await store.releaseLease(pipeline.name, lease.holder);
    logger.info('released the lease of a server that is gone', { name: pipeline.name, holder: lease.holder });
    released.push(pipeline.name);
  }
  return released;
}
