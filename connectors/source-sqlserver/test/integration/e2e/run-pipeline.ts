/**
 * A nanosync engine in a child process for the SQL Server crash tests: loads a YAML config,
 * applies its pipelines into a SQLite state store and runs them until SIGTERM (clean stop)
 * or SIGKILL (the crash under test). Prints `READY`, then `STATE <pipeline> <state>` lines.
 *
 *   node --conditions=@nanosync/source --import tsx run-pipeline.ts <config.yaml> <state.sqlite> <secret-key-hex>
 */
import { dirname } from 'node:path';
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

const [configFile, stateFile, keyHex] = process.argv.slice(2);
if (!configFile || !stateFile || !keyHex) {
  process.stderr.write('usage: run-pipeline.ts <config.yaml> <state.sqlite> <secret-key-hex>\n');
  process.exit(2);
}
const secretKey = Buffer.from(keyHex, 'hex');
const resolve = createConnectorResolver({
  builtins: {
    '@nanosync/source-sqlserver': () => import('../../../src/index.js'),
    '@nanosync/sink-file': () => import('@nanosync/sink-file'),
  },
});
const logger = createLogger({ level: 'info' });
const { config } = await loadConfigFile(configFile);
const stored = await toStoredDefinitions(await resolveConfig(config, resolve), {
  secretKey,
  configDir: dirname(configFile),
});
const store = await openSqliteStateStore(stateFile);
const engine = new Engine({
  store,
  logger,
  holderId: `test-${process.pid}`,
  leaseTtlMs: 3000,
  materialize: (definition) => materializePipeline(definition, { secretKey, resolve }),
  runtime: { metricsIntervalMs: 500, retry: { baseDelayMs: 100, maxDelayMs: 1000 } },
});
engine.on('state', (event) =>
  process.stdout.write(`STATE ${event.pipeline} ${event.state}${event.error ? ` ${event.error}` : ''}\n`),
);
for (const [name, pipeline] of stored)
  await engine.apply(name, pipeline.definition, pipeline.hash, pipeline.replicationType);
await engine.start();
process.stdout.write('READY\n');
const keepAlive = setInterval(() => {}, 60_000);
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  clearInterval(keepAlive);
  await engine.stop();
  await store.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
