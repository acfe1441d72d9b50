import { ENV_KAFKA_BROKERS, ENV_PG_URL, log } from './env.js';
import { ENV_KAFKA_LIBDIR, ENV_KAFKA_UNAVAILABLE, startKafka } from './kafka.js';
import { startPostgres } from './postgres.js';

/**
 * Global setup of the integration project: one shared PostgreSQL (and Kafka) for the whole
 * run, handed to the test workers through environment variables so that `startPostgres()` /
 * `startKafka()` without `fresh` reuse them. Services that are already configured through
 * those variables are left alone. NANOSYNC_TEST_SERVICES (comma list, default
 * "postgres,kafka") limits what is started.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const wanted = new Set((process.env.NANOSYNC_TEST_SERVICES ?? 'postgres,kafka').split(',').map((s) => s.trim()));
  const disposers: (() => Promise<void>)[] = [];
  const started = Date.now();
  const tasks: Promise<void>[] = [];
  if (wanted.has('postgres') && !process.env[ENV_PG_URL]) {
    tasks.push(
      startPostgres({ fresh: true }).then((pg) => {
        process.env[ENV_PG_URL] = pg.url;
        disposers.push(async () => {
          await pg[Symbol.asyncDispose]();
        });
      }),
    );
  }
  if (wanted.has('kafka') && !process.env[ENV_KAFKA_BROKERS]) {
    tasks.push(
      startKafka({ fresh: true }).then(
        (kafka) => {
          process.env[ENV_KAFKA_BROKERS] = kafka.brokers.join(',');
          if (kafka.libDir) process.env[ENV_KAFKA_LIBDIR] = kafka.libDir;
          disposers.push(async () => {
            await kafka[Symbol.asyncDispose]();
          });
        },
        (error: unknown) => {
          // Postgres-only test files can still run; Kafka tests fail with this reason.
          const reason = error instanceof Error ? error.message : String(error);
          process.env[ENV_KAFKA_UNAVAILABLE] = reason;
          log(`shared Kafka could not start: ${reason}`);
        },
      ),
    );
  }
  const results = await Promise.allSettled(tasks);
  const teardown = async () => {
    await Promise.allSettled(disposers.map((dispose) => dispose()));
  };
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await teardown();
    throw failure.reason;
  }
  log(`shared services ready in ${Date.now() - started} ms`);
  return teardown;
}
