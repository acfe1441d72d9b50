/**
 * The worker thread of a pipeline's pool (see `snapshot-workers.ts`): it serves the pipeline's
 * tasks (`pipeline-tasks.ts`) with the pool's setup.
 */
import {
  createPipelineHandler,
  type PipelineWorkerData,
  type PipelineWorkerResult,
  type PipelineWorkerTask,
} from './pipeline-tasks.js';
import { serveTasks } from './worker-task.js';

export type {
  ChangesTask,
  ChunkTask,
  PipelineWorkerData,
  PipelineWorkerResult,
  PipelineWorkerTask,
} from './pipeline-tasks.js';

serveTasks<PipelineWorkerData, PipelineWorkerTask, PipelineWorkerResult>(({ data }) => createPipelineHandler(data));
