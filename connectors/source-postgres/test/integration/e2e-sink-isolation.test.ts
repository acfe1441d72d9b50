/**
 * Sink isolation against real services: real PostgreSQL, the pipeline in a child process
 * (run-pipeline.ts: core's Engine with the file sink) or the real `nanosync run` server, and
 * two file sinks. Every assertion is on content and positions (what each sink file holds,
 * the slot's confirmed_flush_lsn, the stored checkpoints), never on how long something took.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { eventually, NanosyncServer, runNanosync } from '@nanosync/connector-testkit';
import type { PipelineStatus } from '@nanosync/core/host';
import { describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/position.js';
import { type PipelineProcess, readSinkFile, readStore, sleep } from './e2e/harness.js';
import { BULK_FIRST_ID, E2eScenario, waitFor } from './e2e/scenario.js';

/**
 * The issue's isolation test: the slow sink gets this share of the fast sink's speed
 * (core's test-only `throttle:FILE` fault, relative to what the fast sink writes) during
 * HEAVY_WRITES_MS of heavy writes (HEAVY_ROWS rows of ~300 bytes every HEAVY_TICK_MS, next
 * to the concurrent writer), with a freshness marker every FRESHNESS_EVERY_MS.
 */
const SLOW_SHARE_PERCENT = 10;
const HEAVY_WRITES_MS = 120_000;
const HEAVY_ROWS = 750;
const HEAVY_TICK_MS = 500;
const FRESHNESS_EVERY_MS = 15_000;
const FRESH_FIRST_ID = 8_000_000;
/** Core's largest single sink write (events): a write under way when the throttle took hold. */
const MAX_WRITE_EVENTS = 5_000;
/** During the snapshot test: at most 125 events a second (the snapshot itself takes a few seconds). */
const SNAPSHOT_THROTTLE_MS_PER_EVENT = '8';
/** Each sink's in-memory queue in these tests (events): small, so the slow sink's backlog must spill. */
const QUEUE_MAX_EVENTS = '500';
/**
 * Resident memory the pipeline process may reach in the throttled run. A child running core
 * from TypeScript sources (tsx) starts at roughly 150–250 MB; the backlog the slow sink builds
 * (over a hundred thousand events) is kept out of memory by the spill log, so the process
 * stays well under this bound.
 */
const RSS_BOUND_BYTES = 600 * 1024 * 1024;

/** The child's options for a throttled second sink (`out2`), with its status written to `status.json`. */
function throttledEnv(s: E2eScenario) {
  return {
    NS_TEST_SLOW_SINK: 'out2',
    NS_TEST_MS_PER_EVENT_FILE: join(s.work.dir, 'ms-per-event'),
    NS_TEST_STATUS_FILE: join(s.work.dir, 'status.json'),
    NS_TEST_QUEUE_MAX_EVENTS: QUEUE_MAX_EVENTS,
  };
}

const throttle = (s: E2eScenario, msPerEvent: string) => writeFile(join(s.work.dir, 'ms-per-event'), msPerEvent);

/** The engine's status of the scenario's pipeline, as the child last wrote it (undefined before the first). */
function statusOf(s: E2eScenario): PipelineStatus | undefined {
  try {
    return (JSON.parse(readFileSync(join(s.work.dir, 'status.json'), 'utf8')) as Record<string, PipelineStatus>)[
      s.pipeline
    ];
  } catch {
    return undefined;
  }
}

/** Segment files in the second sink's spill folder. */
function spillFiles(s: E2eScenario): string[] {
  try {
    return readdirSync(join(s.work.dir, 'spill', s.pipeline, '1_out2')).filter((f) => f.endsWith('.spill'));
  } catch {
    return [];
  }
}

/** VmRSS of a process every 100 ms (bytes), until stopped. */
function sampleRss(pid: number) {
  let max = 0;
  let samples = 0;
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      try {
        const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (kb) {
          max = Math.max(max, Number(kb[1]) * 1024);
          samples++;
        }
      } catch {}
      await sleep(100);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await done;
      return { max, samples };
    },
  };
}

/** True once the file holds `text` (a cheap look for a marker, without parsing every line). */
async function fileHas(file: string, text: string): Promise<boolean> {
  return (await readFile(file, 'utf8').catch(() => '')).includes(text);
}

