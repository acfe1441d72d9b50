import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { METRIC_NAMES } from '@nanosync/core/host';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../integration/cli-process.js';

const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'docs/grafana/nanosync-dashboard.json'), 'utf8')) as {
  panels: { title: string; targets: { expr: string }[] }[];
};

describe('the Grafana dashboard (docs/grafana/nanosync-dashboard.json)', () => {
  it('queries only metrics the server exports, and covers state, lag, throughput, sinks, WAL and snapshots', () => {
    const exported = new Set<string>(Object.values(METRIC_NAMES));
    const used = new Set<string>();
    for (const panel of dashboard.panels)
      for (const target of panel.targets)
        for (const [name] of target.expr.matchAll(/\bns_[a-z_]+/g)) used.add(name.replace(/_(bucket|sum|count)$/, ''));
    const unknown = [...used].filter((name) => !exported.has(name));
    expect(unknown, 'metrics the dashboard asks for but /metrics does not have').toEqual([]);
    for (const name of [
      METRIC_NAMES.pipelineState,
      METRIC_NAMES.replicationLag,
      METRIC_NAMES.sourceEvents,
      METRIC_NAMES.sinkRowsWritten,
      METRIC_NAMES.sinkWriteLatency,
      METRIC_NAMES.slotRetainedWal,
      METRIC_NAMES.snapshotRows,
    ])
      expect(used, name).toContain(name);
  });
});
