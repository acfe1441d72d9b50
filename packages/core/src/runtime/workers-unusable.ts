import type { SinkDefinition, SourceDefinition } from '../contract/connector.js';
import type { TargetMapping } from '../config/types.js';

/**
 * Why a pipeline's snapshot or change stream cannot go through worker threads, from its
 * definition alone: `undefined` when it can, otherwise why not (logged once, at info). The rest
 * is decided when the connectors are open (`SnapshotWorkers.start`, `StreamWorkers.start`) and,
 * for the stream, per batch. The two paths differ in which pipelines have them and in the
 * mappings they accept: a snapshot chunk refuses only mappings with columns or a filter (those
 * are applied on the main thread), the stream refuses any target_mappings (they are applied to
 * decoded events on the main thread).
 */
export function workersUnusable(
  path: 'snapshot' | 'stream',
  input: {
    threads: number;
    replicationType: string;
    source: Pick<SourceDefinition, 'type' | 'workerModule'>;
    sinks: { name: string; definition: Pick<SinkDefinition, 'type' | 'workerModule'>; mappings: TargetMapping[] }[];
  },
): string | undefined {
  const snapshot = path === 'snapshot';
  if (input.threads <= 0) return 'workers is 0';
  const type = input.replicationType;
  if (type === 'query' || type === (snapshot ? 'cdc' : 'snapshot'))
    return snapshot ? `a ${type} pipeline takes no snapshot` : `a ${type} pipeline has no change stream`;
  if (input.source.workerModule === undefined)
    return `the source connector ${input.source.type} cannot decode ${snapshot ? 'rows' : 'changes'} in a worker thread`;
  for (const sink of input.sinks) {
    if (sink.definition.workerModule === undefined)
      return `sink ${sink.name} (connector ${sink.definition.type}) cannot encode records in a worker thread`;
    if (!snapshot && sink.mappings.length > 0)
      return `sink ${sink.name} has target_mappings, which are applied to decoded events on the main thread`;
    if (
      snapshot &&
      sink.mappings.some((m) => m.columns !== undefined || (m.filter !== undefined && m.filter.length > 0))
    )
      return `sink ${sink.name} has target_mappings with columns or filter, which are applied on the main thread`;
  }
  return undefined;
}
