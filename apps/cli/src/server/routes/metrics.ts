import { PrometheusExporter } from '@nanosync/core/host';
import type { AdminEngine } from '../admin-engine.js';
import type { Route } from '../http.js';

/**
 * `NANOSYNC_METRICS_AUTH=none` on the server lets `/metrics` answer without the bearer
 * token. The default keeps the token: the figures name pipelines, tables and connections,
 * and Prometheus can send a token from a file (`authorization: { credentials_file: … }`).
 */
export const METRICS_AUTH_ENV = 'NANOSYNC_METRICS_AUTH';

export function metricsNeedToken(env: NodeJS.ProcessEnv): boolean {
  return env[METRICS_AUTH_ENV]?.trim().toLowerCase() !== 'none';
}

/** One exporter (one prom-client Registry) per engine, that is per server. */
const exporters = new WeakMap<AdminEngine, PrometheusExporter>();

function exporterFor(engine: AdminEngine): PrometheusExporter {
  let exporter = exporters.get(engine);
  if (exporter === undefined) {
    exporter = new PrometheusExporter(() => engine.list());
    exporters.set(engine, exporter);
  }
  return exporter;
}

/** Observability endpoints: `GET /metrics` in the Prometheus text format. */
export const metricsRoutes: Route[] = [
  {
    method: 'GET',
    path: '/metrics',
    // Read at every request: the server process's environment decides (see METRICS_AUTH_ENV).
    get auth() {
      return metricsNeedToken(process.env);
    },
    handle: async ({ engine }) => {
      const exporter = exporterFor(engine);
      return { text: await exporter.render(), contentType: exporter.contentType };
    },
  },
];
