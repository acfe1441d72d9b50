import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PostgresService, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';

/** A literal password written into test configs; it must never show up in any output. */
export const LITERAL_SECRET = 'Lit3ral-S3cret-do-not-print';

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

/**
 * A fresh database with a `public.orders` table of `rows` rows, a temp folder for config,
 * state and output, and a DSN that carries a literal password (the local test server
 * trusts loopback connections, so the password is only there to be kept secret).
 */
export class CliTestContext implements AsyncDisposable {
  private constructor(
    readonly postgres: PostgresService,
    readonly databaseUrl: string,
    readonly dir: string,
    readonly db: pg.Client,
  ) {}

  static async create(rows = 100): Promise<CliTestContext> {
    const postgres = await startPostgres();
    const databaseUrl = await postgres.createDatabase();
    const dir = await mkdtemp(join(tmpdir(), 'ns-cli-it-'));
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    await db.query('CREATE TABLE public.orders (id bigint PRIMARY KEY, note text, amount numeric(20,2))');
    await db.query("INSERT INTO public.orders SELECT g, 'row ' || g, g * 1.5 FROM generate_series(1, $1) g", [rows]);
    return new CliTestContext(postgres, databaseUrl, dir, db);
  }

  get stateFile(): string {
    return join(this.dir, 'state', 'state.db');
  }

  get outDir(): string {
    return join(this.dir, 'out');
  }

  /** The database URL with the literal password added. */
  get dsnWithSecret(): string {
    const url = new URL(this.databaseUrl);
    url.password = LITERAL_SECRET;
    return url.toString();
  }

  async writeConfig(
    name: string,
    options: { pipeline: string; tables?: string[]; sourceProperties?: string; replicationType?: string },
  ): Promise<string> {
    const tables = options.tables ?? ['public.orders'];
    const text = `connections:
  - name: pg
    type: postgres
    dsn: ${JSON.stringify(this.dsnWithSecret)}
  - name: out
    type: file
    properties:
      path: ${JSON.stringify(this.outDir)}
pipelines:
  - name: ${options.pipeline}
    replication_type: ${options.replicationType ?? 'cdc_backfill'}
    source:
      connection: pg
      tables: [${tables.join(', ')}]
${options.sourceProperties ? `      properties:\n${options.sourceProperties}\n` : ''}    sink:
      connection: out
`;
    const file = join(this.dir, name);
    await writeFile(file, text);
    return file;
  }

  async slotsAndPublications(): Promise<{ slots: string[]; publications: string[] }> {
    const slots = await this.db.query<{ slot_name: string }>(
      'SELECT slot_name FROM pg_replication_slots WHERE database = current_database()',
    );
    const publications = await this.db.query<{ pubname: string }>('SELECT pubname FROM pg_publication');
    return { slots: slots.rows.map((r) => r.slot_name), publications: publications.rows.map((r) => r.pubname) };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // Slots pin WAL on the shared server: drop whatever a failed test left behind.
    const { slots } = await this.slotsAndPublications().catch(() => ({ slots: [] as string[] }));
    for (const slot of slots) {
      await this.db
        .query(
          'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
          [slot],
        )
        .catch(() => undefined);
      await this.db.query('SELECT pg_drop_replication_slot($1)', [slot]).catch(() => undefined);
    }
    await this.db.end().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
    await this.postgres[Symbol.asyncDispose]();
  }
}
