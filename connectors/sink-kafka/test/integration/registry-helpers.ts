import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type ChangeEvent, NanosyncError, type TableSchema } from '@nanosync/core';
import { expect } from 'vitest';
import { KafkaErrorCode } from '../../src/errors.js';
import { createSink, uniqueName } from './helpers.js';

const run = promisify(execFile);

/** A two-column table for the registry's authentication tests, and its n-th insert. */
export const securedTable: TableSchema = {
  schema: 'public',
  name: 'secured',
  keyColumns: ['id'],
  columns: [
    { name: 'id', type: { kind: 'int32' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
};
export const securedInsert = (n: number): ChangeEvent => ({
  table: securedTable,
  op: 'insert',
  key: { id: n },
  after: { id: n, note: `n${n}` },
  position: `0000000004000000:${String(n).padStart(8, '0')}`,
});

/**
 * The error of a sink's first Avro write when the registry (or the TLS handshake with it)
 * refuses it: asserted to be NS_K6007, not retried, naming the registry's URL.
 */
export async function registryRefusal(
  brokers: string[],
  registryUrl: string,
  properties: Record<string, unknown>,
): Promise<NanosyncError> {
  await using handle = createSink({
    brokers: brokers.join(','),
    topic: uniqueName('ns-it-sr-refused'),
    message_format: 'avro',
    schema_registry_url: registryUrl,
    ...properties,
  });
  await handle.sink.open([securedTable]);
  const failure = await handle.sink.write([securedInsert(1)]).catch((e: unknown) => e);
  expect(failure).toBeInstanceOf(NanosyncError);
  const error = failure as NanosyncError;
  expect(error.code).toBe(KafkaErrorCode.KafkaSchemaRegistry);
  expect(error.retriable).toBe(false);
  expect(error.message).toContain(registryUrl);
  return error;
}
const AVRO_VERSION = '1.12.0';
const PROTOBUF_VERSION = '4.28.3';
const HERE = dirname(fileURLToPath(import.meta.url));

export interface RegistryReaders {
  /** Apache Avro, protobuf-java (+ util) and their dependencies (classpath `<lib>/*`). */
  lib: string;
  protoc: string;
}

/**
 * The Java side of the registry tests, from Maven Central once (mvn), cached under
 * ~/.cache/nanosync/registry-readers-<versions>. Undefined when mvn is missing.
 */
export async function registryReaders(): Promise<RegistryReaders | undefined> {
  const root = join(
    process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'),
    'nanosync',
    `registry-readers-avro${AVRO_VERSION}-protobuf${PROTOBUF_VERSION}`,
  );
  const lib = join(root, 'lib');
  const protoc = join(root, 'bin', `protoc-${PROTOBUF_VERSION}-linux-x86_64.exe`);
  if (existsSync(join(root, 'ready'))) return { lib, protoc };
  await mkdir(root, { recursive: true });
  await writeFile(
    join(root, 'pom.xml'),
    `<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>io.nanosync.test</groupId><artifactId>registry-readers</artifactId><version>1</version>
<dependencies>
<dependency><groupId>org.apache.avro</groupId><artifactId>avro</artifactId><version>${AVRO_VERSION}</version></dependency>
<dependency><groupId>com.google.protobuf</groupId><artifactId>protobuf-java</artifactId><version>${PROTOBUF_VERSION}</version></dependency>
</dependencies>
</project>`,
  );
  try {
    await run('mvn', [
      '-q',
      '-B',
      '-f',
      join(root, 'pom.xml'),
      'dependency:copy-dependencies',
      `-DoutputDirectory=${lib}`,
      '-DincludeScope=runtime',
    ]);
    await run('mvn', [
      '-q',
      '-B',
      '-f',
      join(root, 'pom.xml'),
      'dependency:copy',
      `-Dartifact=com.google.protobuf:protoc:${PROTOBUF_VERSION}:exe:linux-x86_64`,
      `-DoutputDirectory=${join(root, 'bin')}`,
    ]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  await chmod(protoc, 0o755);
  await writeFile(join(root, 'ready'), '');
  return { lib, protoc };
}

export interface JavaRecord {
  topic: string;
  partition: number;
  offset: number;
  valueId: number | undefined;
  key: string;
  op: string;
  lsn: string;
  /** Each field of `after` (else `before`); `value` in RegistryConsume's normal form (see its `norm`). */
  fields: { field: string; cls: string; number: string; text: string; value: string }[];
}

/**
 * Read `expected` records of `topics` with the Java Kafka client and decode each key and
 * value through the registry (RegistryConsume.java), as a consumer in another language would.
 */
export async function javaConsume(options: {
  readers: RegistryReaders;
  kafkaLib: string;
  brokers: string[];
  registryUrl: string;
  topics: string[];
  expected: number;
  isolation?: 'read_committed' | 'read_uncommitted';
  timeoutMs?: number;
  /** Sent as `Authorization: Bearer …` with every schema fetch. */
  bearerToken?: string;
}): Promise<JavaRecord[]> {
  const { stdout } = await run(
    'java',
    [
      '-Xmx256m',
      '-cp',
      `${options.readers.lib}/*:${options.kafkaLib}/*`,
      join(HERE, 'foreign', 'RegistryConsume.java'),
      options.brokers.join(','),
      options.registryUrl,
      options.isolation ?? 'read_committed',
      String(options.expected),
      String(options.timeoutMs ?? 60_000),
      options.readers.protoc,
      options.topics.join(','),
    ],
    {
      maxBuffer: 256 * 1024 * 1024,
      timeout: 240_000,
      env: { ...process.env, NS_REGISTRY_BEARER_TOKEN: options.bearerToken ?? '' },
    },
  );
  const records: JavaRecord[] = [];
  for (const line of stdout.split('\n')) {
    const parts = line.split('\t');
    if (parts[0] === 'R') {
      const record: JavaRecord = {
        topic: parts[1]!,
        partition: Number(parts[2]),
        offset: Number(parts[3]),
        valueId: parts[4] ? Number(parts[4]) : undefined,
        key: parts[5] ?? '',
        op: parts[6] ?? '',
        lsn: parts[7] ?? '',
        fields: [],
      };
      records.push(record);
    } else if (parts[0] === 'F') {
      const last = records[records.length - 1]!;
      last.fields.push({
        field: parts[2]!,
        cls: parts[3]!,
        number: parts[4]!,
        text: parts[5] ?? '',
        value: parts[6] ?? '',
      });
    }
  }
  return records;
}