async function waitForText(file: string, text: string, what: string, proc?: PipelineProcess): Promise<void> {
  const deadline = Date.now() + 180_000;
  while (!(await fileHas(file, text))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${proc ? `\n${proc.logTail}` : ''}`);
    await sleep(100);
  }
}

const id = (l: { key: Record<string, unknown> }) => Number(l.key.id);

/**
 * A sink file read as it grows: each `read()` parses only the bytes added since the last
 * one, counting lines and keeping the ids seen (the files reach tens of MB here).
 */
class SinkTail {
  lines = 0;
  readonly ids = new Set<number>();
  #offset = 0;
  #carry = '';
  readonly #decoder = new StringDecoder('utf8');

  constructor(readonly file: string) {}

  async read(): Promise<void> {
    const handle = await open(this.file, 'r').catch(() => undefined);
    if (handle === undefined) return;
    try {
      const buffer = Buffer.alloc(4 * 1024 * 1024);
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.#offset);
        if (bytesRead === 0) return;
        this.#offset += bytesRead;
        const parts = (this.#carry + this.#decoder.write(buffer.subarray(0, bytesRead))).split('\n');
        this.#carry = parts.pop()!;
        for (const line of parts) {
          if (line === '') continue;
          this.lines++;
          this.ids.add(Number((JSON.parse(line) as { key: { id: unknown } }).key.id));
        }
      }
    } finally {
      await handle.close();
    }
  }
}

describe('sink isolation with real PostgreSQL and two file sinks', () => {
  it(
    'two minutes of heavy writes with one sink throttled to 10% of the other’s speed: the fast sink stays current, the slow one spills to disk, both pass the oracle once it drains, RSS stays bounded',
    { timeout: 900_000 },
    async () => {
      await using s = await E2eScenario.create({ rows: 1000, secondSink: {} });
      const throttleFile = join(s.work.dir, 'throttle');
      await s.startWriter();
      const proc = s.spawn(undefined, {
        env: {
          NODE_ENV: 'test',
          NANOSYNC_TEST_FAULT: `throttle:${throttleFile}`,
          NS_TEST_STATUS_FILE: join(s.work.dir, 'status.json'),
        },
      });
      await s.waitLive(proc);
      const rss = sampleRss(proc.pid!);
      const fast = new SinkTail(s.sinkFiles[0]!);
      const slow = new SinkTail(s.sinkFiles[1]!);
      await fast.read();
      await slow.read();
      const fastAtStart = fast.lines;
      const slowAtStart = slow.lines;
      await writeFile(throttleFile, `1:out2 ${SLOW_SHARE_PERCENT}%\n`);

      // Heavy writes: HEAVY_ROWS rows every HEAVY_TICK_MS for HEAVY_WRITES_MS, next to the writer.
      let heavyNext = BULK_FIRST_ID;
      let stopHeavy = false;
      const heavy = (async () => {
        while (!stopHeavy) {
          const began = Date.now();
          await s.query(
            `INSERT INTO public.accounts SELECT g, g, repeat(md5(g::text), 8) FROM generate_series($1::int, $2::int) g`,
            [heavyNext, heavyNext + HEAVY_ROWS - 1],
          );
          heavyNext += HEAVY_ROWS;
          await sleep(Math.max(0, HEAVY_TICK_MS - (Date.now() - began)));
        }
      })();
      heavy.catch(() => {}); // awaited below, where a failed insert fails the test

      // Every FRESHNESS_EVERY_MS a marker row: once the fast sink has it, it has everything
      // written before it, while the slow one lacks it and is held to its share.
      const writesEnd = Date.now() + HEAVY_WRITES_MS;
      let checks = 0;
      let sawSpill = false;
      while (Date.now() < writesEnd) {
        await sleep(FRESHNESS_EVERY_MS);
        const markerId = FRESH_FIRST_ID + checks;
        const heavyBefore = heavyNext;
        const committedBefore = s.txns.length;
        await s.query(`INSERT INTO public.accounts VALUES (${markerId}, 0, 'fresh ${checks}')`);
        await waitFor(
          async () => {
            await fast.read();
            return fast.ids.has(markerId);
          },
          `freshness marker ${checks} in the fast sink`,
          proc,
          180_000,
        );
        await slow.read();
        for (let id = BULK_FIRST_ID; id < heavyBefore; id++)
          if (!fast.ids.has(id)) expect.fail(`the fast sink has marker ${checks} but not heavy row ${id} before it`);
        for (const t of s.txns.slice(0, committedBefore))
          expect(fast.ids.has(t.insertedId), `writer insert ${t.insertedId} before marker ${checks}`).toBe(true);
        expect(slow.ids.has(markerId), `the slow sink has marker ${checks} too`).toBe(false);
        const heavyRows = heavyBefore - BULK_FIRST_ID;
        let slowHeavy = 0;
        for (let id = BULK_FIRST_ID; id < heavyBefore; id++) if (slow.ids.has(id)) slowHeavy++;
        expect(slowHeavy, `slow sink: ${slowHeavy} of ${heavyRows} heavy rows at marker ${checks}`).toBeLessThan(
          heavyRows / 2,
        );
        // The throttle: the slow sink wrote at most its share of what the fast one wrote (plus
        // one write it may have begun before the throttle took hold).
        const fastSince = fast.lines - fastAtStart;
        const slowSince = slow.lines - slowAtStart;
        expect(slowSince).toBeLessThanOrEqual((fastSince * SLOW_SHARE_PERCENT) / 100 + MAX_WRITE_EVENTS);
        const sink = statusOf(s)?.sinks.find((x) => x.name === '1:out2');
        if (sink?.state === 'spilling' && (sink.spillBytes ?? 0) > 0 && spillFiles(s).length > 0) sawSpill = true;
        console.log(
          `sink isolation: marker ${checks}: fast ${fastSince} events, slow ${slowSince} (${((100 * slowSince) / Math.max(1, fastSince)).toFixed(1)}%), ${slowHeavy}/${heavyRows} heavy rows; slow sink ${sink?.state} with ${sink?.spillEvents ?? 0} events spilled`,
        );
        checks++;
      }
      stopHeavy = true;
      await heavy;
      expect(checks).toBeGreaterThanOrEqual(4);
      expect(sawSpill, 'the slow sink was seen spilling to disk').toBe(true);

      // The throttle lifts: the slow sink drains its spill log; both pass the oracle.
      await writeFile(throttleFile, '');
      const txnsAtLift = s.txns.length;
      await waitFor(() => s.txns.length >= txnsAtLift + 20, 'writer transactions after the throttle lifted', proc);
      await eventually(
        async () => {
          const sink = statusOf(s)?.sinks.find((x) => x.name === '1:out2');
          return sink?.state === 'running' && sink.spillBytes === 0 ? true : undefined;
        },
        'the slow sink caught up with its spill log',
        600_000,
      );
      await waitFor(
        async () => {
          await slow.read();
          return slow.ids.has(FRESH_FIRST_ID + checks - 1);
        },
        'the last freshness marker in the slow sink',
        proc,
        600_000,
      );
      await s.finish(proc);
      const { max, samples } = await rss.stop();
      expect(spillFiles(s)).toEqual([]);
      await s.check(0);
      await s.check(1);
      expect(samples).toBeGreaterThan(100);
      expect(max, `peak RSS ${Math.round(max / 1024 / 1024)} MB`).toBeLessThan(RSS_BOUND_BYTES);
      console.log(
        `sink isolation: ${heavyNext - BULK_FIRST_ID} heavy rows in ${HEAVY_WRITES_MS / 1000} s, ${checks} freshness markers; peak RSS ${Math.round(max / 1024 / 1024)} MB over ${samples} samples`,
      );
    },
  );

  it('concurrent snapshot: a throttled second sink does not stop the fast one from getting every snapshot row', async () => {
    const ROWS = 4000;
    await using s = await E2eScenario.create({
      rows: ROWS,
      secondSink: {},
      snapshot: { concurrency: 2, rows: 1000, mode: 'concurrent' },
    });
    await throttle(s, SNAPSHOT_THROTTLE_MS_PER_EVENT);
    await s.startWriter();
    const proc = s.spawn(undefined, { env: throttledEnv(s) });
    const reads = async (sink: number) =>
      new Set(
        (await s.lines(sink))
          .filter((l) => l.op === 'read')
          .map(id)
          .filter((i) => i <= ROWS),
      );
    // Every seeded row the writer has not deleted reaches the fast sink: as a snapshot row, or
    // through a change of it the stream carried (the merge drops a row the stream changed).
    const missingInFast = async () => {
      const has = new Set((await s.lines(0)).map(id));
      const deleted = new Set(s.txns.map((t) => t.deletedId));
      const missing: number[] = [];
      for (let i = 1; i <= ROWS; i++) if (!has.has(i) && !deleted.has(i)) missing.push(i);
      return missing;
    };
    await waitFor(async () => (await missingInFast()).length === 0, 'the fast sink has the snapshot', proc);
    expect((await reads(0)).size).toBeGreaterThan(ROWS / 2);
    const slowReads = await reads(1);
    expect(slowReads.size).toBeLessThan(ROWS / 2);
    // The snapshot is not done as a whole (a partition is done once every sink has it).
    expect(s.partitions().some((p) => p.status !== 'done')).toBe(true);
    expect(spillFiles(s).length).toBeGreaterThan(0);

    await throttle(s, '0');
    await s.waitLive(proc);
    await s.waitForStreamEvents(40, proc);
    await s.finish(proc);
    expect(s.partitions().every((p) => p.status === 'done')).toBe(true);
    await s.check(0);
    await s.check(1);
  });

  it('a sink that fails for good (real `nanosync run`): DEGRADED, the other sink delivers everything, the slot stays at the failed sink’s checkpoint; `pipeline resume` brings it back from there', async () => {
    // Sink 2 writes one file per table under out2/; public.audit starts empty, so its file is
    // opened only when its first change arrives.
    await using s = await E2eScenario.create({
      rows: 1000,
      extraTables: [{ name: 'audit', rows: 0 }],
      secondSink: { folder: true },
    });
    await s.startWriter();
    await using server = await NanosyncServer.start(['run', '--file', s.work.configFile, '--state', s.work.stateFile]);
    const cli = (...args: string[]) =>
      runNanosync([...args, '--server', server.url], { env: { NANOSYNC_TOKEN: server.token } });
    await server.waitForPipeline<PipelineStatus>(s.pipeline, (p) => p.state === 'LIVE_CDC', 'LIVE_CDC');
    await s.waitForStreamEvents(20);
    await waitFor(async () => (await s.lines(1)).some((l) => l.op !== 'read'), 'stream events in sink 2');

    // The real failure: a folder stands where sink 2's file for public.audit must be created.
    const auditFile = join(s.work.dir, 'out2', 'public.audit.jsonl');
    await mkdir(auditFile);
    await s.query(`INSERT INTO public.audit VALUES (1, 'breaks sink 2')`);
    const auditLsnAfter = parseLsn((await s.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l);

    const degraded = await server.waitForPipeline<PipelineStatus>(
      s.pipeline,
      (p) => p.state === 'DEGRADED',
      'DEGRADED',
    );
    expect(degraded.error).toContain('1:out2');
    const failed = degraded.sinks.find((x) => x.name === '1:out2')!;
    expect(failed.state).toBe('errored');
    expect(failed.error).toContain('public.audit.jsonl');
    expect(degraded.sinks.find((x) => x.name === '0:out')!.state).toBe('running');
    const listed = await cli('list', 'pipelines');
    expect(listed.stdout).toMatch(new RegExp(`^${s.pipeline}\\s+DEGRADED`, 'm'));
    const scrape = await server.api('/metrics');
    expect(scrape.text).toContain(`ns_pipeline_state{pipeline="${s.pipeline}",state="DEGRADED"} 1`);

    const checkpointOf = (sink: string) =>
      readStore(
        s.work.stateFile,
        (db) =>
          (
            db.prepare('SELECT position FROM checkpoints WHERE pipeline = ? AND sink = ?').get(s.pipeline, sink) as
              | { position: string }
              | undefined
          )?.position,
      );
    const failedCheckpoint = checkpointOf('1:out2');
    expect(failedCheckpoint).toBeDefined();
    const sink2BytesAtFailure = (await readFile(s.sinkFiles[1]!)).length;

    // While degraded the other sink delivers everything, and the slot never passes the
    // failed sink's checkpoint: it never confirms the transaction sink 2 could not write.
    await s.query(`INSERT INTO public.audit VALUES (2, 'while degraded')`);
    await waitForText(s.work.sinkFile, 'while degraded', 'the healthy sink goes on');
    const writerBefore = s.txns.length;
    await waitFor(() => s.txns.length >= writerBefore + 30, 'more writer transactions');
    const lastInsert = s.txns.at(-1)!.insertedId;
    await waitFor(
      async () => (await s.lines(0)).some((l) => l.op === 'insert' && id(l) === lastInsert),
      'the healthy sink has the latest writer transaction',
    );
    const slotFlush = async () =>
      parseLsn(
        (
          await s.query('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [
            s.slot,
          ])
        ).rows[0].l,
      );
    for (let i = 0; i < 5; i++) {
      expect((await slotFlush()) < auditLsnAfter, 'the slot stays before the transaction sink 2 failed on').toBe(true);
      await sleep(200);
    }
    expect(checkpointOf('1:out2')).toBe(failedCheckpoint);
    expect((await readFile(s.sinkFiles[1]!)).length).toBe(sink2BytesAtFailure);

    // Repaired: resume restarts the failed sink from its own checkpoint.
    await rm(auditFile, { recursive: true });
    const resumed = await cli('pipeline', 'resume', s.pipeline);
    expect(resumed.code, resumed.stderr).toBe(0);
    await server.waitForPipeline<PipelineStatus>(
      s.pipeline,
      (p) => p.state === 'LIVE_CDC' && p.sinks.every((x) => x.state === 'running'),
      'LIVE_CDC with both sinks running',
    );
    await s.finish();
    const sink2 = await s.lines(1);
    const afterResume = sink2.filter((l) => l.end > sink2BytesAtFailure);
    expect(afterResume.length).toBeGreaterThan(0);
    // Resumed from its own checkpoint: nothing it already had is written again.
    expect(afterResume.every((l) => l.position > failedCheckpoint!)).toBe(true);
    const audit = await readSinkFile(auditFile);
    expect(audit.map((l) => l.after?.note)).toEqual(['breaks sink 2', 'while degraded']);
    await s.check(0);
    await s.check(1);
    await eventually(
      async () => ((await slotFlush()) >= auditLsnAfter ? true : undefined),
      'the slot moves past the repaired transaction once both sinks have it',
    );
    await server.kill('SIGTERM');
  });
});
