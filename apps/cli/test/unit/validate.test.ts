import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli.js';
import { captureIo } from './helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-cli-validate-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const good = `
connections:
  - name: pg
    type: postgres
    dsn: "postgres://app:\${env:PG_PASSWORD}@127.0.0.1:5432/shop"
  - name: out
    type: file
    properties:
      path: ./out
pipelines:
  - name: orders
    source:
      connection: pg
      tables: [public.orders]
    sink:
      connection: out
`;

const bad = `
connections:
  - name: pg
    type: postgres
    dsn: "postgres://app:\${env:NOT_SET_ANYWHERE}@127.0.0.1:5432/shop"
  - name: out
    type: file
    properties:
      path: ./out
pipelines:
  - name: orders
    replication_typo: cdc
    source:
      connection: pg
      tables: [public.orders]
    sink:
      connection: out
      properties:
        file: ./all.jsonl
`;

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe('nanosync validate', () => {
  it('accepts a valid file and says what it contains', async () => {
    const io = captureIo({ PG_PASSWORD: 's3cret' }, dir);
    expect(await main(['validate', '--file', await file('good.yaml', good)], io)).toBe(0);
    expect(io.stdout.join('\n')).toMatch(/good\.yaml: ok \(2 connections, 1 pipeline\)/);
  });

  it('prints every issue of a file with its YAML path and exits 2', async () => {
    const io = captureIo({}, dir);
    expect(await main(['validate', '--file', await file('bad.yaml', bad)], io)).toBe(2);
    const text = io.stderr.join('\n');
    expect(text).toContain('bad.yaml');
    expect(text).toMatch(/pipelines\[0\]\.replication_typo/);
    expect(text).toMatch(/NOT_SET_ANYWHERE/);
    expect(io.stdout).toEqual([]);
  });

  it('reports connector property errors with the YAML path they came from', async () => {
    const io = captureIo({ PG_PASSWORD: 'x' }, dir);
    const config = good.replace(
      '    sink:\n      connection: out\n',
      '    sink:\n      connection: out\n      properties:\n        file: ./all.jsonl\n',
    );
    expect(await main(['validate', '--file', await file('both.yaml', config)], io)).toBe(2);
    expect(io.stderr.join('\n')).toMatch(/pipelines\[0\]\.sink\.properties\.file: .*either "path"/);
  });

  it('refuses two listed tables that map to one Kafka topic, naming both and the way out, before anything connects', async () => {
    const kafka = (properties: string) => `
connections:
  - name: pg
    type: postgres
    dsn: "postgres://app:x@127.0.0.1:5432/shop"
  - name: bus
    type: kafka
    properties:
      brokers: 127.0.0.1:9
pipelines:
  - name: orders
    source:
      connection: pg
      tables: [public.order_items, 'public."order.items"']
    sink:
      connection: bus
${properties}`;
    const io = captureIo({}, dir);
    expect(await main(['validate', '--file', await file('clash.yaml', kafka(''))], io)).toBe(2);
    const text = io.stderr.join('\n');
    expect(text).toContain('clash.yaml: 1 problem');
    expect(text).toMatch(/\d+:\d+ pipelines\[0\]\.sink: sink connection "bus": /);
    expect(text).toContain(
      'tables "public.order_items" and "public.order.items" both map to Kafka topic "nanosync.public_order_items"',
    );
    expect(text).toContain('table_topics');
    expect(io.stdout).toEqual([]);

    // A mapping that still collides is reported where table_topics was written.
    const still = '      properties:\n        table_topics: { "public.order.items": nanosync.public_order_items }\n';
    const io2 = captureIo({}, dir);
    expect(await main(['validate', '--file', await file('still.yaml', kafka(still))], io2)).toBe(2);
    expect(io2.stderr.join('\n')).toMatch(/pipelines\[0\]\.sink\.properties\.table_topics: .*both map to/);

    // The way out the message names: one of them gets its own topic.
    const fixed = '      properties:\n        table_topics: { "public.order.items": order-items-dotted }\n';
    const io3 = captureIo({}, dir);
    expect(await main(['validate', '--file', await file('fixed.yaml', kafka(fixed))], io3)).toBe(0);
    expect(io3.stdout.join('\n')).toContain('fixed.yaml: ok');
  });

  it('stops at the first file with errors', async () => {
    const io = captureIo({ PG_PASSWORD: 'x' }, dir);
    const files = [await file('a.yaml', good), await file('b.yaml', bad), await file('c.yaml', good)];
    expect(await main(['validate', ...files.flatMap((f) => ['--file', f])], io)).toBe(2);
    expect(io.stdout.join('\n')).toContain('a.yaml: ok');
    expect(io.text()).not.toContain('c.yaml');
  });

  it('a missing file is a config error (exit 2)', async () => {
    const io = captureIo({}, dir);
    expect(await main(['validate', '--file', join(dir, 'nope.yaml')], io)).toBe(2);
    expect(io.stderr.join('\n')).toMatch(/nope\.yaml.*\n.*does not exist/);
  });

  it('never prints a literal password from the file', async () => {
    const io = captureIo({}, dir);
    const leaky = bad.replace(`\${env:NOT_SET_ANYWHERE}`, 'hunter2-literal');
    await main(['validate', '--file', await file('leaky.yaml', leaky)], io);
    expect(io.text()).not.toContain('hunter2-literal');
  });
});
