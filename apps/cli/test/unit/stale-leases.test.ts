import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, openSqliteStateStore, type StateStore } from '@nanosync/core/host';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { releaseLeasesOfDeadProcesses } from '../../src/server/stale-leases.js';

let dir: string;
let store: StateStore;
const logger = createLogger({ write: () => {} });

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-leases-'));
  store = await openSqliteStateStore(join(dir, 'state.db'));
  for (const name of ['dead', 'alive', 'remote']) {
    await store.upsertPipeline({
      name,
      definition: {},
      definitionHash: 'h',
      state: 'LIVE_CDC',
      snapshotDone: true,
      paused: false,
    });
  }
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

it('a restarted server takes over at once the leases of a killed server on this host, and only those', async () => {
  const deadPid = spawnSync('true').pid!;
  const host = hostname();
  const hour = 3_600_000;
  await store.acquireLease('dead', `${host}/pid-${deadPid}`, hour);
  await store.acquireLease('alive', `${host}/pid-${process.ppid}`, hour);
  await store.acquireLease('remote', `elsewhere.example/pid-${deadPid}`, hour);

  expect(await releaseLeasesOfDeadProcesses(store, logger)).toEqual(['dead']);

  expect(await store.acquireLease('dead', 'new-server', hour)).toMatchObject({ acquired: true });
  expect((await store.acquireLease('alive', 'new-server', hour)).acquired).toBe(false);
  expect((await store.acquireLease('remote', 'new-server', hour)).acquired).toBe(false);
});
