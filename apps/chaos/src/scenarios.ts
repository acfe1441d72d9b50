/**
 * The faults of RELIABILITY.md as seeded scenarios. Each one starts real `nanosync`
 * processes on a fresh database, runs a seeded writer, applies its fault at seeded points,
 * drains, and ends with the oracle (run.ts). A scenario throws {@link ScenarioFailure} with
 * the oracle's problems, or {@link ScenarioSkipped} when this machine cannot stage the fault.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eventually, type NanosyncServer, runNanosync } from '@nanosync/connector-testkit/harness';
import { Random } from './random.js';
import { SINK_SCENARIOS } from './scenarios-chaos-sink.js';
import { SOURCE_SCENARIOS } from './scenarios-chaos-src.js';
import { CHAOS_DDL_SCENARIOS } from './scenarios-chaos-ddl.js';
import {
  AdminDb,
  ChaosRun,
  drawPipelineSettings,
  drawWriterMix,
  type PipelineSettings,
  type RunOptions,
  type RunStats,
  type Services,
  sleep,
} from './run.js';

const exec = promisify(execFile);

export class ScenarioFailure extends Error {
  constructor(
    readonly problems: string[],
    readonly logTail = '',
  ) {
    super(
      `${problems.length} problem(s):\n  ${problems.slice(0, 15).join('\n  ')}${problems.length > 15 ? '\n  …' : ''}`,
    );
    this.name = 'ScenarioFailure';
  }
}

export class ScenarioSkipped extends Error {
  override name = 'ScenarioSkipped';
}

export interface ScenarioContext {
  services: Services;
  seed: number;
  /** The schedule's draws (kill points, phases, counts, settings). */
  rng: Random;
  /** The writer's own draws, so the schedule stays the same whatever the writer did. */
  writerRng: Random;
  /** Upper bound of seeded rows (the size of the snapshot). */
  maxRows: number;
  /** Added to every nanosync process (the test-only fault hook, for the broken-build check). */
  env: Record<string, string>;
  log: (line: string) => void;
}

export interface Scenario {
  name: string;
  /** The RELIABILITY.md fault it stages. */
  fault: string;
  run(ctx: ScenarioContext): Promise<RunStats>;
}

export interface Setup {
  sink?: 'kafka' | 'file';
  /** Adjust the seed's pipeline settings (e.g. a small max_bytes_in_flight). */
  tune?: (settings: PipelineSettings) => PipelineSettings;
  /** Prepare the run's folder (mount a filesystem…) and choose options; `run.onDispose` undoes it. */
  prepare?: (dir: string, ctx: ScenarioContext) => Promise<Partial<RunOptions>>;
  cleanup?: (run: ChaosRun) => void;
  /** Start the first server (default `nanosync run`). */
  start?: (run: ChaosRun) => Promise<NanosyncServer>;
  /** Extra checks after the oracle. */
  after?: (run: ChaosRun, stats: RunStats) => string[];
}

/**
 * The frame every scenario shares: create the run, start a server and the writer, let `body`
 * stage the fault (returning the server that runs at the end), drain, stop, oracle.
 */
