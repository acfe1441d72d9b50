/**
 * A nanosync server in a child process, for crash tests: loads a YAML config, applies its
 * pipelines into a SQLite state store and runs them with core's Engine until SIGTERM (clean
 * stop) or SIGKILL (the crash under test). Prints `READY` once the engine started and one
 * `STATE <pipeline> <state>` line per state change.
 *
 * `NS_TEST_KILL` (JSON, see `KillHook` in harness.ts) makes it SIGKILL itself at an exact
 * point: inside a sink write, after a write but before its checkpoint, or after a
 * checkpoint but before the source is acknowledged. It prints `HOOK <what>` first.
 * `NS_TEST_WRITE_DELAY_MS` makes every sink write wait that long first (a slow sink); with
 * `NS_TEST_SLOW_SINK` only the file sinks whose `file`/`path` contains that text are slowed,
 * and `NS_TEST_MS_PER_EVENT_FILE` names a file holding milliseconds per event, read at every
 * write: the write waits that long times its events first (a throttle in events per second,
 * whatever the batch size), which a test can change or lift (0) while the pipeline runs.
 * `NS_TEST_QUEUE_MAX_EVENTS`: each sink's in-memory queue bound (default 20,000 events).
 * `NS_TEST_STATUS_FILE`: the engine's status of every pipeline (what the admin API serves) is
 * written there as JSON every 200 ms.
 * The state folder (spill logs, dead letters) is the state store's folder, as with `serve`.
 * SIGUSR2 resumes every pipeline (what `nanosync pipeline resume` does).
 * SIGHUP re-snapshots the tables named in `NS_TEST_RESNAPSHOT` and prints `RESNAPSHOT …`.
 *
 *   node --conditions=@nanosync/source --import tsx run-pipeline.ts <config.yaml> <state.sqlite> <secret-key-hex>
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ChangeEvent, Sink, SinkDefinition } from '@nanosync/core';
import {
  createConnectorResolver,
  createLogger,
  Engine,
  loadConfigFile,
  materializePipeline,
  openSqliteStateStore,
  resolveConfig,
  type StateStore,
  toStoredDefinitions,
} from '@nanosync/core/host';
import type { KillHook } from './harness.js';

const [configFile, stateFile, keyHex] = process.argv.slice(2);
if (!configFile || !stateFile || !keyHex) {
  process.stderr.write('usage: run-pipeline.ts <config.yaml> <state.sqlite> <secret-key-hex>\n');
  process.exit(2);
}
const secretKey = Buffer.from(keyHex, 'hex');
const hook = process.env.NS_TEST_KILL ? (JSON.parse(process.env.NS_TEST_KILL) as KillHook) : undefined;
const writeDelayMs = Number(process.env.NS_TEST_WRITE_DELAY_MS ?? 0);
const slowSink = process.env.NS_TEST_SLOW_SINK;
const perEventFile = process.env.NS_TEST_MS_PER_EVENT_FILE;
const statusFile = process.env.NS_TEST_STATUS_FILE;
const queueMaxEvents = process.env.NS_TEST_QUEUE_MAX_EVENTS ? Number(process.env.NS_TEST_QUEUE_MAX_EVENTS) : undefined;

/** How long a write of `events` events waits first: `NS_TEST_WRITE_DELAY_MS` plus the per-event throttle. */
function currentDelay(events: number): number {
  if (perEventFile === undefined) return writeDelayMs;
  let perEvent = 0;
  try {
    perEvent = Number(readFileSync(perEventFile, 'utf8').trim()) || 0;
  } catch {}
  return writeDelayMs + perEvent * events;
}

/** The crash under test. Pipes to the parent are written synchronously, so the line gets out first. */
function die(what: string): Promise<never> {
  process.stdout.write(`HOOK ${what}\n`);
  process.kill(process.pid, 'SIGKILL');
  return new Promise<never>(() => {});
}

/** The file sink, slowed down by `writeDelayMs` and with the sink-side crash points of `hook`. */
function withSinkHook(definition: SinkDefinition): SinkDefinition {
  let streamEvents = 0;
  const isStream = (e: ChangeEvent) => e.op !== 'read';
  const write = async (sink: Sink, events: ChangeEvent[], slow: boolean): Promise<void> => {
    const delay = slow ? currentDelay(events.length) : 0;
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (hook === undefined || 'afterCheckpoints' in hook) return sink.write(events);
    if ('afterEvent' in hook) {
      const { id, op } = hook.afterEvent;
      const at = events.findIndex((e) => isStream(e) && Number(e.key.id) === id && (op === undefined || e.op === op));
      if (at < 0) return sink.write(events);
      await sink.write(events.slice(0, at + 1));
      return die(`after event ${events[at]!.position}, ${events.length - at - 1} events of the write left out`);
    }
    const before = streamEvents;
    streamEvents += events.filter(isStream).length;
    await sink.write(events);
    if (before < hook.afterStreamEvents && streamEvents >= hook.afterStreamEvents)
      await die(`after a write ending at ${events.at(-1)?.position}, before its checkpoint`);
  };
  return {
    ...definition,
    async create(config, context) {
      const sink = await definition.create(config, context);
      const target = String((config as { file?: string; path?: string }).file ?? (config as { path?: string }).path);
      const slow = slowSink === undefined || target.includes(slowSink);
      return {
        open: (tables) => sink.open(tables),
        close: () => sink.close(),
        write: (events) => write(sink, events, slow),
      };
    },
  };
}

