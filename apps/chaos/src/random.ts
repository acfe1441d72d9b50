import { mulberry32 } from '@nanosync/connector-testkit/harness';

/**
 * A seeded pseudo-random source (mulberry32 over a seed mixed per scenario): the same seed and
 * scenario always draw the same schedule, so a failing seed replays exactly.
 */
export class Random {
  readonly #next: () => number;

  constructor(seed: number, salt = '') {
    let h = (seed ^ 0x9e3779b9) >>> 0;
    for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 0x85ebca6b) >>> 0;
    this.#next = mulberry32(h || 1);
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.#next();
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
}
