/**
 * Measures the two snapshot read paths (COPY text vs cursor FETCH) on the same table, decode
 * included. Not a test: run by hand when changing the reader.
 *
 *   pnpm exec tsx --conditions=@nanosync/source connectors/source-postgres/bench/read-path.ts [rows]
 *
 * Uses NANOSYNC_TEST_PG_URL when set, otherwise starts a throwaway server.
 */
import { type PostgresService, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { configSchema } from '../src/config.js';
import { buildConnectionConfig, connectClient } from '../src/connection.js';
import { describeTables } from '../src/describe.js';
import { type ReadPath, readCtidPartition } from '../src/snapshot/read-partition.js';
import { TypeCatalog } from '../src/types/index.js';

const rows = Number(process.argv[2] ?? 300_000);
const runs = 3;

const service: PostgresService = await startPostgres();
const dbName = `ns_bench_${process.pid}`;
const url = await service.createDatabase(dbName);
const admin = new pg.Client({ connectionString: url });
await admin.connect();
try {
  await admin.query(`CREATE TABLE bench (id bigint PRIMARY KEY, name text, amount numeric(14,4), score float8, flag bool,
      created timestamptz, tags text[], payload jsonb)`);
  await admin.query(
    `INSERT INTO bench SELECT g, 'name-' || g || repeat('y', g % 30), g * 3.1415, g / 7.0, g % 2 = 0,
            timestamptz '2024-01-01 00:00:00+00' + g * interval '1.000001 second', ARRAY['a' || g, 'b', NULL],
            jsonb_build_object('k', g, 's', 'v' || g)
       FROM generate_series(1, $1) g`,
    [rows],
  );
  await admin.query('VACUUM ANALYZE bench');
  const parsed = configSchema.safeParse({
    host: service.host,
    port: service.port,
    user: service.user,
    database: dbName,
    sslmode: 'disable',
  });
  if (!parsed.success) throw new Error('config');
  const conn = buildConnectionConfig(parsed.data);
  const client = await connectClient(conn);
  const [table] = await describeTables(client, [{ schema: 'public', name: 'bench' }], new TypeCatalog(), dbName);

  const measure = async (path: ReadPath): Promise<number> => {
    const started = process.hrtime.bigint();
    let n = 0;
    const state = { clientReusable: false };
    for await (const chunk of readCtidPartition(
      {
        client,
        table: table!,
        columns: table!.columns,
        keyColumns: table!.keyColumns,
        bounds: { startPage: 0, endPage: null },
        maxRowsPerChunk: 5000,
        signal: new AbortController().signal,
        path,
      },
      state,
    )) {
      n += chunk.length;
    }
    if (n !== rows) throw new Error(`${path} read ${n} rows, expected ${rows}`);
    return Number(process.hrtime.bigint() - started) / 1e6;
  };

  await measure('copy');
  await measure('cursor');
  const results: Record<ReadPath, number[]> = { copy: [], cursor: [] };
  for (let i = 0; i < runs; i++) {
    results.copy.push(await measure('copy'));
    results.cursor.push(await measure('cursor'));
  }
  for (const path of ['copy', 'cursor'] as const) {
    const sorted = [...results[path]].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    console.log(
      `${path.padEnd(6)} median ${median.toFixed(0)} ms  ${Math.round((rows / median) * 1000).toLocaleString('en-US')} rows/s  runs ${sorted.map((x) => x.toFixed(0)).join(', ')} ms`,
    );
  }
  await client.end();
} finally {
  await admin.end();
  const su = new pg.Client({ connectionString: service.url });
  await su.connect();
  await su.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await su.end();
  if (service.owned) await service[Symbol.asyncDispose]();
}
