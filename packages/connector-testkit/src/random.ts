/**
 * mulberry32: a small, fast seeded pseudo-random generator (32 bits of state), for tests and
 * tools that draw cases or schedules from a seed, so a failure names a case that replays
 * exactly. Not for anything secret.
 *
 * Returns a function giving the next number, uniform in [0, 1); the same seed (taken as an
 * unsigned 32-bit integer: `seed >>> 0`) always gives the same sequence.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
