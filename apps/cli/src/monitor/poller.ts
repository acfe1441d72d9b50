import type { PipelineStatus } from '@nanosync/core/host';

/** What the dashboard knows: the last answer, and whether the server is answering now. */
export interface MonitorState {
  /** Last list received (kept while the server is down, shown as stale). Undefined before the first answer. */
  pipelines?: PipelineStatus[];
  updatedAt?: Date;
  /** Set while the server does not answer: why, since when, how many tries so far. */
  down?: { message: string; since: Date; attempts: number };
}

export interface PollerOptions {
  fetch: () => Promise<PipelineStatus[]>;
  /** Pause between two requests, also while the server is down. */
  intervalMs: number;
  /** A request that takes longer counts as a failure (the next one starts anyway). */
  timeoutMs?: number;
  now?: () => Date;
}

/**
 * Polls the admin API for the dashboard, one request at a time. Failures never stop it: it
 * keeps asking at the same pace, so the dashboard recovers by itself once the server is
 * back (or restarted with a new port owner, a new token file…).
 */
export class StatusPoller {
  private current: MonitorState = {};
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly timeoutMs: number;
  private readonly now: () => Date;

  constructor(private readonly options: PollerOptions) {
    this.timeoutMs = options.timeoutMs ?? Math.max(5_000, options.intervalMs * 3);
    this.now = options.now ?? (() => new Date());
  }

  get state(): MonitorState {
    return this.current;
  }

  /** For React's `useSyncExternalStore`. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getState = (): MonitorState => this.current;

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.tick();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One request; exposed for tests. */
  async poll(): Promise<void> {
    try {
      const pipelines = await withTimeout(this.options.fetch(), this.timeoutMs);
      this.set({ pipelines, updatedAt: this.now() });
    } catch (err) {
      const previous = this.current.down;
      this.set({
        ...this.current,
        down: { message: describe(err), since: previous?.since ?? this.now(), attempts: (previous?.attempts ?? 0) + 1 },
      });
    }
  }

  private async tick(): Promise<void> {
    if (!this.running) return;
    await this.poll();
    if (!this.running) return;
    this.timer = setTimeout(() => void this.tick(), this.options.intervalMs);
  }

  private set(state: MonitorState): void {
    this.current = state;
    for (const listener of this.listeners) listener();
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the server did not answer within ${Math.round(ms / 1000)} s`)),
      ms,
    );
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