export async function frame(
  ctx: ScenarioContext,
  setup: Setup,
  body: (run: ChaosRun, server: NanosyncServer) => Promise<NanosyncServer>,
): Promise<RunStats> {
  const drawn = drawPipelineSettings(ctx.rng, ctx.maxRows);
  const settings = setup.tune ? setup.tune(drawn) : drawn;
  const mix = drawWriterMix(ctx.rng);
  ctx.log(`settings ${JSON.stringify(settings)} writer ${JSON.stringify(mix)}`);
  await using run = await ChaosRun.create(
    ctx.services,
    { sink: setup.sink ?? 'kafka', settings, env: ctx.env },
    ctx.log,
    setup.prepare ? (dir) => setup.prepare!(dir, ctx) : undefined,
  );
  setup.cleanup?.(run);
  const first = await (setup.start ? setup.start(run) : run.startRun());
  run.startWatching(mix, ctx.writerRng);
  const last = await body(run, first);
  await run.writerProgress(5);
  await run.drain();
  const stopped = await last.process.stop(15_000);
  if (stopped.signal === 'SIGKILL') ctx.log('the last server did not stop within 15 s of SIGTERM');
  for (const server of run.servers) await server.process.stop(5_000);
  const { problems, stats } = await run.check();
  problems.push(...(setup.after?.(run, stats) ?? []));
  ctx.log(
    `checked ${stats.events} events, ${stats.changes} writer changes, ${stats.replays} replays, ${run.writer?.failedTxns ?? 0} writer transactions cut`,
  );
  if (problems.length > 0) throw new ScenarioFailure(problems, run.logTail());
  return stats;
}

/** SIGKILL the server and start a new `nanosync run` on the same state. */
export async function crashAndRestart(
  run: ChaosRun,
  server: NanosyncServer,
  log: (l: string) => void,
): Promise<NanosyncServer> {
  await server.kill('SIGKILL');
  log(`SIGKILLed pid ${server.process.pid}`);
  return run.startRun();
}

/** A point in the snapshot: `fraction` of the seeded rows in the sink. */
export async function snapshotPoint(run: ChaosRun, fraction: number): Promise<number> {
  const n = Math.max(1, Math.ceil(run.options.settings.rows * fraction));
  await run.waitDelivered(n, `${n} snapshot rows in the sink`);
  return n;
}

/** A point in the stream: the snapshot done, then `txns` more writer transactions. */
export async function streamPoint(run: ChaosRun, txns: number): Promise<void> {
  await run.waitSnapshotDone();
  await run.writerProgress(txns);
}

