import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerSinkTests } from '@nanosync/connector-testkit';
import definition, { type FileSinkRecord, readJsonLines, tableFileName } from '../../src/index.js';

// The reader is a plain read of the table's file (complete lines only), never the sink.
registerSinkTests(
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ns-file-kit-'));
    const context = { pipeline: 'kit', logger: silentLogger(), signal: new AbortController().signal };
    return {
      async createSink(target) {
        const parsed = definition.configSchema.safeParse({ path: join(dir, target) });
        if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
        return definition.create(parsed.data, context);
      },
      async read(target, table) {
        const records = await readJsonLines<FileSinkRecord>(join(dir, target, tableFileName(table))).catch(
          (error: NodeJS.ErrnoException) => {
            if (error.code === 'ENOENT') return [];
            throw error;
          },
        );
        return { records };
      },
      dispose: () => rm(dir, { recursive: true, force: true }),
    };
  },
  // JSON lines hold every value of the event model (int64 and decimal as text, bytes as base64).
  { name: 'file', unrepresentable: [] },
);

function silentLogger() {
  const logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => logger };
  return logger;
}
