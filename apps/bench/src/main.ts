import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALL_SCENARIOS, type BenchOptions, parseArgs, USAGE } from './args.js';
import type { BenchContext } from './context.js';
import { DEBEZIUM_VERSION, FALLBACK_KAFKA_VERSION, kafkaVersionOf, resolveDebezium } from './debezium/resolve.js';
import { kafkaClient } from './kafka.js';
import { machineInfo } from './machine.js';
import { nanosyncLaunchLabel, prepareNanosync, REPO_ROOT } from './nanosync.js';
import { connect, serverVersion } from './pg.js';
import { ProcessTreeMonitor, setClockTicks } from './proc.js';
import { type BenchReport, notAvailable, reportMarkdown, type ScenarioResult } from './report.js';
import { runS0 } from './scenarios/s0-encode.js';
import { runS1 } from './scenarios/s1-snapshot.js';
import { runS2 } from './scenarios/s2-backlog.js';
import { runS3 } from './scenarios/s3-latency.js';
import { runS4 } from './scenarios/s4-kafka.js';
import { runS5 } from './scenarios/s5-concurrent-snapshot.js';
import {
  type BenchKafka,
  type BenchPostgres,
  benchKafkaLibDir,
  PG_SETTINGS,
  startBenchKafka,
  startBenchPostgres,
} from './services.js';
import { errorMessage, log, randomSuffix, run } from './util.js';

const TITLES: Record<string, string> = {
  S0: 'In-process encoding ceiling',
  S1: 'Snapshot',
  S2: 'CDC backlog drain',
  S3: 'Latency under steady load',
  S4: 'Kafka ceiling',
  S5: 'Snapshot under a writer',
};

function failedScenario(id: string, reason: string): ScenarioResult {
  return {
    id,
    title: TITLES[id] ?? id,
    parameters: {},
    measurements: [notAvailable('all', reason)],
    ratios: [],
    notes: [],
  };
}

async function clockTicks(): Promise<void> {
  try {
    const { stdout } = await run('getconf', ['CLK_TCK'], { timeoutMs: 5_000 });
    setClockTicks(Number(stdout.trim()));
  } catch {
    // keep 100
  }
}

