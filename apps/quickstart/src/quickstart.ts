/**
 * `bash scripts/ns quickstart`: a real pipeline on this machine with nothing configured.
 *
 * Starts a throw-away PostgreSQL (and Kafka with `--kafka`) through @nanosync/testcontainers,
 * fills a demo table, runs a `cdc_backfill` pipeline in this process exactly as
 * `nanosync run` would, and once the snapshot is done keeps changing the table, printing
 * progress until Ctrl-C. Everything it writes lives in one folder (config, state, output);
 * the services it started are torn down on exit. This package is private: the published
 * CLI does not carry the test-service helpers.
 */
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ErrorCode, type Logger, NanosyncError } from '@nanosync/core';
import type { PipelineStatus } from '@nanosync/core/host';
import { type KafkaService, type PostgresService, startKafka, startPostgres } from '@nanosync/testcontainers';
import {
  type CliIo,
  checkConfigFile,
  connectorResolver,
  defaultStateFile,
  formatLag,
  formatRate,
  onStopSignals,
  type RunningServer,
  STOP_DEADLINE_MS,
  serverLogger,
  startServer,
  statePaths,
  storedEntries,
} from 'nanosync';
import pg from 'pg';

const PIPELINE = 'quickstart-orders';
const KAFKA_TOPIC = 'quickstart.orders';
const HELP = `Usage: bash scripts/ns quickstart [--kafka] [--rows N] [--dir PATH]

Starts a local PostgreSQL with a demo table public.orders, and a cdc_backfill
pipeline that copies the table and then streams every change. Once the copy is
done, a writer keeps inserting, updating and deleting a few rows per second.
Stop with Ctrl-C.

Options:
  --kafka       write to a local Kafka topic instead of JSON-lines files
                (needs Java 17+ and Maven)
  --rows N      rows in the demo table before the pipeline starts (default 5000)
  --dir PATH    working folder (default: $XDG_STATE_HOME/nanosync/quickstart, else
                ~/.local/state/nanosync/quickstart); its state and config are replaced
                at start, and its output too unless --kafka
  -h, --help    show this help`;

interface Demo {
  postgres?: PostgresService;
  kafka?: KafkaService;
  server?: RunningServer;
  writer?: { stop(): Promise<number> };
  progress?: NodeJS.Timeout;
}

/** The default working folder: next to the CLI's default state, per user, outside any checkout. */
export function defaultQuickstartDir(env: NodeJS.ProcessEnv): string {
  return join(dirname(defaultStateFile(env)), 'quickstart');
}

/** The CLI as the user can type it: `nanosync`, or what scripts/ns says it is called. */
function cliName(env: NodeJS.ProcessEnv): string {
  return env.NANOSYNC_COMMAND?.trim() || 'nanosync';
}

