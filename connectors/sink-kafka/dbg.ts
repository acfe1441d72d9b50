import { startKafka } from '@nanosync/testcontainers';
import { readFileSync, readdirSync } from 'node:fs';
import { createSink } from './test/integration/helpers.js';
import type { ChangeEvent, TableSchema } from '@nanosync/core';
const table: TableSchema = { schema: 'public', name: 'e2e_orders', keyColumns: ['id'], columns: [
  { name: 'id', type: { kind: 'int64' }, nullable: false }, { name: 'note', type: { kind: 'string' }, nullable: true },
  { name: 'amount', type: { kind: 'decimal' }, nullable: true }, { name: 'qty', type: { kind: 'int32' }, nullable: true }, { name: 'flag', type: { kind: 'bool' }, nullable: true }] };
const kafka = await startKafka({ fresh: true });
try {
  for (const compression of ['lz4', 'snappy', 'zstd']) {
    const h = createSink({ brokers: kafka.brokers.join(','), topic: 'dbg-' + compression, compression, max_retries: 0 });
    await h.sink.open([table]);
    const events: ChangeEvent[] = [];
    for (let g = 1; g <= 5000; g++) events.push({ table, op: 'read', key: { id: String(g) }, after: { id: String(g), note: 'row ' + g + 'x'.repeat(200), amount: (g * 1.5).toFixed(2), qty: g, flag: g % 2 === 0 }, position: '0000000002000000:00000000' });
    try { await h.sink.write(events); console.log(compression, 'ok'); } catch (e) { console.log(compression, 'FAILED', (e as Error).message); }
    await h[Symbol.asyncDispose]();
  }
} finally {
  const anyKafka = kafka as any;
  const { execSync } = await import('node:child_process'); console.log(execSync('grep -rh -A12 "Error\\|Exception" /tmp/nanosync-kafka-*/ --include=*.log | head -60').toString());
  await kafka[Symbol.asyncDispose]();
}
