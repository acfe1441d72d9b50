/**
 * The SQL Server source in a real engine process, killed with SIGKILL in the middle of the
 * snapshot, in the middle of the stream and in the middle of a large transaction, with a
 * concurrent writer; then the RELIABILITY.md oracle over everything the file sink received.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertOracle, type OracleRecord } from '@nanosync/connector-testkit';
import { expect, it } from 'vitest';
import { comparePositions } from '../../src/position.js';
import { liveDescribe, liveSkip, type MssqlFixture, mssqlFixture, quoteTable, uniqueName } from './fixture.js';

const skip = await liveSkip();
const here = dirname(fileURLToPath(import.meta.url));

interface SinkLine extends OracleRecord {
  op: string;
}

async function sinkLines(file: string): Promise<SinkLine[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .slice(0, -1) // a torn last line from a crash is left out
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as SinkLine);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

liveDescribe('end to end: SQL Server pipeline process killed and restarted', skip, () => {
  it('SIGKILL mid-snapshot, mid-stream and inside a large transaction, with a concurrent writer: only replays, never gaps', async () => {
    const fx: MssqlFixture = await mssqlFixture();
    const dir = await mkdtemp(join(tmpdir(), 'ns-mssql-e2e-'));
    try {
      const table = { schema: 'dbo', name: uniqueName('e2e') };
      await fx.exec(`CREATE TABLE ${quoteTable(table)} (id int PRIMARY KEY, v int NOT NULL, note nvarchar(50))`);
      await fx.exec(`INSERT INTO ${quoteTable(table)} SELECT value, 0, N'seed' FROM GENERATE_SERIES(1, 20000)`);
      await fx.enableCdc(table);
      await fx.waitForCapture();
      const sinkFile = join(dir, 'out.jsonl');
      const configFile = join(dir, 'nanosync.yaml');
      const p = fx.properties();
      await writeFile(
        configFile,
        `connections:
  - name: mssql
    type: sqlserver
    properties: ${JSON.stringify(p)}
  - name: out
    type: file
    properties:
      file: ${JSON.stringify(sinkFile)}
pipelines:
  - name: ${uniqueName('e2e')}
    replication_type: cdc_backfill
    source:
      connection: mssql
      tables: [${JSON.stringify(`${table.schema}.${table.name}`)}]
    sink:
      connection: out
    snapshot:
      concurrency: 4
      target_rows_per_partition: 1000
`,
      );
      const key = randomBytes(32).toString('hex');
      const state = join(dir, 'state.sqlite');
      const start = (): ChildProcess =>
        spawn(
          process.execPath,
          [
            '--conditions=@nanosync/source',
            '--import',
            'tsx',
            join(here, 'e2e/run-pipeline.ts'),
            configFile,
            state,
            key,
          ],
          {
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
      const killed = (child: ChildProcess) =>
        new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        });
      const waitFor = async (what: string, condition: (lines: SinkLine[]) => boolean) => {
        for (let i = 0; i < 1200; i++) {
          if (condition(await sinkLines(sinkFile))) return;
          await sleep(100);
        }
        throw new Error(`timed out waiting for ${what}`);
      };

      let writing = true;
      let n = 0;
      const writer = (async () => {
        while (writing) {
          n++;
          await fx.exec(`UPDATE ${quoteTable(table)} SET v = v + 1 WHERE id = ${((n * 37) % 20000) + 1};
            INSERT INTO ${quoteTable(table)} VALUES (${100_000 + n}, ${n}, N'writer');
            DELETE FROM ${quoteTable(table)} WHERE id = ${((n * 53) % 20000) + 1};`);
          await sleep(20);
        }
      })();

      // 1. In the middle of the snapshot.
      let child = start();
      await waitFor('some snapshot rows', (lines) => lines.filter((l) => l.op === 'read').length >= 3000);
      await killed(child);

      // 2. In the middle of the stream.
      child = start();
      const streamed = (lines: SinkLine[]) => lines.filter((l) => l.op !== 'read').length;
      const before = streamed(await sinkLines(sinkFile));
      await waitFor('stream events after the restart', (lines) => streamed(lines) >= before + 50);
      await killed(child);

      // 3. Inside a large transaction (30 000 rows in one INSERT).
      await fx.exec(
        `INSERT INTO ${quoteTable(table)} SELECT 500000 + value, value, N'big' FROM GENERATE_SERIES(1, 30000)`,
      );
      child = start();
      await waitFor('part of the large transaction', (lines) => lines.some((l) => Number(l.key.id) > 500_000));
      await killed(child);

      // 4. Run to the end.
      writing = false;
      await writer;
      await fx.exec(`INSERT INTO ${quoteTable(table)} VALUES (-1, -1, N'marker')`);
      child = start();
      await waitFor('the marker row', (lines) => lines.some((l) => Number(l.key.id) === -1));
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });

      const expected = (await fx.admin.request().query(`SELECT id, v, note FROM ${quoteTable(table)}`)).recordset;
      const records = await sinkLines(sinkFile);
      expect(records.some((l) => Number(l.key.id) > 500_000 && l.op === 'insert')).toBe(true);
      assertOracle({
        records,
        expected: { [`${table.schema}.${table.name}`]: expected },
        keyColumns: ['id'],
        comparePositions,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
      await fx[Symbol.asyncDispose]();
    }
  });
});
