import type { Route } from '../http.js';
import { definitionRoutes } from './definitions.js';
import { metricsRoutes } from './metrics.js';
import { pipelineRoutes } from './pipelines.js';

/** Every endpoint of the admin API. Add a feature's routes by listing its table here. */
export const adminRoutes: readonly Route[] = [...pipelineRoutes, ...definitionRoutes, ...metricsRoutes];
