/**
 * `@nanosync/connector-testkit/harness`: the parts of the kit that do not need vitest — the
 * oracle, the real-process harness and the flush sampler — for programs that run outside a
 * test runner (apps/chaos).
 */
export * from './oracle.js';
export * from './process.js';
export * from './flush-sampler.js';
