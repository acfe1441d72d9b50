import type { PipelineState } from '../state/store.js';

/** What the store holds of a pipeline that an `apply` changes (a stored record, or what `definitions()` lists). */
export interface AppliedPipeline {
  replicationType?: string;
  state: PipelineState;
  snapshotDone: boolean;
}

/**
 * What storing a changed definition does to a pipeline's state, beyond the new definition
 * and a restart from its checkpoint. The one place these decisions are made: `Engine.apply`
 * carries them out and `nanosync plan` describes them.
 */
export interface ApplyEffects {
  /** Every table's snapshot plan is removed: all tables are read again from the start. */
  resnapshotAll: boolean;
  /** The sinks' checkpoints are removed: they receive everything again (the snapshot is re-run). */
  clearCheckpoints: boolean;
  /** The stored start position is forgotten: the next run creates a new replication slot. */
  newSlot: boolean;
  /** Whether the pipeline's snapshot counts as finished afterwards. */
  snapshotDone: boolean;
  /**
   * A table added to the list is snapshotted (it has no plan yet), concurrently with the
   * stream in `snapshot.mode: concurrent`; the other tables are not read again.
   */
  snapshotsNewTables: boolean;
}

/**
 * The effects of applying a changed definition of type `replicationType` to `existing`:
 *
 * - `cdc` → `cdc_backfill`: every table is snapshotted; the slot and checkpoints stay.
 * - `cdc_backfill` → `cdc`: nothing is read again (an unfinished snapshot is not continued).
 * - any change of a `snapshot` pipeline: its snapshot runs again from the start, for every
 *   sink (checkpoints removed); a COMPLETED one dropped its slot, so a new one is created.
 * - otherwise nothing is read again, except tables new to a `cdc_backfill` pipeline.
 */
export function applyEffects(existing: AppliedPipeline, replicationType: string): ApplyEffects {
  const previousType = existing.replicationType ?? replicationType;
  if (replicationType === 'snapshot') {
    return {
      resnapshotAll: true,
      clearCheckpoints: true,
      newSlot: existing.state === 'COMPLETED',
      snapshotDone: false,
      snapshotsNewTables: true,
    };
  }
  if (previousType === 'cdc' && replicationType === 'cdc_backfill') {
    return {
      resnapshotAll: true,
      clearCheckpoints: false,
      newSlot: false,
      snapshotDone: false,
      snapshotsNewTables: true,
    };
  }
  return {
    resnapshotAll: false,
    clearCheckpoints: false,
    newSlot: false,
    snapshotDone: existing.snapshotDone,
    snapshotsNewTables: replicationType === 'cdc_backfill',
  };
}
