import { describe, expect, it } from 'vitest';
import { connectorCandidates } from '../../src/host.js';

describe('discovery: candidate package names', () => {
  it.each([
    ['source', 'postgres', ['@nanosync/source-postgres', 'nanosync-source-postgres']],
    ['sink', 'postgres', ['@nanosync/sink-postgres', 'nanosync-sink-postgres']],
    ['sink', 'kafka', ['@nanosync/sink-kafka', 'nanosync-sink-kafka']],
    ['source', 'sqlserver', ['@nanosync/source-sqlserver', 'nanosync-source-sqlserver']],
    ['sink', 'big-query.v2', ['@nanosync/sink-big-query.v2', 'nanosync-sink-big-query.v2']],
    ['sink', 'nanosync-sink-acme', ['nanosync-sink-acme']],
    ['sink', '@acme/nanosync-sink-queue', ['@acme/nanosync-sink-queue']],
    ['source', '@nanosync/source-postgres', ['@nanosync/source-postgres']],
    ['sink', '@acme/connectors/sink', ['@acme/connectors/sink']],
    ['sink', 'acme-pkg/sink', ['acme-pkg/sink']],
    ['sink', './connectors/my-sink', ['./connectors/my-sink']],
    ['source', '../shared/my-source.js', ['../shared/my-source.js']],
    ['sink', '/opt/nanosync/my-sink', ['/opt/nanosync/my-sink']],
  ] as const)('%s %s → %j', (kind, type, expected) => {
    expect(connectorCandidates(kind, type)).toEqual(expected);
  });
});
