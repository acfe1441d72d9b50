import type { PipelineStatus, StoredDefinitionInfo, StoredPipelineDefinition } from '@nanosync/core/host';

export type ApplyResult = 'created' | 'updated' | 'unchanged';

/**
 * What the admin API needs from the runtime. Core's `Engine` satisfies it; unit tests use
 * a fake so the HTTP layer can be checked without a database.
 */
export interface AdminEngine {
  apply(
    name: string,
    definition: StoredPipelineDefinition,
    hash: string,
    replicationType: string,
  ): Promise<ApplyResult>;
  pause(name: string): Promise<void>;
  resume(name: string): Promise<void>;
  /** Read these tables (default: all of the pipeline's) again; returns their canonical names. */
  resnapshot(name: string, tables: string[]): Promise<string[]>;
  /** With `force`, state goes even when the source cannot be cleaned up; the result says what was left. */
  delete(name: string, options?: { force?: boolean }): Promise<unknown>;
  list(): Promise<PipelineStatus[]>;
  status(name: string): Promise<PipelineStatus>;
  /** The stored definitions, secrets as stored (for `nanosync plan`); absent on engines that cannot tell. */
  definitions?(): Promise<StoredDefinitionInfo[]>;
}

/** One entry of `POST /v1/apply`: a stored definition as `toStoredDefinitions` made it. */
export interface ApplyEntry {
  name: string;
  definition: StoredPipelineDefinition;
  hash: string;
  replicationType: string;
}
