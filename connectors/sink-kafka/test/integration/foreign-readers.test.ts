import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ColumnSchema, LogicalType, TableSchema } from '@nanosync/core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FRAME_PROTOBUF, unframe } from '../../src/formats/framing.js';
import { codecFor, protobufDescriptorOf } from '../../src/formats/index.js';
import { protobufSchemaText } from '../../src/formats/protobuf.js';
import { timestampToMicros } from '../../src/formats/temporal.js';
import { allTypesEvents, allTypesTable } from '../fixtures/all-types.js';
import { expectedNumber, insertRow as insert } from '../fixtures/events.js';
import { extremeRows, extremesTable } from '../fixtures/extremes.js';

const run = promisify(execFile);
const AVRO_VERSION = '1.12.0';
const PROTOC_VERSION = '4.28.3';
const HERE = dirname(fileURLToPath(import.meta.url));

/**
 * Readers that are not ours: Apache Avro's Java library with its standard logical-type
 * conversions, and protoc. Both come from Maven Central once (mvn), cached under
 * ~/.cache/nanosync/foreign-readers-<versions>, so later runs start in a second or two.
 */
async function foreignReaders(): Promise<{ avroLib: string; protoc: string } | undefined> {
  const root = join(
    process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'),
    'nanosync',
    `foreign-readers-avro${AVRO_VERSION}-protoc${PROTOC_VERSION}`,
  );
  const avroLib = join(root, 'lib');
  const protoc = join(root, 'bin', `protoc-${PROTOC_VERSION}-linux-x86_64.exe`);
  if (existsSync(join(root, 'ready'))) return { avroLib, protoc };
  await mkdir(root, { recursive: true });
  await writeFile(
    join(root, 'pom.xml'),
    `<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>io.nanosync.test</groupId><artifactId>foreign-readers</artifactId><version>1</version>
<dependencies><dependency><groupId>org.apache.avro</groupId><artifactId>avro</artifactId><version>${AVRO_VERSION}</version></dependency></dependencies>
</project>`,
  );
  try {
    await run(
      'mvn',
      [
        '-q',
        '-f',
        join(root, 'pom.xml'),
        'dependency:copy-dependencies',
        `-DoutputDirectory=${avroLib}`,
        '-DincludeScope=runtime',
      ],
      { cwd: root },
    );
    await run(
      'mvn',
      [
        '-q',
        '-f',
        join(root, 'pom.xml'),
        'dependency:copy',
        `-Dartifact=com.google.protobuf:protoc:${PROTOC_VERSION}:exe:linux-x86_64`,
        `-DoutputDirectory=${join(root, 'bin')}`,
      ],
      { cwd: root },
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  await chmod(protoc, 0o755);
  await writeFile(join(root, 'ready'), '');
  return { avroLib, protoc };
}

let readers: { avroLib: string; protoc: string } | undefined;
let work: string;
beforeAll(async () => {
  readers = await foreignReaders();
  work = await mkdtemp(join(tmpdir(), 'ns-foreign-'));
}, 600_000);
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('Apache Avro (Java) reads our Avro records with standard logical types', () => {
  test('every logical type and every extreme value', async (context) => {
    if (!readers) return context.skip('mvn not found: cannot fetch Apache Avro from Maven Central');
    const folder = join(work, 'avro');
    await mkdir(folder);
    const cases: { file: string; table: TableSchema; row: Record<string, unknown> }[] = [];
    const events = [
      ...allTypesEvents.filter((e) => e.after).map((e) => ({ table: allTypesTable, event: e })),
      ...extremeRows.map((row, i) => ({ table: extremesTable, event: insert(extremesTable, row, i) })),
    ];
    for (const [i, { table, event }] of events.entries()) {
      const file = `m${String(i).padStart(3, '0')}.bin`;
      await writeFile(join(folder, file), codecFor('avro').encode(event).value);
      cases.push({ file, table, row: event.after as Record<string, unknown> });
    }
    const { stdout } = await run(
      'java',
      ['-cp', `${readers.avroLib}/*`, join(HERE, 'foreign', 'AvroRead.java'), folder],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    expect(lines.filter((l) => l[1] === '_ns_op')).toHaveLength(cases.length);
    let checked = 0;
    for (const { file, table, row } of cases) {
      for (const column of table.columns) {
        const line = lines.find((l) => l[0] === file && l[1] === column.name);
        if (!line) continue; // escaped field names are checked by our own decoder tests
        const value = row[column.name];
        const number = expectedNumber(column.type, value);
        if (number !== undefined) {
          expect(line[3], `${file} ${column.name} = ${String(value)}`).toBe(number);
          expect(['LocalDate', 'LocalTime', 'LocalDateTime', 'Instant']).toContain(line[2]);
          checked++;
        } else if (
          ['date', 'time', 'timestamp', 'timestamptz'].includes(column.type.kind) &&
          typeof value === 'string'
        ) {
          // Beyond the logical type: the canonical text in the string branch.
          expect(line[2], `${file} ${column.name}`).toBe('Utf8');
          expect(line[4]).toBe(value);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(20);
  }, 120_000);
});

describe('protoc decodes our Protobuf records with the embedded schema', () => {
  const col = (name: string, type: LogicalType): ColumnSchema => ({ name, type, nullable: true });
  const clashing: TableSchema = {
    schema: 'public',
    name: 'clash',
    keyColumns: ['id'],
    columns: [
      col('id', { kind: 'int32' }),
      col('first_name', { kind: 'string' }),
      col('firstName', { kind: 'string' }),
      col('arr', { kind: 'array', items: { kind: 'int32' } }),
      col('arr_Item', { kind: 'array', items: { kind: 'string' } }),
      col('ts', { kind: 'timestamptz' }),
    ],
  };

  async function decode(value: Buffer, name: string): Promise<string> {
    const folder = join(work, `proto-${name}`);
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, 'nanosync.proto'), protobufSchemaText(protobufDescriptorOf(value)));
    const payload = join(folder, 'payload.bin');
    await writeFile(payload, unframe(value, FRAME_PROTOBUF).payload);
    const { stdout } = await run('sh', [
      '-c',
      `"${readers!.protoc}" --proto_path="${folder}" --decode=nanosync.Envelope nanosync.proto < "${payload}"`,
    ]);
    return stdout;
  }

  test('colliding column names compile and decode to the right fields', async (context) => {
    if (!readers) return context.skip('mvn not found: cannot fetch protoc from Maven Central');
    const row = {
      id: 7,
      first_name: 'snake',
      firstName: 'camel',
      arr: [1, 2],
      arr_Item: ['x'],
      ts: '2026-03-14T10:22:01.456789Z',
    };
    const text = await decode(codecFor('protobuf').encode(insert(clashing, row, 1)).value, 'clash');
    expect(text).toContain('_ns_op: INSERT');
    expect(text).toMatch(/first_name: "snake"/);
    expect(text).toMatch(/c_firstName: "camel"/);
    expect(text).toMatch(/arr \{\s+items \{\s+value: 1\s+\}\s+items \{\s+value: 2/);
    expect(text).toMatch(/arr_Item \{\s+items \{\s+value: "x"/);
    expect(text).toContain(`ts: ${timestampToMicros(row.ts, true)}`);
  });

  test('every logical type, every extreme value in range, and a truncate', async (context) => {
    if (!readers) return context.skip('mvn not found: cannot fetch protoc from Maven Central');
    const events = [...allTypesEvents, ...extremeRows.slice(1).map((row, i) => insert(extremesTable, row, i))];
    for (const [i, event] of events.entries()) {
      const text = await decode(codecFor('protobuf').encode(event).value, `all-${i}`);
      expect(text).toContain(`_ns_op: ${event.op.toUpperCase()}`);
      expect(text).toContain(`_ns_lsn: "${event.position}"`);
    }
    expect((await readdir(work)).length).toBeGreaterThan(events.length);
  }, 120_000);
});
