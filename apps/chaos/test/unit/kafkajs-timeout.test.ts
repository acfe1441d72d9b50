import { createRequire } from 'node:module';
import path from 'node:path';
import { expect, it } from 'vitest';

// kafkajs 2.2.4 (the runner's topic reader) scheduled its first pending-request check with
// a delay of -1 − Date.now() when not throttled, which Node 24 reports as a
// TimeoutNegativeWarning at every connection; patches/kafkajs@2.2.4.patch clamps it to 1 ms.
it('kafkajs schedules its pending-request check without a negative timeout', async () => {
  const require = createRequire(import.meta.url);
  const root = path.dirname(require.resolve('kafkajs/package.json'));
  const RequestQueue = require(path.join(root, 'src/network/requestQueue/index.js')) as new (
    options: Record<string, unknown>,
  ) => { scheduleCheckPendingRequests(): void; throttleCheckTimeoutId: NodeJS.Timeout | null };
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  const queue = new RequestQueue({
    maxInFlightRequests: 1,
    requestTimeout: 1000,
    clientId: 'c',
    broker: 'b',
    logger: silent,
  });
  const warnings: string[] = [];
  const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
  process.on('warning', onWarning);
  try {
    queue.scheduleCheckPendingRequests();
    // A warning is emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', onWarning);
    if (queue.throttleCheckTimeoutId) clearTimeout(queue.throttleCheckTimeoutId);
  }
  expect(warnings.filter((w) => w.startsWith('TimeoutNegativeWarning'))).toEqual([]);
});
