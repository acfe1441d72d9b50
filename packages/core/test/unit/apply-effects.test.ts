import { describe, expect, it } from 'vitest';
import { applyEffects } from '../../src/runtime/apply-effects.js';

describe('applyEffects: what storing a changed definition does (Engine.apply and nanosync plan)', () => {
  it('a snapshot pipeline reads every table again for every sink; a completed one needs a new slot', () => {
    expect(applyEffects({ replicationType: 'snapshot', state: 'COMPLETED', snapshotDone: true }, 'snapshot')).toEqual({
      resnapshotAll: true,
      clearCheckpoints: true,
      newSlot: true,
      snapshotDone: false,
      snapshotsNewTables: true,
    });
    expect(
      applyEffects({ replicationType: 'snapshot', state: 'SNAPSHOTTING', snapshotDone: false }, 'snapshot'),
    ).toMatchObject({ resnapshotAll: true, clearCheckpoints: true, newSlot: false });
    // Switching to snapshot from a streaming type: the same.
    expect(applyEffects({ replicationType: 'cdc', state: 'LIVE_CDC', snapshotDone: false }, 'snapshot')).toMatchObject({
      resnapshotAll: true,
      clearCheckpoints: true,
      newSlot: false,
    });
  });

  it('cdc → cdc_backfill snapshots every table, keeping slot and checkpoints; other changes read nothing again', () => {
    expect(applyEffects({ replicationType: 'cdc', state: 'LIVE_CDC', snapshotDone: false }, 'cdc_backfill')).toEqual({
      resnapshotAll: true,
      clearCheckpoints: false,
      newSlot: false,
      snapshotDone: false,
      snapshotsNewTables: true,
    });
    expect(
      applyEffects({ replicationType: 'cdc_backfill', state: 'LIVE_CDC', snapshotDone: true }, 'cdc_backfill'),
    ).toEqual({
      resnapshotAll: false,
      clearCheckpoints: false,
      newSlot: false,
      snapshotDone: true,
      snapshotsNewTables: true,
    });
    expect(applyEffects({ replicationType: 'cdc_backfill', state: 'LIVE_CDC', snapshotDone: true }, 'cdc')).toEqual({
      resnapshotAll: false,
      clearCheckpoints: false,
      newSlot: false,
      snapshotDone: true,
      snapshotsNewTables: false,
    });
  });
});
