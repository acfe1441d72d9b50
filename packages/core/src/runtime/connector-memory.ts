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

/** Entries set while a write is under way, written together by the next write. */
interface Batch {
  entries: Map<string, string>;
  /** Settles with the write that carries the entries. */
  written: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * {@link ConnectorMemory} over the state store's meta table: one JSON document per pipeline
 * and connector, read once and written whole. Writes go one after another; the `set`s made
 * while one is under way are written together by the next (the last value of an entry
 * wins), so a burst of n `set`s writes the document a few times, not n times. Meant for
 * small entries (a table's key columns), at most a few per table.
 */
export function createConnectorMemory(options: ConnectorMemoryOptions): ConnectorMemory {
  const key = connectorMemoryKey(options.pipeline, options.role);
  let loaded: Promise<Stored> | undefined;
  /** The entries waiting for the next write, if any. */
  let next: Batch | undefined;
  /** Settles once every write asked for so far is done (failed or not). */
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
  /** Write `batch` over what is stored; a failure leaves the stored entries as they were. */
  const write = async (batch: Batch): Promise<void> => {
    try {
      const stored = await load();
      // From here on, a new `set` goes to the next batch.
      if (next === batch) next = undefined;
      const entries = { ...stored.entries, ...Object.fromEntries(batch.entries) };
      await options.store.setMeta(key, JSON.stringify({ start: stored.start, entries } satisfies Stored));
      stored.entries = entries;
      batch.resolve();
    } catch (error) {
      if (next === batch) next = undefined;
      batch.reject(error);
    }
  };
  return {
    async get(name) {
      await writes;
      const stored = await load();
      return Object.hasOwn(stored.entries, name) ? stored.entries[name] : undefined;
    },
    set(name, value) {
      if (next === undefined) {
        const batch = { entries: new Map() } as Batch;
        batch.written = new Promise<void>((resolve, reject) => {
          batch.resolve = resolve;
          batch.reject = reject;
        });
        next = batch;
        // Written once the writes before it are done: the sets made until then join it.
        writes = writes.then(() => write(batch));
      }
      next.entries.set(name, value);
      return next.written;
    },
  };
}
