import type { ConnectorMemory } from '../contract/connector.js';
import type { StateStore } from '../state/store.js';

/** What one connector of one pipeline keeps under its meta key. */
interface Stored {
  /** The pipeline's start position when the entries were written; another start drops them. */
  start: string | null;
  entries: Record<string, string>;
}

export interface ConnectorMemoryOptions {
  store: Pick<StateStore, 'getMeta' | 'setMeta'>;
  pipeline: string;
  /** Which connector of the pipeline: `source`, `sink 0:kafka`, … */
  role: string;
  /**
   * The pipeline's start position now (undefined before its first open). Entries written
   * under another one belong to an earlier pipeline of the same name and are not returned.
   */
  scope: () => Promise<string | undefined>;
}

/** The meta key a connector's memory lives under. */
export function connectorMemoryKey(pipeline: string, role: string): string {
  return `pipeline.${pipeline}.connector.${role}`;
}

/**
 * {@link ConnectorMemory} over the state store's meta table: one JSON document per pipeline
 * and connector, read once and written whole on every `set` (one after another, in call
 * order). Meant for a handful of small entries written rarely (a table's key columns).
 */
export function createConnectorMemory(options: ConnectorMemoryOptions): ConnectorMemory {
  const key = connectorMemoryKey(options.pipeline, options.role);
  let loaded: Promise<Stored> | undefined;
  let writes: Promise<void> = Promise.resolve();
  const load = (): Promise<Stored> => {
    loaded ??= (async () => {
      const start = (await options.scope()) ?? null;
      const raw = await options.store.getMeta(key);
      if (raw !== undefined) {
        try {
          const parsed = JSON.parse(raw) as Partial<Stored>;
          if (parsed.start === start && parsed.entries !== null && typeof parsed.entries === 'object')
            return { start, entries: { ...parsed.entries } };
        } catch {
          // Unreadable: start from nothing, as for a new pipeline.
        }
      }
      return { start, entries: {} };
    })();
    // A failed read is tried again on the next call.
    loaded.catch(() => {
      loaded = undefined;
    });
    return loaded;
  };
  return {
    async get(name) {
      await writes;
      const stored = await load();
      return Object.hasOwn(stored.entries, name) ? stored.entries[name] : undefined;
    },
    set(name, value) {
      const write = writes.then(async () => {
        const stored = await load();
        const next: Stored = { start: stored.start, entries: { ...stored.entries, [name]: value } };
        await options.store.setMeta(key, JSON.stringify(next));
        stored.entries = next.entries;
      });
      // The next call waits for this one, whether or not it failed; this caller sees the failure.
      writes = write.catch(() => {});
      return write;
    },
  };
}
