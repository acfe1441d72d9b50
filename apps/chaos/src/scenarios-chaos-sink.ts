/**
 * Fan-out and bad events (RELIABILITY.md: "one sink slow or down while another is healthy",
 * "an event a sink can never write"): two sinks of one pipeline where one is slowed or fails
 * for good, and rows no Kafka topic will take. Each scenario asserts what RELIABILITY.md
 * expects of the fault (the healthy sink current, the spill and its budget, the slot held at
 * the lagging sink's checkpoint, DEGRADED and resume, dead letters and counters, no replay
 * loop), then the shared frame drains and runs the oracle on every sink.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type NanosyncServer, runNanosync } from '@nanosync/connector-testkit/harness';
import { DEFAULT_TOPIC_PREFIX } from '@nanosync/sink-kafka';
import kafkajs from 'kafkajs';
import { type ChaosRun, positionLsn, sleep, TABLE } from './run.js';
import { frame, type Scenario, ScenarioFailure, ScenarioSkipped, streamPoint, tryCommand } from './scenarios.js';

const { Kafka, logLevel } = kafkajs;

/** Ids of rows the scenarios write themselves (apart from the seeded rows, the writer's and the frame's marker). */
const BURST_FIRST_ID = 5_000_000;
const POISON_FIRST_ID = 7_000_000;
const MARKER_FIRST_ID = 8_000_000;

interface SinkStatus {
  name: string;
  state?: string;
  error?: string;
  spillBytes?: number;
  spillEvents?: number;
  checkpoint?: string;
}

interface PipelineStatus {
  state: string;
  error?: string;
  sinks: SinkStatus[];
  warnings: string[];
}

const statusOf = (server: NanosyncServer, run: ChaosRun) => server.pipeline<PipelineStatus>(run.pipeline);

/** A value of one metric of `/metrics` for this pipeline and sink (0 when absent). */
async function metricValue(server: NanosyncServer, name: string, pipeline: string, sink: string): Promise<number> {
  const { text } = await server.api('/metrics');
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!line.includes(`pipeline="${pipeline}"`) || !line.includes(`sink="${sink}"`)) continue;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

/**
 * Inserts a marker row and waits until sink `index` durably holds it: its own checkpoint is
 * at or past the WAL position taken once the marker committed, so past the marker's commit.
 * (Past the position taken before the insert is not enough: a writer transaction committing
 * in between moves the checkpoint there without the marker.) Returns the WAL position taken
 * just before the marker and how many writer transactions had committed before it.
 */
async function markerIn(
  run: ChaosRun,
  index: number,
  id: number,
  what: string,
): Promise<{ lsn: bigint; committed: number }> {
  const committed = run.writer?.committed ?? 0;
  const lsn = await run.walInsertLsn();
  await run.db.query(`INSERT INTO ${TABLE} VALUES ($1, 0, $2)`, [id, what]);
  const committedAt = await run.walInsertLsn();
  const sink = run.sinks[index]!;
  await run.until(async () => {
    const at = (await run.sinkCheckpoints())[sink.id];
    return at !== undefined && positionLsn(at) >= committedAt ? true : undefined;
  }, `sink ${sink.id} to hold the ${what}`);
  return { lsn, committed };
}

/**
 * What the healthy sink must hold once it has the marker: the marker, every row of `ids`
 * and every insert of the writer transactions that began after the start position and
 * committed before the marker.
 */
async function currentProblems(
  run: ChaosRun,
  index: number,
  marker: { id: number; committed: number },
  ids: number[],
): Promise<string[]> {
  const sink = run.sinks[index]!;
  const have = new Set((await run.sinkRecords(index)).map((r) => Number(r.key.id)));
  const problems: string[] = [];
  if (!have.has(marker.id)) problems.push(`sink ${sink.id}: its checkpoint passed the marker ${marker.id}, but not it`);
  const lacking = ids.filter((id) => !have.has(id));
  if (lacking.length > 0)
    problems.push(`sink ${sink.id} lacks ${lacking.length} rows written before the marker (e.g. ${lacking[0]})`);
  // Writer transactions from before the start position are the snapshot's (a row deleted
  // before the snapshot read it is in no sink): only the later ones must all be there.
  const start = await run.startPosition();
  const startLsn = start === undefined ? 0n : positionLsn(start);
  const txns = (run.writer?.txns.slice(0, marker.committed) ?? []).filter((t) => t.lsnBefore > startLsn);
  const inserts = txns.flatMap((t) => t.changes.filter((c) => c.op === 'insert').map((c) => Number(c.key.id)));
  const lost = inserts.filter((id) => !have.has(id));
  if (lost.length > 0)
    problems.push(
      `sink ${sink.id} lacks ${lost.length} writer inserts committed before the marker (e.g. ${lost.slice(0, 5).join(', ')})`,
    );
  return problems;
}

