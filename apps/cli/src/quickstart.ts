/**
 * `pnpm quickstart`: a real pipeline on this machine with nothing configured.
 *
 * Starts a throw-away PostgreSQL (and Kafka with `--kafka`) through @nanosync/testcontainers,
 * fills a demo table, keeps writing to it, and runs a `cdc_backfill` pipeline in this
 * process exactly as `nanosync run` would, printing progress until Ctrl-C. Everything it
 * writes lives under ./.nanosync/quickstart (config, state, output); the databases it
 * started are torn down on exit.
 */
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ErrorCode, type Logger, NanosyncError } from '@nanosync/core';
import type { PipelineStatus } from '@nanosync/core/host';
import { type KafkaService, type PostgresService, startKafka, startPostgres } from '@nanosync/testcontainers';
import pg from 'pg';
import { storedEntries } from './commands/apply.js';
import { checkConfigFile } from './config-check.js';
import { connectorResolver } from './connectors.js';
import { formatLag, formatRate } from './format.js';
import { type CliIo, processIo } from './io.js';
import { SERVING_BANNER, STOP_DEADLINE_MS } from './server/foreground.js';
import { serverLogger } from './server/logger.js';
import { type RunningServer, startServer } from './server/start.js';
import { onStopSignals } from './signals.js';
import { statePaths } from './state-paths.js';

const PIPELINE = 'quickstart-orders';
const KAFKA_TOPIC = 'quickstart.orders';
const HELP = `Usage: pnpm quickstart [--kafka] [--rows N] [--dir PATH]

Starts a local PostgreSQL with a demo table public.orders, a writer that keeps
inserting, updating and deleting rows, and a cdc_backfill pipeline that copies the
table and then streams every change. Stop with Ctrl-C.

Options:
  --kafka       write to a local Kafka topic instead of JSON-lines files
  --rows N      rows in the demo table before the pipeline starts (default 5000)
  --dir PATH    working folder (default ./.nanosync/quickstart; wiped at start)
  -h, --help    show this help`;

interface Demo {
  postgres?: PostgresService;
  kafka?: KafkaService;
  server?: RunningServer;
  writer?: { stop(): Promise<number> };
  progress?: NodeJS.Timeout;
}

