import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ChangeEvent, defineSink } from '@nanosync/core';
import {
  createConnectorResolver,
  createLogger,
  Engine,
  loadConfigFile,
  materializePipeline,
  openSqliteStateStore,
  resolveConfig,
  toStoredDefinitions,
} from '@nanosync/core/host';
import { describe, expect, it } from 'vitest';
import { waitFor } from './e2e/scenario.js';
import { pgFixture, uniqueName } from './fixture.js';

const TABLES = ['alpha', 'beta', 'gamma', 'delta'];
const ROWS = 16_000;

describe('snapshot across tables', () => {
  it('four tables are read at once: every table has delivered its first row before any table delivered its last', async () => {
    await using fx = await pgFixture();
    for (const name of TABLES) {
      await fx.admin.query(`CREATE TABLE public.${name} (id int PRIMARY KEY, payload text NOT NULL)`);
      await fx.admin.query(`INSERT INTO public.${name} SELECT g, repeat('x', 100) FROM generate_series(1, ${ROWS}) g`);
      await fx.admin.query(`ANALYZE public.${name}`);
    }
    const refs = TABLES.map((name) => ({ schema: 'public', name }));
    await fx.grantRead(refs);
    const pipeline = uniqueName('overlap');
    await fx.preparePublication(pipeline, refs);

    /** Per table: when (performance.now()) the sink received its first and its last snapshot row. */
    const seen = new Map<string, { first: number; last: number; rows: number }>();
    const recording = defineSink({
      type: 'recording',
      configSchema: { safeParse: (input: unknown) => ({ success: true as const, data: input }) },
      create: () => ({
        open: async () => {},
        close: async () => {},
        write: async (events: ChangeEvent[]) => {
          const now = performance.now();
          for (const event of events) {
            if (event.op !== 'read') continue;
            const entry = seen.get(event.table.name) ?? { first: now, last: now, rows: 0 };
            entry.last = now;
            entry.rows++;
            seen.set(event.table.name, entry);
          }
          // A sink that takes a moment per write, as a real one does.
          await new Promise((resolve) => setTimeout(resolve, 5));
        },
      }),
    });

    const dir = await mkdtemp(join(tmpdir(), 'ns-overlap-'));
    const dsn = `postgres://${fx.role}:${fx.rolePassword}@${fx.service.host}:${fx.service.port}/${fx.database}?sslmode=disable`;
    const configFile = join(dir, 'nanosync.yaml');
    await writeFile(
      configFile,
      `connections:
  - name: db
    type: postgres
    dsn: ${JSON.stringify(dsn)}
  - name: rec
    type: recording
pipelines:
  - name: ${pipeline}
    replication_type: snapshot
    source:
      connection: db
      tables: [${TABLES.map((t) => `public.${t}`).join(', ')}]
    sink:
      connection: rec
    snapshot:
      concurrency: 4
      target_rows_per_partition: 1000
`,
    );
    const secretKey = randomBytes(32);
    const resolve = createConnectorResolver({
      builtins: {
        '@nanosync/source-postgres': () => import('../../src/index.js'),
        '@nanosync/sink-recording': async () => ({ default: recording }),
      },
    });
    const { config } = await loadConfigFile(configFile);
    const stored = await toStoredDefinitions(await resolveConfig(config, resolve), { secretKey, configDir: dir });
    const store = await openSqliteStateStore(join(dir, 'state.sqlite'));
    const engine = new Engine({
      store,
      logger: createLogger({ level: 'error' }),
      holderId: `test-${process.pid}`,
      materialize: (definition) => materializePipeline(definition, { secretKey, resolve }),
      runtime: { snapshotChunkRows: 250, maxWriteEvents: 250 },
    });
    const states: string[] = [];
    engine.on('state', (event) => states.push(`${event.state}${event.error ? ` ${event.error}` : ''}`));
    try {
      await engine.start();
      for (const [name, p] of stored) await engine.apply(name, p.definition, p.hash, p.replicationType);
      await waitFor(
        () => states.some((s) => s.startsWith('COMPLETED') || s.startsWith('ERRORED')),
        'the snapshot to finish',
      );
      expect(states.at(-1)).toBe('COMPLETED');
    } finally {
      await engine.stop();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }

    expect([...seen.keys()].sort()).toEqual([...TABLES].sort());
    for (const entry of seen.values()) expect(entry.rows).toBe(ROWS);
    const latestFirst = Math.max(...[...seen.values()].map((e) => e.first));
    const earliestLast = Math.min(...[...seen.values()].map((e) => e.last));
    // Read one table after another, the last table's first row would come after the first table's last row.
    expect(latestFirst).toBeLessThan(earliestLast);
  });
});
