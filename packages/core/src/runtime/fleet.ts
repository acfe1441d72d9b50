import type { StateStore } from '../state/store.js';

/**
 * The other servers sharing a store, as one server sees them at one moment: how many
 * pipelines each runs (its unexpired leases) and how many it may run.
 */
export interface FleetView {
  others: Map<string, { running: number; capacity: number }>;
}

/**
 * Read the fleet from the store: every registered server that has not expired, and every
 * holder of an unexpired lease (a server still renewing leases is alive even if its
 * registration lapsed), except `self`.
 */
export async function loadFleetView(store: StateStore, self: string): Promise<FleetView> {
  const [servers, leases] = [await store.listServers(), await store.listLeases()];
  const others = new Map<string, { running: number; capacity: number }>();
  for (const server of servers) {
    if (server.id === self) continue;
    const capacity = server.details.capacity;
    others.set(server.id, {
      running: 0,
      capacity: typeof capacity === 'number' && capacity >= 0 ? capacity : Number.POSITIVE_INFINITY,
    });
  }
  for (const lease of leases) {
    if (lease.holder === self || lease.holder === '') continue;
    const other = others.get(lease.holder) ?? { running: 0, capacity: Number.POSITIVE_INFINITY };
    other.running++;
    others.set(lease.holder, other);
  }
  return { others };
}

/**
 * The balance rule of a fleet: a server running `running` pipelines (at most `capacity`)
 * takes a free pipeline only while it has room and no other server with room runs fewer.
 * Ties take it (the lease decides between them).
 *
 * Each server counts its own pipelines exactly and the others' as read at the start of its
 * pass; those only grow while servers live, so a stale view makes a server hold back, never
 * overreach: once the free pipelines are placed, no two servers with room differ by more
 * than one. A server that joins later gets new and orphaned pipelines first; running ones are
 * not moved to it.
 */
export function mayTakeAnother(fleet: FleetView, running: number, capacity: number): boolean {
  if (running >= capacity) return false;
  for (const other of fleet.others.values()) {
    if (other.running >= other.capacity) continue;
    if (other.running < running) return false;
  }
  return true;
}