async function main(options: BenchOptions): Promise<number> {
  const startedAt = new Date().toISOString();
  const errors: string[] = [];
  const machine: Record<string, unknown> = { ...(await machineInfo(REPO_ROOT)) };
  await clockTicks();
  if (!ProcessTreeMonitor.supported()) errors.push('no /proc here: peak RSS and CPU are not measured');

  const workRoot = await mkdtemp(join(tmpdir(), 'nanosync-bench-'));
  const runId = randomSuffix(6);
  const scenarios: ScenarioResult[] = [];
  let postgres: BenchPostgres | undefined;
  let broker: BenchKafka | undefined;
  let ctx: BenchContext | undefined;
  const needsPg = [...options.only].some((s) => s !== 'S4' && s !== 'S0');
  const needsKafka = [...options.only].some((s) => s !== 'S0');
  // S0 needs no service and runs first, alone on the machine's cores.
  if (options.only.has('S0')) {
    log(`— S0 ${TITLES.S0}`);
    const started = performance.now();
    try {
      scenarios.push(await runS0(options, cpus().length));
    } catch (error) {
      const reason = errorMessage(error);
      errors.push(`S0: ${reason}`);
      scenarios.push(failedScenario('S0', reason));
    }
    log(`— S0 took ${Math.round((performance.now() - started) / 1000)} s`);
  }
  // nanosync runs as users run it, from its build (made or brought up to date here), unless
  // --from-source asks for the TypeScript sources through tsx.
  const launch = options.fromSource ? 'source' : 'built';
  machine.nanosyncLaunch = nanosyncLaunchLabel(launch);
  if ([...options.only].some((s) => s !== 'S0' && s !== 'S4')) {
    const problem = await prepareNanosync(launch);
    if (problem) errors.push(problem);
  }
  try {
    // Services first; a scenario that cannot have them reports n/a instead of stopping the run.
    let pgProblem: string | undefined;
    if (needsPg) {
      try {
        log('starting PostgreSQL');
        postgres = await startBenchPostgres();
      } catch (error) {
        pgProblem = `PostgreSQL unavailable: ${errorMessage(error)}`;
        errors.push(pgProblem);
      }
    }
    let kafkaProblem: string | undefined;
    if (needsKafka) {
      try {
        log('starting Kafka');
        broker = await startBenchKafka();
      } catch (error) {
        kafkaProblem = `Kafka unavailable: ${errorMessage(error)}`;
        errors.push(kafkaProblem);
      }
    }

    let kafkaLib: BenchContext['kafkaLib'] = { unavailable: 'no scenario needs Kafka' };
    try {
      if (needsKafka) kafkaLib = { dir: await benchKafkaLibDir() };
    } catch (error) {
      kafkaLib = { unavailable: `Kafka jars unavailable: ${errorMessage(error)}` };
    }
    const kafkaVersion =
      'dir' in kafkaLib ? ((await kafkaVersionOf(kafkaLib.dir)) ?? FALLBACK_KAFKA_VERSION) : FALLBACK_KAFKA_VERSION;
    machine.kafka = kafkaVersion;

    let debezium: BenchContext['debezium'] = { unavailable: 'skipped (--skip-debezium)' };
    const debeziumScenarios = [...options.only].some((s) => s !== 'S4' && s !== 'S0');
    if (!options.skipDebezium && debeziumScenarios) {
      try {
        debezium = await resolveDebezium(kafkaVersion);
        machine.debezium = `${DEBEZIUM_VERSION} (Kafka Connect ${kafkaVersion} standalone)`;
      } catch (error) {
        debezium = { unavailable: `Debezium jars unavailable: ${errorMessage(error)}` };
        errors.push(debezium.unavailable);
      }
    }

    let pgMajor = '15';
    if (postgres) {
      const client = await connect(postgres.url);
      try {
        const version = await serverVersion(client);
        machine.postgres = version;
        pgMajor = version.split('.')[0] ?? pgMajor;
      } finally {
        await client.end();
      }
      machine.postgresSettings = PG_SETTINGS;
    }

    const kafka = broker ? kafkaClient(broker.brokers) : undefined;
    const admin = kafka?.admin();
    await admin?.connect();

    for (const id of ALL_SCENARIOS) {
      if (!options.only.has(id) || id === 'S0') continue;
      const blocker = id === 'S4' ? kafkaProblem : (pgProblem ?? kafkaProblem);
      if (blocker || !kafka || !admin || !broker) {
        scenarios.push(failedScenario(id, blocker ?? 'services unavailable'));
        continue;
      }
      ctx ??= {
        options,
        runId,
        workRoot,
        pgUrl: postgres?.url ?? '',
        pgMajor,
        brokers: broker.brokers,
        kafka,
        admin,
        debezium,
        kafkaLib,
        producer: { acks: 'all', compression: 'snappy', lingerMs: 0 },
        cores: cpus().length,
      };
      log(`— ${id} ${TITLES[id]}`);
      const started = performance.now();
      try {
        if (id === 'S1') scenarios.push(await runS1(ctx));
        if (id === 'S2') scenarios.push(...(await runS2(ctx)));
        if (id === 'S3') scenarios.push(await runS3(ctx));
        if (id === 'S4') scenarios.push(await runS4(ctx));
        if (id === 'S5') scenarios.push(await runS5(ctx));
      } catch (error) {
        const reason = errorMessage(error);
        errors.push(`${id}: ${reason}`);
        scenarios.push(failedScenario(id, reason));
      }
      log(`— ${id} took ${Math.round((performance.now() - started) / 1000)} s`);
    }
    await admin?.disconnect().catch(() => {});
  } finally {
    await broker?.close().catch((error) => log(`stopping Kafka: ${errorMessage(error)}`));
    await postgres?.close().catch((error) => log(`stopping PostgreSQL: ${errorMessage(error)}`));
  }

  const report: BenchReport = {
    startedAt,
    finishedAt: new Date().toISOString(),
    options: { ...options, only: [...options.only] },
    machine,
    scenarios,
    errors,
  };
  process.stdout.write(reportMarkdown(report));
  await mkdir(options.outDir, { recursive: true });
  const file = join(options.outDir, `bench-${startedAt.replace(/[:.]/g, '-')}${options.quick ? '-quick' : ''}.json`);
  await writeFile(file, `${JSON.stringify(report, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
  log(`results: ${file}`);
  const failed =
    errors.length > 0 ||
    scenarios.some((s) => s.measurements.some((m) => m.status === 'n/a' && !m.reason?.startsWith('skipped')));
  if (process.env.NANOSYNC_BENCH_KEEP === '1' || process.env.NANOSYNC_BENCH_CPU_PROF === '1' || failed)
    log(`work folder kept (configs and logs of every tool): ${workRoot}`);
  else await rm(workRoot, { recursive: true, force: true });
  return 0;
}

// kafkajs schedules timers with negative delays on Node ≥ 24 (a harmless warning per timer): keep stderr readable.
process.removeAllListeners('warning');
process.on('warning', (warning) => {
  if (warning.name !== 'TimeoutNegativeWarning') process.stderr.write(`${warning.name}: ${warning.message}\n`);
});

let options: BenchOptions;
try {
  options = parseArgs(process.argv.slice(2), join(REPO_ROOT, 'bench-results'));
} catch (error) {
  process.stderr.write(`${errorMessage(error)}\n`);
  process.exit(2);
}
if (options.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
main(options).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
