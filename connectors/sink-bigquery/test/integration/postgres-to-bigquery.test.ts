import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  type ExpectedChange,
  type OracleRecord,
  checkNothingLost,
  checkPositionOrder,
  compareWithSnapshot,
} from '@nanosync/connector-testkit';
import type { Row } from '@nanosync/core';
import { startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { expect, test } from 'vitest';
import { LIVE_SKIP, LiveDataset } from './live-env.js';

/**
 * PostgreSQL → BigQuery through the real CLI: a concurrent writer the whole time (inserts,
 * updates that leave a TOASTed column unchanged, deletes), SIGKILL during the snapshot, a
 * restart, then the oracle on both sinks of the pipeline — the CDC mirror must equal the
 * source table value by value, and the append-mode changelog must hold every change with
 * positions that only go back as replays. The connection names the package by path (its
 * TypeScript entry, run from source like the CLI itself); `type: bigquery` finds the same
 * package through discovery.
 */
const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const REPO_ROOT = resolve(PACKAGE_DIR, '../..');
const ROWS = 3_000;

test.skipIf(LIVE_SKIP !== false)(
  `postgres → bigquery: concurrent writer, TOAST, SIGKILL mid-snapshot, restart, oracle passes${LIVE_SKIP ? ` — skipped: ${LIVE_SKIP}` : ''}`,
  { timeout: 1_200_000 },
  async () => {
    await using postgres = await startPostgres();
    await using live = await LiveDataset.create('e2e');
    const url = await postgres.createDatabase();
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    const dir = await mkdtemp(join(tmpdir(), 'ns-bq-e2e-'));
    let writer: Writer | undefined;
    try {
      await db.query(
        'CREATE TABLE public.e2e_docs (id bigint PRIMARY KEY, note text, amount numeric(20,2), body text)',
      );
      await db.query('ALTER TABLE public.e2e_docs REPLICA IDENTITY FULL');
      // md5 chains do not compress: every body is stored out of line (TOAST).
      await db.query(
        `INSERT INTO public.e2e_docs SELECT g, 'row ' || g, g * 1.5, (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 200) i) FROM generate_series(1, $1) g`,
        [ROWS],
      );
      const config = join(dir, 'nanosync.yaml');
      const props = (extra: string) =>
        Object.entries(live.properties())
          .map(([k, v]) => `        ${k}: ${JSON.stringify(v)}`)
          .join('\n') + extra;
      await writeFile(
        config,
        `connections:
  - name: pg
    type: postgres
    dsn: ${JSON.stringify(url)}
  - name: bq
    type: ${JSON.stringify(join(PACKAGE_DIR, 'src', 'index.ts'))}
pipelines:
  - name: bq_e2e
    source:
      connection: pg
      tables: [public.e2e_docs]
    snapshot:
      concurrency: 2
      target_rows_per_partition: 500
    sinks:
      - connection: bq
        properties:
${props('\n        table_prefix: mirror_')}
      - connection: bq
        properties:
${props('\n        table_prefix: log_\n        write_mode: append')}
`,
      );
      const args = ['run', '--file', config, '--state', join(dir, 'state.db'), '--listen', '127.0.0.1:0'];
      const first = new CliProcess(args);
      await eventually(
        async () =>
          (
            await db.query(
              'SELECT 1 FROM pg_replication_slots WHERE database = current_database() AND confirmed_flush_lsn IS NOT NULL',
            )
          ).rowCount
            ? true
            : undefined,
        'the slot',
        () => first.output,
      );
      writer = new Writer(db, ROWS);
      await eventually(
        async () =>
          (await live.rows(`SELECT COUNT(*) AS n FROM \`${live.projectId}.${live.datasetId}.log_public_e2e_docs\``))[0]
            ?.n !== '0'
            ? true
            : undefined,
        'first rows in BigQuery',
        () => first.output,
      );
      await first.kill('SIGKILL');
      await using second = new CliProcess(args);
      await new Promise((r) => setTimeout(r, 10_000));
      await writer.stop();
      const changes = writer.changes;
      writer = undefined;

      const expected = (
        await db.query('SELECT id::text AS id, note, amount::text AS amount, md5(body) AS body FROM public.e2e_docs')
      ).rows as Row[];
      let problems: string[] = [];
      await eventually(
        async () => {
          const mirror = await live.rows(
            `SELECT CAST(id AS STRING) AS id, note, CAST(amount AS STRING) AS amount, TO_HEX(MD5(body)) AS body FROM \`${live.projectId}.${live.datasetId}.mirror_public_e2e_docs\``,
          );
          const log = await live.rows(
            `SELECT _ns_op, _ns_position, CAST(id AS STRING) AS id, note FROM \`${live.projectId}.${live.datasetId}.log_public_e2e_docs\` ORDER BY _ns_position`,
          );
          const records: OracleRecord[] = log.map((r) => ({
            table: 'public.e2e_docs',
            op: String(r._ns_op),
            key: { id: String(r.id) },
            after: { id: String(r.id), note: r.note as string },
            position: String(r._ns_position),
          }));
          problems = [
            ...compareWithSnapshot(mirror as Row[], expected, {
              keyColumns: ['id'],
              table: 'mirror',
              normalize: (row) => ({ ...row, amount: row.amount === null ? null : Number(row.amount).toFixed(2) }),
            }),
            ...checkPositionOrder(records),
            ...checkNothingLost(records, changes),
          ];
          return problems.length === 0 ? true : undefined;
        },
        'BigQuery to converge on the source',
        () => `${problems.slice(0, 20).join('\n')}\n--- nanosync ---\n${second.output.slice(-4000)}`,
        600_000,
      );
      expect(problems).toEqual([]);
      await second.kill('SIGTERM');
    } finally {
      await writer?.stop().catch(() => undefined);
      await db
        .query(
          'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active',
        )
        .catch(() => undefined);
      await db.end();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

/** Inserts, updates (half of them leave the TOASTed body alone) and deletes, one committed statement at a time. */
class Writer {
  readonly changes: ExpectedChange[] = [];
  private running = true;
  private readonly done: Promise<void>;
  private seq = 0;

  constructor(
    private readonly db: pg.Client,
    private nextId: number,
  ) {
    this.nextId += 1;
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    const max = this.nextId;
    while (this.running) {
      this.seq += 1;
      const note = `w${this.seq}`;
      const roll = Math.random();
      const id = String(1 + Math.floor(Math.random() * max));
      if (roll < 0.25) {
        const fresh = String(this.nextId++);
        await this.db.query(`INSERT INTO public.e2e_docs VALUES ($1, $2, $3, repeat(md5($2), 150))`, [
          fresh,
          note,
          `${this.seq}.25`,
        ]);
        this.changes.push({ table: 'public.e2e_docs', op: 'insert', key: { id: fresh }, after: { note } });
      } else if (roll < 0.85) {
        const touchBody = roll < 0.5 ? ', body = repeat(md5($2), 150)' : '';
        const r = await this.db.query(
          `UPDATE public.e2e_docs SET note = $2, amount = amount + 1${touchBody} WHERE id = $1`,
          [id, note],
        );
        if (r.rowCount) this.changes.push({ table: 'public.e2e_docs', op: 'update', key: { id }, after: { note } });
      } else {
        const r = await this.db.query('DELETE FROM public.e2e_docs WHERE id = $1', [id]);
        if (r.rowCount) this.changes.push({ table: 'public.e2e_docs', op: 'delete', key: { id } });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

/** `nanosync …` from the sources, in a process of its own that the test may SIGKILL. */
class CliProcess implements AsyncDisposable {
  output = '';
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  constructor(args: string[]) {
    const tsx = pathToFileURL(createRequire(join(REPO_ROOT, 'package.json')).resolve('tsx')).href;
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && !k.startsWith('NANOSYNC_')),
    );
    this.child = spawn(
      process.execPath,
      ['--conditions=@nanosync/source', '--import', tsx, join(REPO_ROOT, 'apps/cli/src/bin.ts'), ...args],
      {
        cwd: REPO_ROOT,
        env: { ...env, FORCE_COLOR: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.output += chunk;
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.output += chunk;
    });
    this.exited = new Promise((r) => this.child.on('close', () => r()));
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill('SIGKILL');
  }
}

/** Poll until `probe` returns a value (a wait with a generous guard, never an assertion on speed). */
async function eventually<T>(
  probe: () => Promise<T | undefined>,
  what: string,
  context: () => string,
  timeoutMs = 300_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`gave up waiting for ${what}${last ? `: ${String(last)}` : ''}\n${context()}`);
    await new Promise((r) => setTimeout(r, 2_000));
  }
}