export async function quickstart(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      kafka: { type: 'boolean' },
      rows: { type: 'string' },
      dir: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  const rows = Number(values.rows ?? 5000);
  if (!Number.isInteger(rows) || rows < 0 || rows > 10_000_000)
    throw new NanosyncError(ErrorCode.CliUsage, '--rows must be a whole number up to 10000000');
  const workDir = resolve(io.cwd, values.dir ?? '.nanosync/quickstart');
  const logger = serverLogger(undefined, io, 'quickstart');
  const demo: Demo = {};
  let stopping = false;

  const teardown = async () => {
    if (demo.progress) clearInterval(demo.progress);
    const changes = await demo.writer?.stop().catch(() => 0);
    if (changes !== undefined) io.out(`writer stopped after ${changes} changes`);
    await demo.server?.stop().catch((err) => logger.warn('stopping the pipeline failed', { error: String(err) }));
    for (const service of [demo.kafka, demo.postgres]) {
      if (service) await Promise.resolve(service[Symbol.asyncDispose]()).catch(() => undefined);
    }
  };
  const stopped = new Promise<void>((resolveStop) => {
    onStopSignals(
      () => {
        stopping = true;
        io.out('\nstopping: checkpointing the pipeline and tearing down the demo services…');
        const deadline = setTimeout(() => {
          io.err(`quickstart: could not stop within ${(STOP_DEADLINE_MS * 2) / 1000} s, exiting`);
          process.exit(1);
        }, STOP_DEADLINE_MS * 2);
        deadline.unref();
        void teardown().finally(resolveStop);
      },
      () => {
        io.err('quickstart: second signal, exiting now');
        process.exit(1);
      },
    );
  });

  try {
    await prepareWorkDir(workDir);
    io.out('starting a local PostgreSQL (first run may take a while)…');
    demo.postgres = await keepingSignalsOurs(() => startPostgres({ fresh: true }));
    const databaseUrl = await demo.postgres.createDatabase('nanosync_demo');
    await seedDemoTable(databaseUrl, rows);
    io.out(`PostgreSQL ready on ${demo.postgres.host}:${demo.postgres.port}; public.orders has ${rows} rows`);

    let sinkConnection: string;
    let outputHint: string;
    if (values.kafka) {
      io.out('starting a local Kafka broker (first run downloads its jars)…');
      demo.kafka = await keepingSignalsOurs(() => startKafka({ fresh: true }));
      sinkConnection = kafkaConnection(demo.kafka.brokers);
      outputHint = `Kafka topic ${KAFKA_TOPIC} on ${demo.kafka.brokers.join(',')}`;
    } else {
      const outDir = join(workDir, 'output');
      sinkConnection = fileConnection(outDir);
      outputHint = `${relative(io.cwd, join(outDir, 'public.orders.jsonl')) || '.'} (one JSON line per event)`;
    }

    const configFile = join(workDir, 'nanosync.yaml');
    await writeFile(configFile, configYaml(databaseUrl, sinkConnection));
    const checked = await checkConfigFile(configFile, io, connectorResolver());
    const paths = statePaths(join(workDir, 'state.db'), io);
    demo.server = await startQuickstartServer(paths, io, logger);
    for (const entry of await storedEntries(checked, demo.server.secretKey)) {
      await demo.server.engine.apply(entry.name, entry.definition, entry.hash, entry.replicationType);
    }
    demo.writer = startWriter(databaseUrl, logger);

    io.out('');
    io.out(SERVING_BANNER);
    io.out(`  config   ${relative(io.cwd, configFile)}`);
    io.out(`  output   ${outputHint}`);
    io.out(
      `  admin    pnpm nanosync list pipelines --server ${demo.server.url.replace('http://', '')} --state ${relative(io.cwd, paths.stateFile)}`,
    );
    io.out('');
    demo.progress = setInterval(() => {
      void demo.server?.engine
        .status(PIPELINE)
        .then((status) => io.out(progressLine(status)))
        .catch(() => undefined);
    }, 2000);
    await stopped;
    return 0;
  } catch (err) {
    if (!stopping) {
      stopping = true;
      await teardown();
    }
    throw err;
  }
}

/**
 * The test-service helpers kill their services the moment SIGINT/SIGTERM arrives, which is
 * right for a test run but would pull PostgreSQL away before the pipeline checkpointed.
 * The quickstart stops things in order itself (pipeline, then Kafka, then PostgreSQL), so
 * their signal listeners are taken off again; their exit hook and orphan watchdog stay in
 * place in case the quickstart dies without cleaning up.
 */
async function keepingSignalsOurs<T>(start: () => Promise<T>): Promise<T> {
  const signals = ['SIGINT', 'SIGTERM'] as const;
  const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
  try {
    return await start();
  } finally {
    for (const signal of signals) {
      for (const listener of process.listeners(signal)) {
        if (!before.get(signal)!.has(listener)) process.off(signal, listener);
      }
    }
  }
}

async function prepareWorkDir(dir: string): Promise<void> {
  // A previous run's state points at a PostgreSQL that no longer exists: start clean.
  const exists = await stat(dir).then(
    () => true,
    () => false,
  );
  if (exists) {
    for (const name of ['state.db', 'state.db-wal', 'state.db-shm', 'output', 'nanosync.yaml']) {
      await rm(join(dir, name), { recursive: true, force: true });
    }
  }
  await mkdir(dir, { recursive: true });
}

async function startQuickstartServer(
  paths: ReturnType<typeof statePaths>,
  io: CliIo,
  logger: Logger,
): Promise<RunningServer> {
  try {
    return await startServer({ paths, listen: { host: '127.0.0.1', port: 7654 }, io, logger });
  } catch (err) {
    if (!NanosyncError.is(err, ErrorCode.PortInUse)) throw err;
    return startServer({ paths, listen: { host: '127.0.0.1', port: 0 }, io, logger });
  }
}