/** A burst of `rows` rows of about 2 KB each, in `txns` transactions, from `first` on; returns their ids. */
async function burst(run: ChaosRun, first: number, rows: number, txns: number): Promise<number[]> {
  const per = Math.ceil(rows / txns);
  for (let from = first; from < first + rows; from += per) {
    const to = Math.min(first + rows, from + per) - 1;
    await run.db.query(
      `INSERT INTO ${TABLE} (id, v, note) SELECT g, 0, repeat(md5(g::text), 64) FROM generate_series($1::int, $2::int) g`,
      [from, to],
    );
  }
  return Array.from({ length: rows }, (_, i) => first + i);
}

const fail = (problems: string[], run: ChaosRun) => {
  if (problems.length > 0) throw new ScenarioFailure(problems, run.logTail());
};

/** The messages of the dead-letter topic that belong to `pipeline`, decoded. */
async function deadLetters(
  run: ChaosRun,
  topic: string,
): Promise<{ key: string; position?: string; letter: Record<string, unknown> }[]> {
  const kafka = new Kafka({
    clientId: 'ns-chaos-dlq',
    brokers: run.services.kafka.brokers,
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  let left: number;
  let ends: Map<number, bigint>;
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    left = offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0);
    // Up to each partition's end as it is now (see ChaosRun's topic reader).
    ends = new Map(offsets.map((o) => [o.partition, BigInt(o.high)]));
  } finally {
    await admin.disconnect();
  }
  const out: { key: string; position?: string; letter: Record<string, unknown> }[] = [];
  if (left === 0) return out;
  const consumer = kafka.consumer({ groupId: `ns-chaos-dlq-${randomBytes(4).toString('hex')}`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out reading ${topic}: ${left} missing`)), 60_000);
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            if (BigInt(message.offset) >= (ends.get(partition) ?? 0n)) return;
            const letter = JSON.parse(message.value!.toString('utf8')) as Record<string, unknown>;
            if (letter.pipeline === run.pipeline)
              out.push({
                key: message.key!.toString('utf8'),
                position: message.headers?.['ns-position']?.toString(),
                letter,
              });
            if (--left === 0) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}

export const SINK_SCENARIOS: Scenario[] = [
  {
    name: 'slow-sink',
    fault:
      "one sink of two (Kafka + file) slowed to 5–20% of the other's speed during a burst: the other stays current, the slow one spills, or fills max_spill_bytes and holds the slot, saying so",
    run: (ctx) => {
      const slow = ctx.rng.int(0, 1);
      const share = ctx.rng.pick([5, 10, 20]);
      // Half the seeds give the slow sink a spill budget the burst exhausts.
      const budget = ctx.rng.chance(0.5) ? ctx.rng.pick([256, 1024, 2048]) * 1024 : undefined;
      const rows = ctx.rng.int(6000, 10000);
      const txns = ctx.rng.int(2, 6);
      const kill = ctx.rng.chance(0.3);
      let throttle = '';
      const hook = () => ({ NODE_ENV: 'test', NANOSYNC_TEST_FAULT: `throttle:${throttle}` });
      return frame(
        ctx,
        {
          sink: 'kafka',
          prepare: async (dir) => {
            throttle = join(dir, 'throttle');
            await writeFile(throttle, '');
            const keys: Record<string, number>[] = [{}, {}];
            if (budget !== undefined) keys[slow] = { max_spill_bytes: budget };
            return { moreSinks: ['file'], sinkKeys: keys };
          },
          start: (run) => run.startRun(hook()),
        },
        async (run, server) => {
          const slowSink = run.sinks[slow]!;
          const fast = 1 - slow;
          const fastSink = run.sinks[fast]!;
          await streamPoint(run, ctx.rng.int(3, 30));
          await writeFile(throttle, `${slowSink.id} ${share}%\n`);
          ctx.log(
            `sink ${slowSink.id} (${slowSink.kind}) throttled to ${share}% of ${fastSink.id}; spill budget ${budget ?? 'default'}; burst of ${rows} rows of 2 KB in ${txns} transactions`,
          );
          const ids = await burst(run, BURST_FIRST_ID, rows, txns);
          const marker = { id: MARKER_FIRST_ID, ...(await markerIn(run, fast, MARKER_FIRST_ID, 'burst marker')) };

          // The healthy sink is current: the burst, the marker and every writer insert before it.
          const problems = await currentProblems(run, fast, marker, ids);
          // The slow one is far behind, and the slot waits for it.
          const slowHas = new Set((await run.sinkRecords(slow)).map((r) => Number(r.key.id)));
          const slowBurst = ids.filter((id) => slowHas.has(id)).length;
          if (slowHas.has(marker.id)) problems.push(`the slow sink ${slowSink.id} already has the marker`);
          if (slowBurst >= rows / 2)
            problems.push(`the slow sink ${slowSink.id} has ${slowBurst} of ${rows} burst rows: not far behind`);
          const confirmed = await run.confirmedFlush();
          if (confirmed !== undefined && confirmed >= marker.lsn)
            problems.push(`the slot (${confirmed.toString(16)}) passed the marker the slow sink does not have`);
          ctx.log(`marker in ${fastSink.id}; the slow sink has ${slowBurst} of ${rows} burst rows`);

          // Its backlog waits on disk: spilling, or paused at a full budget, named in the status and log.
          // (Read together: a paused lane may already have read its spill log back into memory.)
          const seen = await run.until(
            async () => {
              const status = await statusOf(server, run);
              const sink = status.sinks.find((s) => s.name === slowSink.id);
              if (budget !== undefined) return sink?.state === 'paused' ? { status, sink } : undefined;
              if (sink?.state !== 'spilling' || !((sink.spillBytes ?? 0) > 0)) return undefined;
              const metric = await metricValue(server, 'ns_sink_spill_bytes', run.pipeline, slowSink.id);
              return metric > 0 ? { status, sink } : undefined;
            },
            budget === undefined
              ? `sink ${slowSink.id} spilling, with ns_sink_spill_bytes of it above 0`
              : `sink ${slowSink.id} paused at its spill budget`,
          );
          ctx.log(
            `sink ${slowSink.id} ${seen.sink.state}: ${seen.sink.spillEvents} events, ${seen.sink.spillBytes} bytes spilled`,
          );
          const behind = server.process.logLines('sink is behind: its backlog goes to the spill log');
          if (!behind.some((l) => l.includes(`sink=${slowSink.id}`)))
            problems.push(`the log does not say that sink ${slowSink.id} spills`);
          if (budget !== undefined) {
            const warning = seen.status.warnings.find((w) =>
              w.startsWith(`sink ${slowSink.id} holds the replication slot back`),
            );
            if (!warning)
              problems.push(
                `no status warning names the paused sink ${slowSink.id}: ${JSON.stringify(seen.status.warnings)}`,
              );
            const logged = `sink ${slowSink.id} is paused: its spill log reached max_spill_bytes (${budget} bytes)`;
            if (!server.process.output.includes(logged)) problems.push(`the log does not say '${logged}'`);
            // Spilling stops at the budget (one batch may cross it).
            if ((seen.sink.spillBytes ?? 0) > budget + 8 * 1024 * 1024)
              problems.push(
                `sink ${slowSink.id} spilled ${seen.sink.spillBytes} bytes, far past its budget of ${budget}`,
              );
          }
          if (seen.sink.state !== 'paused' && seen.status.state !== 'LIVE_CDC')
            problems.push(`pipeline ${seen.status.state} while a sink only spills`);
          fail(problems, run);

          if (kill) {
            await server.kill('SIGKILL');
            ctx.log(
              `SIGKILLed pid ${server.process.pid} with sink ${slowSink.id} behind (its spill log is not replayed)`,
            );
            server = await run.startRun(hook());
          }
          await writeFile(throttle, '');
          ctx.log('throttle lifted');
          return server;
        },
      );
    },
  },
  {
    name: 'sink-down',
    fault:
      "one sink of two fails for good (its file made immutable, chattr +i: EPERM): DEGRADED, the other delivers, the slot stays at the failed sink's checkpoint, `pipeline resume` after the repair",
    run: (ctx) => {
      const kinds = ctx.rng.chance(0.5) ? (['file', 'kafka'] as const) : (['kafka', 'file'] as const);
      const failed = kinds.indexOf('file');
      const healthy = 1 - failed;
      const kill = ctx.rng.chance(0.4);
      let file = '';
      return frame(
        ctx,
        {
          sink: kinds[0],
          prepare: async () => ({ moreSinks: [kinds[1]] }),
          cleanup: (run) =>
            run.onDispose(async () => {
              if (file) await tryCommand('chattr', ['-i', file]);
            }),
        },
        async (run, server) => {
          const bad = run.sinks[failed]!;
          const good = run.sinks[healthy]!;
          await streamPoint(run, ctx.rng.int(3, 40));
          const target = join(bad.fileDir, `${TABLE}.jsonl`);
          if (!(await tryCommand('chattr', ['+i', target])))
            throw new ScenarioSkipped(
              `chattr +i ${target} failed (needs root and a filesystem with the immutable flag)`,
            );
          file = target;
          ctx.log(`sink ${bad.id}: ${target} made immutable`);
          const degraded = async (what: string) => {
            const status = await run.until(async () => {
              const s = await statusOf(server, run);
              return s.state === 'DEGRADED' && s.sinks.some((x) => x.name === bad.id && x.state === 'errored')
                ? s
                : undefined;
            }, what);
            const problems: string[] = [];
            const sink = status.sinks.find((x) => x.name === bad.id)!;
            if (!status.error?.includes(bad.id))
              problems.push(`the DEGRADED pipeline's error does not name ${bad.id}: ${status.error}`);
            if (!sink.error?.includes('EPERM') || !sink.error.includes(target))
              problems.push(`sink ${bad.id}'s error does not name EPERM and ${target}: ${sink.error}`);
            const other = status.sinks.find((x) => x.name === good.id);
            if (other?.state !== 'running') problems.push(`the healthy sink ${good.id} is ${other?.state}`);
            if (
              !status.warnings.some((w) =>
                w.startsWith(`sink ${bad.id} stopped with an error and holds the replication slot back`),
              )
            )
              problems.push(`no warning names the failed sink: ${JSON.stringify(status.warnings)}`);
            const { text } = await server.api('/metrics');
            if (!text.includes(`ns_pipeline_state{pipeline="${run.pipeline}",state="DEGRADED"} 1`))
              problems.push('ns_pipeline_state does not show DEGRADED');
            fail(problems, run);
            ctx.log(`DEGRADED: ${status.error?.slice(0, 200)}`);
          };
          await degraded(`the pipeline DEGRADED with sink ${bad.id} errored`);
          const checkpoint = (await run.sinkCheckpoints())[bad.id];
          if (checkpoint === undefined) throw new ScenarioFailure([`sink ${bad.id} has no checkpoint`], run.logTail());
          const sizeAtFailure = (await readFile(target)).length;

          if (kill) {
            await server.kill('SIGKILL');
            ctx.log(`SIGKILLed pid ${server.process.pid} while DEGRADED`);
            server = await run.startRun();
            await degraded(`the restarted pipeline DEGRADED again (the file is still immutable)`);
          }
          // The healthy sink goes on; the slot and the failed sink's checkpoint stay.
          await run.writerProgress(ctx.rng.int(5, 30));
          const marker = {
            id: MARKER_FIRST_ID,
            ...(await markerIn(run, healthy, MARKER_FIRST_ID, 'marker while degraded')),
          };
          const problems = await currentProblems(run, healthy, marker, []);
          const after = (await run.sinkCheckpoints())[bad.id];
          if (after !== checkpoint) problems.push(`the failed sink's checkpoint moved from ${checkpoint} to ${after}`);
          const confirmed = await run.confirmedFlush();
          if (confirmed !== undefined && confirmed >= marker.lsn)
            problems.push(`the slot (${confirmed.toString(16)}) passed the failed sink's checkpoint ${checkpoint}`);
          if ((await readFile(target)).length !== sizeAtFailure)
            problems.push(`${target} grew while its sink was errored`);
          fail(problems, run);

          await tryCommand('chattr', ['-i', target]);
          const resumed = await runNanosync(['pipeline', 'resume', run.pipeline, '--server', server.url], {
            env: { ...run.env, NANOSYNC_TOKEN: server.token },
          });
          if (resumed.code !== 0)
            throw new ScenarioFailure(
              [`nanosync pipeline resume failed (${resumed.code}): ${resumed.stderr}`],
              run.logTail(),
            );
          ctx.log(`repaired; ${resumed.stdout.trim() || 'resumed'}`);
          await run.until(async () => {
            const s = await statusOf(server, run);
            return s.state === 'LIVE_CDC' && s.sinks.every((x) => x.state === 'running') ? true : undefined;
          }, 'LIVE_CDC with both sinks running after the resume');
          // Resumed from its own checkpoint: what it writes from now on is all after it.
          await markerIn(run, failed, MARKER_FIRST_ID + 1, 'marker after the repair');
          const text = (await readFile(target)).subarray(sizeAtFailure).toString('utf8');
          const early = text
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => JSON.parse(l) as { op: string; position: string })
            .filter((r) => r.op !== 'read' && r.position <= checkpoint);
          if (early.length > 0)
            fail(
              [
                `after the resume sink ${bad.id} wrote ${early.length} events at or before its checkpoint ${checkpoint}`,
              ],
              run,
            );
          return server;
        },
      );
    },
  },
  {
    name: 'poison-event',
    fault:
      "rows larger than the topic's max.message.bytes at seeded points, on_error dead_letter, skip or fail: letters carry key and position, skips are counted, fail stops at once (no replay loop) and a changed on_error gets past it",
    run: (ctx) => {
      const policy = ctx.rng.pick(['dead_letter', 'skip', 'fail'] as const);
      const maxMessageBytes = ctx.rng.pick([32, 64, 128]) * 1024;
      // fail: one row while streaming; the others: 0–1 in the snapshot and 0–2 while streaming (at least one).
      const inSnapshot = policy === 'fail' ? 0 : ctx.rng.int(0, 1);
      const inStream = policy === 'fail' ? 1 : ctx.rng.int(inSnapshot === 0 ? 1 : 0, 2);
      const then = policy === 'fail' ? ctx.rng.pick(['dead_letter', 'skip'] as const) : policy;
      const poisons: { id: number; op: string }[] = [];
      // Random bytes stay large whatever the compression.
      const big = () => randomBytes(3 * maxMessageBytes).toString('base64');
      const insertPoison = async (run: ChaosRun, op: string) => {
        const id = POISON_FIRST_ID + poisons.length;
        run.excludedKeys.add(id);
        await run.db.query(`INSERT INTO ${TABLE} VALUES ($1, 0, $2)`, [id, big()]);
        poisons.push({ id, op });
        return id;
      };
      return frame(
        ctx,
        {
          sink: 'kafka',
          prepare: async () => ({ sinkKeys: [{ on_error: policy }] }),
          start: async (run) => {
            const admin = new Kafka({
              clientId: 'ns-chaos-admin',
              brokers: run.services.kafka.brokers,
              logLevel: logLevel.NOTHING,
            }).admin();
            await admin.connect();
            try {
              await admin.createTopics({
                waitForLeaders: true,
                topics: [
                  {
                    topic: run.topic,
                    numPartitions: run.options.settings.partitions,
                    configEntries: [{ name: 'max.message.bytes', value: String(maxMessageBytes) }],
                  },
                ],
              });
            } finally {
              await admin.disconnect();
            }
            for (let k = 0; k < inSnapshot; k++) await insertPoison(run, 'read');
            ctx.log(
              `on_error ${policy}; topic max.message.bytes ${maxMessageBytes}; ${inSnapshot} poison rows in the snapshot, ${inStream} while streaming`,
            );
            return run.startRun();
          },
        },
        async (run, server) => {
          if (policy === 'fail') {
            await streamPoint(run, ctx.rng.int(2, 30));
            const id = await insertPoison(run, 'insert');
            const lsnAfter = await run.walInsertLsn();
            const exit = await Promise.race([server.process.exited, sleep(120_000).then(() => undefined)]);
            if (exit === undefined)
              throw new ScenarioFailure(
                ['on_error: fail: the server still runs 120 s after the poison row'],
                run.logTail(),
              );
            const out = server.process.output;
            const problems: string[] = [];
            if (exit.code !== 1)
              problems.push(`nanosync run exited ${exit.code ?? exit.signal}, expected 1 (pipeline ERRORED)`);
            const line = out.split('\n').find((l) => l.includes(`pipeline ${run.pipeline} is ERRORED`)) ?? '';
            for (const part of ['sink 0:out', `${id}`, 'on_error'])
              if (!line.includes(part))
                problems.push(`the ERRORED line does not name '${part}': ${line.slice(0, 400)}`);
            // Not retried, not replayed: one attempt, then the stop.
            const retries = server.process.logLines('sink write failed, retrying').length;
            const restarts = server.process.logLines('pipeline failed, restarting from its checkpoint').length;
            if (retries + restarts > 0)
              problems.push(`the poison row was tried again: ${retries} write retries, ${restarts} pipeline restarts`);
            const confirmed = await run.confirmedFlush();
            if (confirmed !== undefined && confirmed >= lsnAfter) problems.push('the slot passed the poison row');
            fail(problems, run);
            ctx.log(`on_error fail: exit ${exit.code}, no retry: ${line.slice(0, 200)}`);
            // The way past it without touching the data: another on_error, and start again.
            run.options.sinkKeys = [{ on_error: then }];
            await run.writeConfig();
            server = await run.startRun();
            ctx.log(`restarted with on_error ${then}`);
          } else {
            for (let k = 0; k < inStream; k++) {
              await streamPoint(run, ctx.rng.int(2, 30));
              await insertPoison(run, 'insert');
            }
          }
          const counted = then === 'dead_letter' ? 'ns_sink_dead_letters_total' : 'ns_sink_skipped_events_total';
          const expected = policy === 'fail' ? 1 : poisons.length;
          await run.until(
            async () => ((await metricValue(server, counted, run.pipeline, '0:out')) >= expected ? true : undefined),
            `${expected} poison rows counted in ${counted}`,
          );
          const problems: string[] = [];
          const value = await metricValue(server, counted, run.pipeline, '0:out');
          if (value !== expected) problems.push(`${counted} is ${value}, expected ${expected}`);
          const logged = server.process.logLines(then === 'dead_letter' ? 'event dead-lettered' : 'event skipped');
          if (logged.length !== expected) problems.push(`${logged.length} log lines for ${expected} poison rows`);
          if (then === 'dead_letter') {
            const letters = await run.until(async () => {
              const all = await deadLetters(run, `${DEFAULT_TOPIC_PREFIX}dlq`);
              return all.length >= poisons.length ? all : undefined;
            }, `${poisons.length} dead letters`);
            if (letters.length !== poisons.length)
              problems.push(`${letters.length} dead letters for ${poisons.length} poison rows`);
            for (const p of poisons) {
              const found = letters.find((l) => Number((l.letter.key as { id?: unknown })?.id) === p.id);
              if (!found) {
                problems.push(`no dead letter for key ${p.id}`);
                continue;
              }
              const { letter } = found;
              if (letter.table !== TABLE || letter.sink !== '0:out' || letter.op !== p.op)
                problems.push(`dead letter of ${p.id}: table ${letter.table}, sink ${letter.sink}, op ${letter.op}`);
              if (typeof letter.position !== 'string' || found.position !== letter.position)
                problems.push(`dead letter of ${p.id}: position ${letter.position} (header ${found.position})`);
              if (found.key !== JSON.stringify(letter.key))
                problems.push(`dead letter of ${p.id}: message key ${found.key}`);
              const error = letter.error as { code?: string; message?: string } | undefined;
              if (!error?.message) problems.push(`dead letter of ${p.id} has no error`);
            }
          }
          fail(problems, run);
          ctx.log(`${expected} poison rows ${then === 'dead_letter' ? 'dead-lettered' : 'skipped'} and counted`);
          return server;
        },
      );
    },
  },
];
