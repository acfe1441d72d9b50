import { describe, expect, it } from 'vitest';
import { decodePosition } from '../../src/position.js';
import { streamPipeline } from './stream-helpers.js';

const ROWS = 1_000_000;
const RSS_LIMIT = 512 * 1024 * 1024;

describe('streamChanges: a 1,000,000-row transaction', () => {
  it('is delivered whole, in bounded batches, with peak RSS under 512 MB', async () => {
    const bulk = { schema: 'public', name: 'bulk' };
    await using p = await streamPipeline({
      ddl: ['CREATE TABLE public.bulk (id int PRIMARY KEY, payload text)'],
      tables: [bulk],
    });
    // The whole vitest worker's RSS (vitest, its transform cache, testcontainers): the start
    // figure is printed too, so what the stream adds is visible (apps/bench/README.md, memory).
    const startRss = process.memoryUsage().rss;
    let peakRss = startRss;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 50);
    try {
      const stream = p.open(p.startPosition);
      stream.keep = false;
      let commitLsn: bigint | undefined;
      let expectedIndex = 1;
      let largestBatch = 0;
      let safeBatches = 0;
      let batchesSeen = 0;
      let stalled = false;
      stream.onBatch = async (batch) => {
        batchesSeen++;
        largestBatch = Math.max(largestBatch, batch.events.length);
        for (const event of batch.events) {
          const position = decodePosition(event.position);
          commitLsn ??= position.lsn;
          if (position.lsn !== commitLsn || position.index !== expectedIndex) {
            throw new Error(`expected index ${expectedIndex} of ${commitLsn}, got ${event.position}`);
          }
          expectedIndex++;
        }
        // Keepalives may come before the transaction and after its commit; in between, the
        // only safePosition is the one on the batch that ends at the commit.
        const keepaliveOutside = batch.events.length === 0 && (expectedIndex === 1 || safeBatches === 1);
        if (batch.safePosition !== undefined && expectedIndex > 1 && !keepaliveOutside) {
          safeBatches++;
          if (expectedIndex - 1 !== ROWS || batch.events.length === 0) {
            throw new Error(
              `safePosition ${batch.safePosition} on a batch of ${batch.events.length} after ${expectedIndex - 1} of ${ROWS} events`,
            );
          }
          if (batch.safePosition !== batch.events.at(-1)?.position)
            throw new Error(`safePosition ${batch.safePosition} is not the last event`);
        }
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        // A consumer that stalls for a while: without backpressure the producer would
        // read the whole transaction into memory meanwhile.
        if (!stalled && expectedIndex > 1) {
          stalled = true;
          await new Promise((resolve) => setTimeout(resolve, 5000));
        }
      };
      await p.fx.admin.query(
        `INSERT INTO public.bulk SELECT g, md5(g::text) || md5((g + 1)::text) FROM generate_series(1, ${ROWS}) g`,
      );
      await stream.waitFor(() => stream.eventCount >= ROWS && safeBatches === 1, 'the whole transaction', 170_000);

      expect(stream.eventCount).toBe(ROWS);
      expect(expectedIndex - 1).toBe(ROWS);
      expect(safeBatches).toBe(1);
      expect(largestBatch).toBeLessThanOrEqual(1000);
      expect(peakRss).toBeLessThan(RSS_LIMIT);
      console.log(
        `1M-row transaction: ${batchesSeen} batches, RSS ${Math.round(startRss / 1048576)} MB at the start, peak ${Math.round(peakRss / 1048576)} MB`,
      );
    } finally {
      clearInterval(sampler);
    }
  }, 180_000);
});
