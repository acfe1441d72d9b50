// The container's health check: exit 0 when the admin API answers GET /v1/health.
// NANOSYNC_HEALTH_URL overrides the address (default http://127.0.0.1:7654/v1/health).
const url = process.env.NANOSYNC_HEALTH_URL ?? 'http://127.0.0.1:7654/v1/health';
try {
  const response = await fetch(url, { signal: AbortSignal.timeout(4000) });
  process.exit(response.ok ? 0 : 1);
} catch {
  process.exit(1);
}