async function seedDemoTable(url: string, rows: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`
      CREATE TABLE public.orders (
        id bigserial PRIMARY KEY,
        customer text NOT NULL,
        amount numeric(12, 2) NOT NULL,
        status text NOT NULL DEFAULT 'new',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await client.query(
      `INSERT INTO public.orders (customer, amount, status)
       SELECT 'customer-' || (g % 500), round((random() * 1000)::numeric, 2), (ARRAY['new','paid','shipped'])[1 + g % 3]
       FROM generate_series(1, $1) AS g`,
      [rows],
    );
  } finally {
    await client.end();
  }
}

/** A few changes every 200 ms: mostly inserts and updates, some deletes. */
function startWriter(url: string, logger: Logger): { stop(): Promise<number> } {
  const client = new pg.Client({ connectionString: url });
  let running = true;
  let changes = 0;
  const loop = (async () => {
    await client.connect();
    while (running) {
      const roll = Math.random();
      try {
        let result: pg.QueryResult;
        if (roll < 0.5) {
          result = await client.query(
            `INSERT INTO public.orders (customer, amount) VALUES ('customer-' || floor(random() * 500), round((random() * 1000)::numeric, 2))`,
          );
        } else if (roll < 0.9) {
          result = await client.query(
            `UPDATE public.orders SET status = (ARRAY['paid','shipped','returned'])[1 + floor(random() * 3)::int], updated_at = now()
             WHERE id = (SELECT id FROM public.orders ORDER BY random() LIMIT 1)`,
          );
        } else {
          result = await client.query(
            'DELETE FROM public.orders WHERE id = (SELECT id FROM public.orders ORDER BY random() LIMIT 1)',
          );
        }
        changes += result.rowCount ?? 0;
      } catch (err) {
        if (running) logger.warn('demo writer: statement failed', { error: (err as Error).message });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop.catch(() => undefined);
      await client.end().catch(() => undefined);
      return changes;
    },
  };
}

function progressLine(status: PipelineStatus): string {
  const parts = [status.state.padEnd(12)];
  if (status.snapshot && status.state === 'SNAPSHOTTING') {
    const s = status.snapshot;
    parts.push(
      `snapshot ${s.rowsRead}/${s.rowsEstimated ?? '?'} rows, partitions ${s.partitionsDone}/${s.partitionsTotal}`,
    );
  } else {
    const snapshotted = status.tables.reduce((sum, t) => sum + t.rowsSnapshotted, 0);
    const streamed = status.tables.reduce((sum, t) => sum + t.events, 0);
    parts.push(
      `snapshot rows ${snapshotted}, events streamed ${streamed}, ${formatRate(status.eventsPerSecond)} events/s, lag ${formatLag(status.lagSeconds)}`,
    );
  }
  if (status.error) parts.push(`error: ${status.error}`);
  return parts.join('  ');
}

function fileConnection(outDir: string): string {
  return `  - name: demo-output
    type: file
    properties:
      path: ${JSON.stringify(outDir)}`;
}

function kafkaConnection(brokers: string[]): string {
  return `  - name: demo-output
    type: kafka
    properties:
      brokers: ${JSON.stringify(brokers.join(','))}`;
}

function configYaml(databaseUrl: string, sinkConnection: string): string {
  return `# Written by 'pnpm quickstart'. Run it yourself with: nanosync run --file <this file>
connections:
  - name: demo-postgres
    type: postgres
    dsn: ${JSON.stringify(databaseUrl)}
${sinkConnection}
pipelines:
  - name: ${PIPELINE}
    replication_type: cdc_backfill
    source:
      connection: demo-postgres
      tables:
        - public.orders
    sink:
      connection: demo-output
${sinkConnection.includes('type: kafka') ? `      properties:\n        topic: ${KAFKA_TOPIC}\n` : ''}`;
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname);
if (isMain) {
  const io = processIo();
  const baseIo: CliIo = { ...io, cwd: process.env.INIT_CWD ?? io.cwd };
  quickstart(process.argv.slice(2), baseIo).then(
    (code) => process.exit(code),
    (err: unknown) => {
      io.err(`quickstart: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(NanosyncError.is(err) && err.code === ErrorCode.CliUsage ? 2 : 1);
    },
  );
}
