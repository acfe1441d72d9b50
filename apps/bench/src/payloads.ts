/**
 * Message values for S4, shaped like nanosync's JSON envelope of an S1 row, so that record
 * size and compressibility match what the sink really sends. Deterministic (seeded).
 */
export function makePayloads(count: number, seed = 42): string[] {
  let state = seed >>> 0;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const hex = (length: number) => {
    let out = '';
    while (out.length < length)
      out += Math.floor(next() * 2 ** 32)
        .toString(16)
        .padStart(8, '0');
    return out.slice(0, length);
  };
  const date = () => new Date(Date.UTC(2000, 0, 1) + Math.floor(next() * 9000) * 86_400_000).toISOString().slice(0, 10);
  const payloads: string[] = [];
  for (let i = 1; i <= count; i++) {
    const after = {
      id: String(i),
      b1: String(i * 7),
      b2: String(Math.floor(next() * 1e12)),
      i1: Math.floor(next() * 2e9 - 1e9),
      f1: next(),
      f2: next() * 1000,
      f3: next() * 1e6,
      f4: Math.round(next() * 10000) / 100,
      d1: date(),
      d2: date(),
      d3: date(),
      s1: hex(10 + Math.floor(next() * 23)),
      s2: hex(10 + Math.floor(next() * 23)),
      s3: hex(10 + Math.floor(next() * 23)),
      s4: hex(10 + Math.floor(next() * 23)),
      s5: hex(10 + Math.floor(next() * 23)),
    };
    payloads.push(
      JSON.stringify({
        _ns_op: 'READ',
        _ns_table: 'public.bench_s1',
        _ns_committed_at: null,
        _ns_lsn: `0000000001A2B3C4:${i.toString(16).padStart(8, '0')}`,
        before: null,
        after,
      }),
    );
  }
  return payloads;
}

export function averageBytes(payloads: readonly string[]): number {
  if (payloads.length === 0) return 0;
  return payloads.reduce((sum, p) => sum + Buffer.byteLength(p), 0) / payloads.length;
}

/** Parses ProducerPerformance's closing summary line. */
export function parseProducerPerformance(
  output: string,
):
  | { records: number; recordsPerSecond: number; mbPerSecond: number; avgLatencyMs: number; maxLatencyMs: number }
  | undefined {
  const lines = output.trim().split('\n').reverse();
  for (const line of lines) {
    const match =
      /^(\d+) records sent, ([\d.]+) records\/sec \(([\d.]+) MB\/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency/.exec(
        line.trim(),
      );
    if (match) {
      return {
        records: Number(match[1]),
        recordsPerSecond: Number(match[2]),
        mbPerSecond: Number(match[3]),
        avgLatencyMs: Number(match[4]),
        maxLatencyMs: Number(match[5]),
      };
    }
  }
  return undefined;
}
