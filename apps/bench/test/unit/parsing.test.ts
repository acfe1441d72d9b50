import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/args.js';
import { commitTimeOf, parseIsoMicros } from '../../src/kafka.js';
import { countNewlines, LineCounter } from '../../src/line-counter.js';
import { formatLsn, parseLsn } from '../../src/lsn.js';
import { parseGnuTime } from '../../src/measure.js';
import { averageBytes, makePayloads, parseProducerPerformance } from '../../src/payloads.js';

describe('LSN text', () => {
  it('round-trips and orders like the server', () => {
    expect(parseLsn('0/16B3748')).toBe(0x16b3748n);
    expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) | 0xb374d848n);
    expect(formatLsn(parseLsn('16/B374D848'))).toBe('16/B374D848');
    expect(parseLsn('1/0') > parseLsn('0/FFFFFFFF')).toBe(true);
    expect(() => parseLsn('nope')).toThrow(/not a PostgreSQL LSN/);
  });
});

describe('command line', () => {
  it('has full sizes by default and tiny ones with --quick', () => {
    const full = parseArgs([], '/out');
    expect(full).toMatchObject({
      quick: false,
      rows: 2_000_000,
      changes: 1_000_000,
      skipDebezium: false,
      outDir: '/out',
    });
    expect([...full.only]).toEqual(['S0', 'S1', 'S2', 'S3', 'S4', 'S5']);
    expect(full.s0Rows).toBe(200_000);
    expect(full.fromSource).toBe(false);
    expect(parseArgs(['--from-source'], '/out').fromSource).toBe(true);
    expect(full.s5Rate).toBe(1_000);
    expect(full.s5Tools).toEqual(['concurrent', 'blocking', 'debezium']);
    expect(parseArgs(['--s5-tools', 'concurrent', '--s5-rate', '2k'], '/out')).toMatchObject({
      s5Tools: ['concurrent'],
      s5Rate: 2_000,
    });
    expect(() => parseArgs(['--s5-tools', 'snapshot'], '/out')).toThrow(/unknown run snapshot/);
    expect(full.workers).toBe(0);
    expect(parseArgs(['--workers', '1'], '/out').workers).toBe(1);
    expect(parseArgs(['--workers', 'auto'], '/out').workers).toBe('auto');
    expect(() => parseArgs(['--workers', 'many'], '/out')).toThrow(/--workers needs a positive whole number/);
    expect(full.s4Compressions).toEqual(['snappy']);
    expect(parseArgs(['--s4-compressions', 'lz4,ZSTD'], '/out').s4Compressions).toEqual(['lz4', 'zstd']);
    expect(() => parseArgs(['--s4-compressions', 'brotli'], '/out')).toThrow(/unknown compression brotli/);
    const quick = parseArgs(['--quick'], '/out');
    expect(quick.rows).toBeLessThan(100_000);
    expect(quick.changes).toBeLessThan(100_000);
    expect(quick.s0Rows).toBeLessThan(100_000);
    expect(parseArgs(['--s0-rows', '50k'], '/out').s0Rows).toBe(50_000);
    expect(full.s0Rounds).toBe(3);
    expect(quick.s0Rounds).toBe(1);
    expect(parseArgs(['--quick', '--s0-rounds', '5'], '/out').s0Rounds).toBe(5);
    expect(() => parseArgs(['--s0-rounds', '0'], '/out')).toThrow(/--s0-rounds needs a positive whole number/);
  });

  it('reads sizes, --only and --skip-debezium; explicit sizes win over --quick', () => {
    const options = parseArgs(
      ['--quick', '--rows', '500k', '--changes=2_000', '--only', 's1,S3', '--skip-debezium'],
      '/out',
    );
    expect(options.rows).toBe(500_000);
    expect(options.changes).toBe(2_000);
    expect([...options.only]).toEqual(['S1', 'S3']);
    expect(options.skipDebezium).toBe(true);
  });

  it('rejects unknown options, scenarios and bad numbers', () => {
    expect(() => parseArgs(['--fast'], '/out')).toThrow(/unknown option --fast/);
    expect(() => parseArgs(['--only', 'S9'], '/out')).toThrow(/unknown scenario S9/);
    expect(() => parseArgs(['--rows', '-5'], '/out')).toThrow(/positive whole number/);
    expect(() => parseArgs(['--rows'], '/out')).toThrow(/needs a value/);
  });
});

