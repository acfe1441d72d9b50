/**
 * `@nanosync/connector-testkit/harness`: the parts of the kit that do not need vitest — the
 * oracle, the real-process harness, the flush sampler and the seeded generator — for programs that run outside a
 * test runner (apps/chaos).
 */
export * from './oracle.js';
export * from './process.js';
export * from './flush-sampler.js';
export * from './random.js';
