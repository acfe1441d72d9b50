import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '@nanosync/testcontainers';
import { startTool, type Tool } from '../util.js';
import type { DebeziumJars } from './resolve.js';

/** Producer settings shared by nanosync's Kafka sink and the Connect worker, so both pay the same broker-side cost. */
export interface ProducerSettings {
  acks: 'all';
  /** none | gzip | snappy | lz4 | zstd */
  compression: string;
  lingerMs: number;
}

export interface DebeziumConnectorSpec {
  name: string;
  pgUrl: string;
  brokers: string[];
  /** schema.table */
  table: string;
  topicPrefix: string;
  slot: string;
  publication: string;
  snapshotMode: 'initial' | 'no_data';
  snapshotThreads: number;
  /**
   * schema.table of a signal table (id, type, data): enables ad-hoc incremental snapshots
   * requested by inserting a row into it; the table is added to the connector's tables.
   */
  signalTable?: string;
  producer: ProducerSettings;
  /** Worker folder: properties, offsets file and logs. Reuse it to resume from the stored offsets. */
  workDir: string;
}

export function debeziumTopic(spec: Pick<DebeziumConnectorSpec, 'topicPrefix' | 'table'>): string {
  return `${spec.topicPrefix}.${spec.table}`;
}

function properties(entries: Record<string, string | number | undefined>): string {
  return `${Object.entries(entries)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${String(v).replaceAll('\\', '\\\\')}`)
    .join('\n')}\n`;
}

export function workerProperties(jars: DebeziumJars, spec: DebeziumConnectorSpec, restPort: number): string {
  return properties({
    'bootstrap.servers': spec.brokers.join(','),
    'key.converter': 'org.apache.kafka.connect.json.JsonConverter',
    'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
    'key.converter.schemas.enable': 'false',
    'value.converter.schemas.enable': 'false',
    'offset.storage.file.filename': join(spec.workDir, 'offsets.dat'),
    // Debezium confirms the slot position when Connect commits offsets: keep that close to nanosync's per-batch acknowledgement.
    'offset.flush.interval.ms': 250,
    'plugin.path': jars.pluginDir,
    // Debezium ships ServiceLoader manifests: skip the slow reflective classpath scan at startup.
    'plugin.discovery': 'service_load',
    listeners: `http://127.0.0.1:${restPort}`,
    'producer.acks': spec.producer.acks,
    'producer.compression.type': spec.producer.compression,
    'producer.linger.ms': spec.producer.lingerMs,
  });
}

export function connectorProperties(spec: DebeziumConnectorSpec): string {
  const url = new URL(spec.pgUrl);
  return properties({
    name: spec.name,
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'tasks.max': 1,
    'plugin.name': 'pgoutput',
    'database.hostname': url.hostname,
    'database.port': url.port || '5432',
    'database.user': decodeURIComponent(url.username || 'postgres'),
    'database.password': url.password ? decodeURIComponent(url.password) : undefined,
    'database.dbname': decodeURIComponent(url.pathname.replace(/^\//, '')) || 'postgres',
    'topic.prefix': spec.topicPrefix,
    'slot.name': spec.slot,
    'publication.name': spec.publication,
    'publication.autocreate.mode': 'filtered',
    'table.include.list': spec.signalTable ? `${spec.table},${spec.signalTable}` : spec.table,
    // PostgreSQL: schema.table.
    'signal.data.collection': spec.signalTable,
    'snapshot.mode': spec.snapshotMode,
    'snapshot.max.threads': spec.snapshotThreads,
    // One message per change, like nanosync: no tombstone after each delete.
    'tombstones.on.delete': 'false',
  });
}

function javaBinary(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

/** Starts Kafka Connect standalone with one Debezium PostgreSQL connector. Its log goes to <workDir>/connect.log. */
export async function startDebezium(jars: DebeziumJars, spec: DebeziumConnectorSpec): Promise<Tool> {
  await mkdir(spec.workDir, { recursive: true });
  const worker = join(spec.workDir, 'worker.properties');
  const connector = join(spec.workDir, 'connector.properties');
  const log4j = join(spec.workDir, 'log4j.properties');
  await writeFile(worker, workerProperties(jars, spec, await freePort()));
  await writeFile(connector, connectorProperties(spec));
  await writeFile(
    log4j,
    properties({
      'log4j.rootLogger': 'INFO, file',
      'log4j.appender.file': 'org.apache.log4j.FileAppender',
      'log4j.appender.file.File': join(spec.workDir, 'connect.log'),
      'log4j.appender.file.layout': 'org.apache.log4j.PatternLayout',
      'log4j.appender.file.layout.ConversionPattern': '[%d] %p %m (%c)%n',
      'log4j.logger.org.reflections': 'ERROR',
      'log4j.logger.org.apache.kafka.clients': 'WARN',
    }),
  );
  // Same heap bounds as Kafka's connect-standalone.sh.
  return startTool(
    'debezium',
    javaBinary(),
    [
      '-Xms256m',
      '-Xmx2g',
      `-Dlog4j.configuration=file:${log4j}`,
      '-cp',
      `${jars.libDir}/*`,
      'org.apache.kafka.connect.cli.ConnectStandalone',
      worker,
      connector,
    ],
    { cwd: spec.workDir, logFile: join(spec.workDir, 'stdout.log') },
  );
}