/** The state store, with the crash point between a stored checkpoint and the acknowledgement. */
function withStoreHook(store: StateStore): StateStore {
  if (hook === undefined || !('afterCheckpoints' in hook)) return store;
  let saved = 0;
  return new Proxy(store, {
    get(target, property) {
      if (property === 'saveCheckpoint') {
        return async (pipeline: string, sink: string, position: string) => {
          await target.saveCheckpoint(pipeline, sink, position);
          if (++saved === hook.afterCheckpoints) await die(`after checkpoint ${position}, before the acknowledgement`);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const resolve = createConnectorResolver({
  builtins: {
    '@nanosync/source-postgres': () => import('../../../src/index.js'),
    // Only for start-up failure tests (a closed broker); this connector's tests use the file sink.
    '@nanosync/sink-kafka': () => import('../../../../sink-kafka/src/index.js'),
    '@nanosync/sink-file': async () => ({
      default: withSinkHook((await import('@nanosync/sink-file')).default as SinkDefinition),
    }),
  },
});
const logger = createLogger({ level: (process.env.NS_LOG_LEVEL as 'info' | undefined) ?? 'info' });
const { config } = await loadConfigFile(configFile);
const stored = await toStoredDefinitions(await resolveConfig(config, resolve), {
  secretKey,
  configDir: dirname(configFile),
});
const store = await openSqliteStateStore(stateFile);
const engine = new Engine({
  store: withStoreHook(store),
  logger,
  holderId: `test-${process.pid}`,
  leaseTtlMs: 3000,
  materialize: (definition) => materializePipeline(definition, { secretKey, resolve }),
  runtime: {
    metricsIntervalMs: 500,
    retry: { baseDelayMs: 100, maxDelayMs: 1000 },
    dataDir: dirname(stateFile),
    ...(queueMaxEvents ? { queue: { maxEvents: queueMaxEvents } } : {}),
  },
});
engine.on('state', (event) =>
  process.stdout.write(`STATE ${event.pipeline} ${event.state}${event.error ? ` ${event.error}` : ''}\n`),
);
for (const [name, pipeline] of stored)
  await engine.apply(name, pipeline.definition, pipeline.hash, pipeline.replicationType);
await engine.start();
process.stdout.write('READY\n');
// The engine's own timers do not hold the process open (a server has its HTTP listener for that).
const keepAlive = setInterval(() => {}, 60_000);
const statusTimer =
  statusFile === undefined
    ? undefined
    : setInterval(() => {
        void Promise.all([...stored.keys()].map(async (name) => [name, await engine.status(name)] as const)).then(
          (all) => {
            writeFileSync(`${statusFile}.tmp`, JSON.stringify(Object.fromEntries(all)));
            renameSync(`${statusFile}.tmp`, statusFile);
          },
          () => {},
        );
      }, 200);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  clearInterval(keepAlive);
  if (statusTimer) clearInterval(statusTimer);
  await engine.stop();
  await store.close();
  process.exit(0);
};
// SIGHUP: `engine.resnapshot` of the tables in NS_TEST_RESNAPSHOT (`pipeline:schema.table,…`).
process.on('SIGHUP', () => {
  const [pipeline = '', tables = ''] = (process.env.NS_TEST_RESNAPSHOT ?? '').split(':');
  engine.resnapshot(pipeline, tables === '' ? [] : tables.split(',')).then(
    (chosen) => process.stdout.write(`RESNAPSHOT ${pipeline} ${chosen.join(',')}\n`),
    (err: unknown) => process.stdout.write(`RESNAPSHOT-FAILED ${pipeline} ${(err as Error).message}\n`),
  );
});
process.on('SIGTERM', () => void stop());
// `nanosync pipeline resume` of every pipeline, for tests of a pipeline that paused itself.
process.on('SIGUSR2', () => {
  for (const name of stored.keys()) void engine.resume(name);
});
process.on('SIGINT', () => void stop());