describe('commit time of a message', () => {
  it("reads nanosync's _ns_committed_at in microseconds", () => {
    expect(commitTimeOf({ _ns_committed_at: 1_700_000_000_123_456 })).toBeCloseTo(1_700_000_000_123.456, 3);
    expect(commitTimeOf({ _ns_committed_at: '1700000000123456' })).toBeCloseTo(1_700_000_000_123.456, 3);
    expect(commitTimeOf({ _ns_committed_at: '2023-11-14T22:13:20.123456Z' })).toBeCloseTo(1_700_000_000_123.456, 3);
  });

  it("reads Debezium's source.ts_us, else source.ts_ms", () => {
    expect(commitTimeOf({ source: { ts_ms: 1_700_000_000_123, ts_us: 1_700_000_000_123_456 } })).toBeCloseTo(
      1_700_000_000_123.456,
      3,
    );
    expect(commitTimeOf({ source: { ts_ms: 1_700_000_000_123 } })).toBe(1_700_000_000_123);
  });

  it('is undefined when a message carries none', () => {
    expect(commitTimeOf({ _ns_committed_at: null, after: {} })).toBeUndefined();
    expect(commitTimeOf(null)).toBeUndefined();
  });

  it('keeps sub-millisecond digits of ISO timestamps', () => {
    expect(parseIsoMicros('2023-11-14T22:13:20.000250Z') - Date.parse('2023-11-14T22:13:20Z')).toBeCloseTo(0.25, 6);
  });
});

describe('tool output', () => {
  it("parses ProducerPerformance's closing line, not its progress lines", () => {
    const output = [
      '73251 records sent, 14650.2 records/sec (6.59 MB/sec), 10467.5 ms avg latency, 11449.0 ms max latency.',
      '200000 records sent, 7982.757244 records/sec (3.59 MB/sec), 9222.09 ms avg latency, 11449.00 ms max latency, 9564 ms 50th, 11275 ms 95th, 11415 ms 99th, 11445 ms 99.9th.',
    ].join('\n');
    expect(parseProducerPerformance(output)).toEqual({
      records: 200000,
      recordsPerSecond: 7982.757244,
      mbPerSecond: 3.59,
      avgLatencyMs: 9222.09,
      maxLatencyMs: 11449,
    });
    expect(parseProducerPerformance('Exception in thread "main"')).toBeUndefined();
  });

  it("parses GNU time's line", () => {
    expect(parseGnuTime('NSBENCH 1.52 0.80 0.20 10240\n')).toEqual({
      seconds: 1.52,
      cpuSeconds: 1,
      maxRssBytes: 10240 * 1024,
    });
    expect(parseGnuTime('Command exited with non-zero status 1\nNSBENCH 0.01 0.00 0.00 900')).toMatchObject({
      maxRssBytes: 900 * 1024,
    });
    expect(parseGnuTime('')).toBeUndefined();
  });

  it('counts newlines only within the bytes read', () => {
    const buffer = Buffer.from('a\nb\nc\n\n\n');
    expect(countNewlines(buffer, buffer.length)).toBe(5);
    expect(countNewlines(buffer, 4)).toBe(2);
  });
});

describe('S4 payloads', () => {
  it('are deterministic JSON envelopes of S1-sized rows, one per line', () => {
    const a = makePayloads(50);
    expect(makePayloads(50)).toEqual(a);
    for (const line of a) {
      expect(line.includes('\n')).toBe(false);
      const parsed = JSON.parse(line) as { after: Record<string, unknown> };
      expect(Object.keys(parsed.after)).toHaveLength(16);
    }
    const size = averageBytes(a);
    expect(size).toBeGreaterThan(300);
    expect(size).toBeLessThan(700);
  });
});

describe('LineCounter', () => {
  it('counts complete lines of a growing file, reading each byte once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-lines-'));
    try {
      const file = join(dir, 'out.jsonl');
      const counter = new LineCounter(file);
      expect(await counter.count()).toBe(0);
      await appendFile(file, '{"a":1}\n{"a":2}\n{"a":');
      expect(await counter.count()).toBe(2);
      await appendFile(file, '3}\n');
      expect(await counter.count()).toBe(3);
      expect(await counter.count()).toBe(3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