/** A path as short as it can be shown: relative to the user's folder when inside it. */
function shown(io: CliIo, path: string): string {
  const rel = relative(io.cwd, path);
  return rel !== '' && !rel.startsWith('..') ? rel : path;
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
  const workDir = values.dir ? resolve(io.cwd, values.dir) : defaultQuickstartDir(io.env);
  const logger = serverLogger(undefined, io, 'quickstart');
  const nanosync = cliName(io.env);
  const demo: Demo = {};
  let stopping = false;
  let delivered = { snapshotted: 0, streamed: 0 };

  const teardown = async () => {
    if (demo.progress) clearInterval(demo.progress);
    const changes = await demo.writer?.stop().catch(() => 0);
    if (changes !== undefined) io.out(`writer stopped after ${changes} changes`);
    const final = await demo.server?.engine.status(PIPELINE).catch(() => undefined);
    await demo.server?.stop().catch((err) => logger.warn('stopping the pipeline failed', { error: String(err) }));
    if (final) delivered = totals(final);
    if (demo.server) {
      io.out(
        `delivered ${delivered.snapshotted} snapshot rows and ${delivered.streamed} changes; the output stays in ${shown(io, workDir)}`,
      );
    }
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
    await prepareWorkDir(workDir, { keepOutput: values.kafka === true });
    io.out('starting a local PostgreSQL (first run may take a while)…');
    demo.postgres = await keepingSignalsOurs(() => startPostgres({ fresh: true }));
    const databaseUrl = await demo.postgres.createDatabase('nanosync_demo');
    await seedDemoTable(databaseUrl, rows);
    io.out(`PostgreSQL ready on ${demo.postgres.host}:${demo.postgres.port}; public.orders has ${rows} rows`);

    let sinkConnection: string;
    const look: string[] = [];
    let outputHint: string;
    if (values.kafka) {
      io.out('starting a local Kafka broker (first run downloads its jars)…');
      demo.kafka = await keepingSignalsOurs(() => startKafka({ fresh: true }));
      const brokers = demo.kafka.brokers.join(',');
      sinkConnection = kafkaConnection(brokers);
      outputHint = `Kafka topic ${KAFKA_TOPIC} on ${brokers}`;
      if (demo.kafka.libDir) {
        look.push(
          `java -cp '${demo.kafka.libDir}/*' kafka.tools.ConsoleConsumer --bootstrap-server ${brokers} --topic ${KAFKA_TOPIC} --from-beginning --property print.key=true`,
        );
      }
      look.push(`kcat -C -b ${brokers} -t ${KAFKA_TOPIC} -K '\t'    (if you have kcat)`);
    } else {
      const outDir = join(workDir, 'output');
      sinkConnection = fileConnection(outDir);
      const file = shown(io, join(outDir, 'public.orders.jsonl'));
      outputHint = `${file} (one JSON line per event)`;
      look.push(`tail -f ${file}`);
    }

    const configFile = join(workDir, 'nanosync.yaml');
    await writeFile(configFile, configYaml(databaseUrl, sinkConnection, nanosync));
    const checked = await checkConfigFile(configFile, io, connectorResolver());
    const paths = statePaths(join(workDir, 'state.db'), io);
    demo.server = await startQuickstartServer(paths, io, logger);
    for (const entry of await storedEntries(checked, demo.server.secretKey)) {
      await demo.server.engine.apply(entry.name, entry.definition, entry.hash, entry.replicationType);
    }
    const client = `--server ${demo.server.url.replace('http://', '')} --state ${shown(io, paths.stateFile)}`;

    io.out('');
    io.out('nanosync quickstart running — Ctrl-C to stop');
    io.out(`  config   ${shown(io, configFile)}`);
    io.out(`  output   ${outputHint}`);
    io.out('');
    io.out('Look at the data (in another terminal):');
    for (const line of look) io.out(`  ${line}`);
    io.out('Watch and steer the pipeline:');
    io.out(`  ${nanosync} list pipelines ${client}`);
    io.out(`  ${nanosync} monitor ${client}`);
    io.out(`  ${nanosync} metrics pipeline ${PIPELINE} ${client}`);
    io.out(`  ${nanosync} pipeline pause ${PIPELINE} ${client}`);
    io.out('Try a change: edit the config (e.g. add a filter), then');
    io.out(`  ${nanosync} apply --file ${shown(io, configFile)} ${client}`);
    io.out('');

    let last: { at: number; streamed: number } | undefined;
    demo.progress = setInterval(() => {
      void demo.server?.engine
        .status(PIPELINE)
        .then((status) => {
          const now = totals(status);
          const at = Date.now();
          const rate = last && at > last.at ? ((now.streamed - last.streamed) * 1000) / (at - last.at) : undefined;
          last = { at, streamed: now.streamed };
          io.out(progressLine(status, now, rate));
          // The writer starts once the copy is done, so the snapshot holds exactly the rows
          // announced above and every later change arrives as a streamed event.
          if (!demo.writer && !stopping && status.state === 'LIVE_CDC') {
            demo.writer = startWriter(databaseUrl, logger);
            io.out(`snapshot done: ${now.snapshotted} rows copied; now changing a few rows per second`);
          }
        })
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

function totals(status: PipelineStatus): { snapshotted: number; streamed: number } {
  return {
    snapshotted: status.tables.reduce((sum, t) => sum + t.rowsSnapshotted, 0),
    streamed: status.tables.reduce((sum, t) => sum + t.events, 0),
  };
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

async function prepareWorkDir(dir: string, { keepOutput }: { keepOutput: boolean }): Promise<void> {
  // A previous run's state points at a PostgreSQL that no longer exists: start clean.
  const exists = await stat(dir).then(
    () => true,
    () => false,
  );
  if (exists) {
    const names = ['state.db', 'state.db-wal', 'state.db-shm', 'nanosync.yaml'];
    for (const name of keepOutput ? names : [...names, 'output']) {
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

function progressLine(
  status: PipelineStatus,
  done: { snapshotted: number; streamed: number },
  changesPerSecond: number | undefined,
): string {
  const parts = [status.state.padEnd(12)];
  if (status.snapshot && status.state === 'SNAPSHOTTING') {
    const s = status.snapshot;
    parts.push(
      `snapshot ${s.rowsRead}/${s.rowsEstimated ?? '?'} rows, partitions ${s.partitionsDone}/${s.partitionsTotal}`,
    );
  } else {
    // The rate is measured here between two progress lines, over streamed changes only, so
    // it matches what the writer does (the server's events/s also counts snapshot rows).
    parts.push(
      `${done.snapshotted} rows snapshotted, ${done.streamed} changes streamed, ${formatRate(changesPerSecond)} changes/s, lag ${formatLag(status.lagSeconds)}`,
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

function kafkaConnection(brokers: string): string {
  return `  - name: demo-output
    type: kafka
    properties:
      brokers: ${JSON.stringify(brokers)}`;
}

function configYaml(databaseUrl: string, sinkConnection: string, nanosync: string): string {
  return `# Written by the nanosync quickstart. The PostgreSQL it names runs only while the
# quickstart does. Check this file offline with: ${nanosync} validate --file <this file>
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