/** Run a command (mount…), returning false when it fails. */
export async function tryCommand(command: string, args: string[]): Promise<boolean> {
  return exec(command, args).then(
    () => true,
    () => false,
  );
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'kill-snapshot',
    fault: 'SIGKILL of the pipeline process at a random point during the snapshot, with a writer',
    run: (ctx) =>
      frame(ctx, {}, async (run, server) => {
        const kills = ctx.rng.int(1, 2);
        for (let k = 0; k < kills; k++) {
          const fraction = ctx.rng.int(5, 85) / 100;
          await snapshotPoint(run, fraction);
          ctx.log(`kill ${k + 1}/${kills} at ${Math.round(fraction * 100)}% of the snapshot`);
          server = await crashAndRestart(run, server, ctx.log);
        }
        return server;
      }),
  },
  {
    name: 'kill-stream',
    fault: 'SIGKILL during streaming (at random moments, bulk transactions included)',
    run: (ctx) =>
      frame(ctx, {}, async (run, server) => {
        const kills = ctx.rng.int(1, 3);
        for (let k = 0; k < kills; k++) {
          const txns = ctx.rng.int(3, 60);
          await streamPoint(run, txns);
          ctx.log(`kill ${k + 1}/${kills} after ${txns} more writer transactions`);
          server = await crashAndRestart(run, server, ctx.log);
        }
        return server;
      }),
  },
  {
    name: 'kill-write-checkpoint',
    fault: "SIGKILL between the Kafka sink's durable write and its checkpoint (NANOSYNC_TEST_FAULT=kill-after-write:N)",
    run: (ctx) => {
      const hook = (n: number) => ({ NODE_ENV: 'test', NANOSYNC_TEST_FAULT: `kill-after-write:${n}` });
      let n = ctx.rng.int(1, 12);
      return frame(ctx, { start: (run) => run.startRun(hook(n)) }, async (run, server) => {
        const rounds = ctx.rng.int(1, 2);
        for (let round = 1; ; round++) {
          ctx.log(`hook: SIGKILL after stream write ${n} (round ${round}/${rounds})`);
          const exit = await server.process.exited;
          const line = server.process.logLines('nanosync test fault: SIGKILL').at(0);
          if (exit.signal !== 'SIGKILL' || !line)
            throw new ScenarioFailure(
              [`the server was not killed by its fault hook (exit ${exit.code ?? exit.signal})`],
              server.process.logTail,
            );
          ctx.log(line.trim());
          if (round >= rounds) break;
          n = ctx.rng.int(1, 12);
          server = await run.startRun(hook(n));
        }
        return run.startRun();
      });
    },
  },
  {
    name: 'postgres-restart',
    fault: 'PostgreSQL restarted (pg_ctl -m fast restart) during the snapshot or during streaming',
    run: (ctx) =>
      frame(ctx, {}, async (run, server) => {
        const restarts = ctx.rng.int(1, 2);
        for (let k = 0; k < restarts; k++) {
          if (k === 0 && ctx.rng.chance(0.5)) {
            const fraction = ctx.rng.int(10, 80) / 100;
            await snapshotPoint(run, fraction);
            ctx.log(`restart ${k + 1}/${restarts} at ${Math.round(fraction * 100)}% of the snapshot`);
          } else {
            const txns = ctx.rng.int(3, 50);
            await streamPoint(run, txns);
            ctx.log(`restart ${k + 1}/${restarts} while streaming, after ${txns} writer transactions`);
          }
          await ctx.services.postgres.restart();
        }
        return server;
      }),
  },
  {
    name: 'walsender-terminated',
    fault: 'walsender terminated (pg_terminate_backend)',
    run: (ctx) =>
      frame(ctx, {}, async (run, server) => {
        const times = ctx.rng.int(1, 3);
        for (let k = 0; k < times; k++) {
          const txns = ctx.rng.int(2, 40);
          if (k === 0 && ctx.rng.chance(0.4)) await snapshotPoint(run, ctx.rng.int(10, 80) / 100);
          else await streamPoint(run, txns);
          const { rows } = await run.db.query<{ pid: number }>(
            'SELECT pg_terminate_backend(active_pid) AS pid FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
            [run.slot],
          );
          ctx.log(`terminated the walsender (${rows.length} backend) ${k + 1}/${times}`);
        }
        return server;
      }),
  },
  {
    name: 'kafka-broker-kill',
    fault: 'Kafka broker SIGKILLed and restarted on the same data; the slot does not advance meanwhile',
    run: (ctx) =>
      frame(ctx, {}, async (run, server) => {
        const problems: string[] = [];
        const times = ctx.rng.int(1, 2);
        for (let k = 0; k < times; k++) {
          if (k === 0 && ctx.rng.chance(0.3)) await snapshotPoint(run, ctx.rng.int(10, 80) / 100);
          else await streamPoint(run, ctx.rng.int(3, 40));
          const downMs = ctx.rng.int(1000, 6000);
          await ctx.services.kafka.kill();
          ctx.log(`broker SIGKILLed ${k + 1}/${times}, down for ${downMs + 1500} ms`);
          // What was acknowledged before the kill may still reach the slot; nothing after.
          await sleep(1500);
          const held = await run.confirmedFlush();
          await sleep(downMs);
          const after = await run.confirmedFlush();
          if (held !== after)
            problems.push(
              `the slot moved from ${held?.toString(16)} to ${after?.toString(16)} while the broker was down`,
            );
          await ctx.services.kafka.start();
        }
        if (problems.length > 0) throw new ScenarioFailure(problems, run.logTail());
        return server;
      }),
  },
  {
    name: 'state-store-unwritable',
    fault: 'state store unwritable (an external PostgreSQL state store turned read-only), then repaired',
    run: async (ctx) => {
      const stateUrl = await ctx.services.postgres.createDatabase();
      const stateDb = new URL(stateUrl).pathname.slice(1);
      const admin = new AdminDb(ctx.services.postgres.url);
      const cut = () =>
        admin.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [stateDb],
        );
      try {
        return await frame(
          ctx,
          { prepare: async () => ({ state: `${stateUrl}?schema=chaos` }) },
          async (run, server) => {
            const times = ctx.rng.int(1, 2);
            for (let k = 0; k < times; k++) {
              await streamPoint(run, ctx.rng.int(3, 40));
              const downMs = ctx.rng.int(1500, 6000);
              await admin.query(`ALTER DATABASE "${stateDb}" SET default_transaction_read_only = on`);
              await cut();
              ctx.log(`state store read-only ${k + 1}/${times} for ${downMs} ms`);
              const seen = await run.until(
                async () => {
                  const status = await server.pipeline<{ state: string; error?: string }>(run.pipeline);
                  return /state store/i.test(status.error ?? '') ? status : undefined;
                },
                'the pipeline to report the state store',
                60_000,
              );
              ctx.log(`pipeline ${seen.state}: ${String(seen.error).slice(0, 160)}`);
              await sleep(downMs);
              await admin.query(`ALTER DATABASE "${stateDb}" RESET default_transaction_read_only`);
              await cut();
              ctx.log('state store writable again');
              await run.until(
                async () => {
                  const status = await server.pipeline<{ state: string }>(run.pipeline);
                  if (status.state === 'LIVE_CDC') return true;
                  if (status.state === 'ERRORED')
                    await server.api(`/v1/pipelines/${run.pipeline}/resume`, { method: 'POST' }).catch(() => {});
                  return undefined;
                },
                'the pipeline to stream again after the repair',
                120_000,
              );
            }
            return server;
          },
        );
      } finally {
        await admin.query(`ALTER DATABASE "${stateDb}" RESET default_transaction_read_only`).catch(() => {});
        await admin.close();
      }
    },
  },
  {
    name: 'two-servers',
    fault:
      'two servers started for the same pipeline: one runs it (lease), the other says why and takes over when it dies',
    run: (ctx) => {
      let second: NanosyncServer | undefined;
      const ttl = String(ctx.rng.pick([2, 3, 5]));
      return frame(
        ctx,
        {
          start: async (run) => {
            const a = await run.startServe(['--lease-ttl', ttl]);
            const applied = await runNanosync(
              ['apply', '--file', run.configFile, '--server', a.url, '--state', run.options.state],
              { env: { ...run.env, NANOSYNC_TOKEN: a.token } },
            );
            if (applied.code !== 0) throw new Error(`apply failed: ${applied.stderr}`);
            second = await run.startServe(['--lease-ttl', ttl]);
            return a;
          },
        },
        async (run, a) => {
          const b = second!;
          const holder = `pid-${a.process.pid}`;
          const listed = await eventually(
            async () => {
              const out = await runNanosync(['list', 'pipelines', '--server', b.url, '--state', run.options.state], {
                env: { ...run.env, NANOSYNC_TOKEN: b.token },
              });
              return out.stdout.includes(holder) ? out.stdout : undefined;
            },
            'the second server to say who runs the pipeline',
            60_000,
          );
          // The second server names the holder in the pipeline's SERVER cell (`list pipelines`).
          const row = listed.split('\n').find((l) => l.trim().startsWith(run.pipeline));
          if (!row?.trim().endsWith(holder))
            throw new ScenarioFailure([`the second server did not name the server running the pipeline:\n${listed}`]);
          ctx.log(`second server lists: ${row.trim()}`);
          if (ctx.rng.chance(0.5)) await snapshotPoint(run, ctx.rng.int(10, 80) / 100);
          else await streamPoint(run, ctx.rng.int(3, 40));
          await a.kill('SIGKILL');
          ctx.log(`SIGKILLed the lease holder pid ${a.process.pid}; the other takes over after ${ttl} s`);
          await run.until(
            async () => {
              const status = await b.pipeline<{ state: string; heldBy?: string }>(run.pipeline);
              return status.state === 'LIVE_CDC' && !status.heldBy ? true : undefined;
            },
            'the second server to take the pipeline over',
            120_000,
          );
          return b;
        },
      );
    },
  },
  {
    name: 'file-disk-full',
    fault: 'disk full under the file sink (a small tmpfs mounted for the run), then room made',
    run: (ctx) => {
      let mountPoint = '';
      return frame(
        ctx,
        {
          sink: 'file',
          prepare: async (dir) => {
            mountPoint = join(dir, 'out');
            await mkdir(mountPoint, { recursive: true });
            // Small enough to fill during the snapshot or the first stream events.
            const kb = ctx.rng.int(48, 160);
            if (!(await tryCommand('mount', ['-t', 'tmpfs', '-o', `size=${kb}k`, 'chaos-full', mountPoint])))
              throw new ScenarioSkipped('mounting a small tmpfs needs root (mount -t tmpfs); not staged');
            ctx.log(`file sink on a ${kb} KiB tmpfs`);
            return { fileDir: mountPoint };
          },
          cleanup: (run) => run.onDispose(async () => void (await tryCommand('umount', ['-l', mountPoint]))),
        },
        async (run, server) => {
          await run.until(
            async () => (server.process.output.match(/ENOSPC|no space left/i) ? true : undefined),
            'the file sink to run out of space',
            120_000,
          );
          const fullMs = ctx.rng.int(500, 4000);
          ctx.log(`disk full seen; room made after ${fullMs} ms`);
          await sleep(fullMs);
          if (!(await tryCommand('mount', ['-o', 'remount,size=256m', mountPoint])))
            throw new Error('could not grow the tmpfs');
          await run.waitSnapshotDone();
          return server;
        },
      );
    },
  },
  {
    name: 'sigterm',
    fault: 'SIGTERM: clean exit within 10 s, checkpoint flushed, the restart delivers nothing twice',
    run: (ctx) =>
      frame(
        ctx,
        {
          after: (_run, stats) =>
            stats.replays > 0 ? [`${stats.replays} events delivered twice after clean stops`] : [],
        },
        async (run, server) => {
          const stops = ctx.rng.int(1, 2);
          for (let k = 0; k < stops; k++) {
            await streamPoint(run, ctx.rng.int(3, 40));
            const started = Date.now();
            const exit = await server.process.stop(10_000);
            const ms = Date.now() - started;
            if (exit.code !== 0)
              throw new ScenarioFailure(
                [`SIGTERM: exit ${exit.code ?? exit.signal} after ${ms} ms (expected a clean exit within 10 s)`],
                server.process.logTail,
              );
            ctx.log(`SIGTERM ${k + 1}/${stops}: clean exit in ${ms} ms`);
            server = await run.startRun();
          }
          return server;
        },
      ),
  },
  // Scenarios kept in their own files (scenarios-*.ts) import `frame` from this module, an
  // import cycle that works because this module is loaded first (matrix.ts, cli.ts, the tests).
  ...SOURCE_SCENARIOS,
  ...SINK_SCENARIOS,
  ...CHAOS_DDL_SCENARIOS,
];

export function scenarioNamed(name: string): Scenario {
  const found = SCENARIOS.find((s) => s.name === name);
  if (!found) throw new Error(`unknown scenario '${name}' (known: ${SCENARIOS.map((s) => s.name).join(', ')})`);
  return found;
}

export function contextFor(
  services: Services,
  scenario: string,
  seed: number,
  options: { maxRows: number; env: Record<string, string>; log: (line: string) => void },
): ScenarioContext {
  return {
    services,
    seed,
    rng: new Random(seed, scenario),
    writerRng: new Random(seed, `${scenario}/writer`),
    maxRows: options.maxRows,
    env: options.env,
    log: options.log,
  };
}
