import type { Route } from '../http.js';

/**
 * Observability endpoints (`GET /metrics` in Prometheus text format). Owned by the
 * observability work; the table is empty until it lands, and the server picks up
 * whatever is listed here without further changes.
 */
export const metricsRoutes: Route[] = [];
