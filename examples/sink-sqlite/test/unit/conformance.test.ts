import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { registerSinkTests } from '@nanosync/connector-testkit';
import type { Logger } from '@nanosync/core';
import definition, { targetTable } from '../../src/index.js';

const logger: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => logger };

registerSinkTests(
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nanosync-sink-sqlite-'));
    const file = (target: string) => join(dir, `${target}.db`);
    return {
      async createSink(target) {
        const parsed = definition.configSchema.safeParse({ path: file(target) });
        if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
        return definition.create(parsed.data, { pipeline: 'kit', logger, signal: new AbortController().signal });
      },
      // The reader is a connection of its own: it sees only what was committed.
      async read(target, table) {
        const db = new DatabaseSync(file(target), { readOnly: true });
        try {
          return { rows: db.prepare(`SELECT * FROM ${targetTable(table)}`).all() };
        } finally {
          db.close();
        }
      },
      dispose: () => rm(dir, { recursive: true, force: true }),
    };
  },
  {
    name: 'sqlite (example)',
    unrepresentable: [
      { type: { kind: 'int32' }, value: 2 ** 40, description: 'int32 beyond 2^31' },
      { type: { kind: 'int64' }, value: '12 apples', description: 'int64 text that is not a number' },
      { type: { kind: 'bool' }, value: 'yes', description: 'text in a bool column' },
    ],
  },
);
