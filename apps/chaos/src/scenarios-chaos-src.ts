/**
 * The PostgreSQL-side faults of RELIABILITY.md as seeded scenarios: a transaction open
 * before the slot exists, a crash in the middle of events that share one LSN, a lost slot
 * (dropped or invalidated), idle captured tables beside busy ones, and a long pause. Each
 * stages the real fault on the runner's PostgreSQL and asserts the table's "expected"
 * column itself (error text, slot state, WAL figures, warnings) before the oracle runs.
 *
 * Server settings some of them need (`max_slot_wal_keep_size`) are set with ALTER SYSTEM
 * and a reload for the run only, and reset afterwards: the runner owns its PostgreSQL.
 */
import { eventually, type ExpectedChange, type NanosyncServer, runNanosync } from '@nanosync/connector-testkit/harness';
import pg from 'pg';
import { AdminDb, type ChaosRun, parsePgLsn, positionLsn, sleep, TABLE } from './run.js';
import { frame, type Scenario, ScenarioFailure, snapshotPoint, streamPoint } from './scenarios.js';

const MiB = 1024 * 1024;
/** Ids of the rows a scenario writes itself (the seeded writer uses 1..rows and 1,000,000 on). */
const OWN_FIRST_ID = 5_000_000;
/** A sink write holds at most this many events (the runtime's maxWriteEvents). */
const MAX_WRITE_EVENTS = 5_000;
/** How far past a checkpoint's commit LSN the end of its commit record (a slot's confirmed position) may lie. */
const COMMIT_RECORD_SLACK = 64n * 1024n;

interface SlotRow {
  wal_status: string | null;
  restart_lsn: string | null;
  confirmed_flush_lsn: string | null;
  safe_wal_size: string | null;
  active_pid: number | null;
}

async function slotRow(run: ChaosRun): Promise<SlotRow | undefined> {
  const { rows } = await run.db.query<SlotRow>(
    `SELECT wal_status, restart_lsn::text, confirmed_flush_lsn::text, safe_wal_size::text, active_pid
       FROM pg_replication_slots WHERE slot_name = $1`,
    [run.slot],
  );
  return rows[0];
}

async function walLsn(run: ChaosRun): Promise<bigint> {
  const { rows } = await run.db.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
  return parsePgLsn(rows[0]!.l);
}

/** `XXXXXXXX/YYYYYYYY` as PostgreSQL (and nanosync's messages) write an LSN. */
const formatLsn = (lsn: bigint) =>
  `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;

/**
 * A server setting (postgresql.auto.conf) for this run only: ALTER SYSTEM, reload, and the
 * reverse when the run is disposed (or earlier through the returned function).
 */
async function serverSetting(run: ChaosRun, name: string, value: string): Promise<() => Promise<void>> {
  const admin = new AdminDb(run.services.postgres.url);
  // A new session sees the setting once the reload reached it.
  const current = async () => {
    const probe = new AdminDb(run.services.postgres.url);
    try {
      return (await probe.query<{ s: string }>('SELECT current_setting($1) AS s', [name])).rows[0]!.s;
    } finally {
      await probe.close();
    }
  };
  const before = await current();
  const set = async (sql: string, want: string) => {
    await admin.query(sql);
    await admin.query('SELECT pg_reload_conf()');
    await eventually(
      async () => ((await current()) === want ? true : undefined),
      `${name} = ${want} after the reload`,
      30_000,
    );
  };
  let done = false;
  const reset = async () => {
    if (done) return;
    done = true;
    await set(`ALTER SYSTEM RESET ${name}`, before).finally(() => admin.close());
  };
  run.onDispose(reset);
  await set(`ALTER SYSTEM SET ${name} = '${value}'`, value);
  return reset;
}

/** A nanosync CLI command against `server` (its token, the run's state). */
function cli(run: ChaosRun, server: NanosyncServer, args: string[]) {
  return runNanosync([...args, '--server', server.url, '--state', run.options.state], {
    env: { ...run.env, NANOSYNC_TOKEN: server.token },
  });
}

/** Waits (bounded) for a server process that is expected to exit by itself. */
async function exitOf(server: NanosyncServer, what: string, timeoutMs = 90_000) {
  const timeout = sleep(timeoutMs).then(() => undefined);
  const exit = await Promise.race([server.process.exited, timeout]);
  if (!exit)
    throw new ScenarioFailure(
      [`${what}: the server (pid ${server.process.pid}) did not exit within ${timeoutMs} ms`],
      server.process.logTail,
    );
  return exit;
}

/** Per key id, the records of `ids` the sink holds. */
function recordsOf(run: ChaosRun, ids: Iterable<number>) {
  const wanted = new Set(ids);
  const out = new Map<number, typeof run.records>();
  for (const r of run.records) {
    const id = Number(r.key.id);
    if (!wanted.has(id)) continue;
    const list = out.get(id);
    if (list) list.push(r);
    else out.set(id, [r]);
  }
  return out;
}

function ownIds(first: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => first + i);
}

/** Adds changes the scenario made itself to the oracle's "every change present" check. */
function expectChanges(run: ChaosRun, lsnBefore: bigint, changes: ExpectedChange[]): void {
  run.writer!.txns.push({ lsnBefore, changes });
}

/**
 * A quiet point: the writer stopped between transactions and everything it committed
 * durably in the sink (the stored checkpoint is past its last transaction).
 */
async function quiet(run: ChaosRun): Promise<void> {
  await run.writer!.pause();
  const last = run.writer!.txns.at(-1);
  if (!last) return;
  await run.waitCheckpointPast(
    last.lsnBefore,
    await run.walInsertLsn(),
    "the checkpoint to pass the writer's last transaction",
    60_000,
  );
}

export const SOURCE_SCENARIOS: Scenario[] = [
  {
    name: 'tx-before-slot',
    fault: 'a transaction open before the slot is created, committing during the snapshot (or holding up its creation)',
    run: (ctx) => {
      // snapshot-first: BEGIN REPEATABLE READ and a read (a snapshot, no xid) before the slot;
      // it writes and commits while the snapshot runs, so only the stream can carry its rows.
      // xid-first: the transaction has written (has an xid) before the server starts; the
      // slot's creation waits for it, and its commit lands in the snapshot.
      const variant = ctx.rng.pick(['snapshot-first', 'xid-first'] as const);
      const rows = ctx.rng.int(5, 300);
      const updated = ctx.rng.int(0, Math.min(rows, 40));
      const writeAt = ctx.rng.int(5, 60) / 100;
      const commitAt = writeAt + ctx.rng.int(0, 25) / 100;
      const holdMs = ctx.rng.int(300, 2500);
      const ids = ownIds(OWN_FIRST_ID, rows);
      let tx: pg.Client | undefined;
      let committedDuringSnapshot: boolean | undefined;
      const write = async (client: pg.Client) => {
        await client.query(
          `INSERT INTO ${TABLE} (id, v, note) SELECT g, 7, 'open-before-slot' FROM generate_series($1::int, $2::int) g`,
          [ids[0], ids.at(-1)],
        );
        if (updated > 0)
          await client.query(
            `UPDATE ${TABLE} SET v = 8, note = 'open-before-slot, updated' WHERE id >= $1 AND id < $2`,
            [OWN_FIRST_ID, OWN_FIRST_ID + updated],
          );
      };
      return frame(
        ctx,
        {
          start: async (run) => {
            tx = new pg.Client({ connectionString: run.databaseUrl });
            tx.on('error', () => {});
            await tx.connect();
            run.onDispose(async () => void (await tx?.end().catch(() => {})));
            if (variant === 'snapshot-first') {
              await tx.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
              await tx.query(`SELECT count(*) FROM ${TABLE}`);
            } else {
              await tx.query('BEGIN');
              await write(tx);
            }
            const xid = (await tx.query<{ x: string | null }>('SELECT txid_current_if_assigned()::text AS x')).rows[0]!
              .x;
            ctx.log(
              `${variant}: ${rows} rows (${updated} updated again), transaction open before the server starts (xid ${xid ?? 'none yet'})`,
            );
            if ((variant === 'xid-first') !== (xid !== null))
              throw new Error(
                `staging: the open transaction ${xid === null ? 'has no' : 'has an'} xid in variant ${variant}`,
              );
            const server = await run.startRun();
            if (variant === 'xid-first') {
              // The slot cannot be created while the transaction runs: nothing is read meanwhile.
              await sleep(holdMs);
              const delivered = await run.delivered();
              ctx.log(`after ${holdMs} ms with the transaction open: ${delivered} records in the sink`);
              await tx.query('COMMIT');
              committedDuringSnapshot = false;
            }
            return server;
          },
          after: (run) => {
            const problems: string[] = [];
            const found = recordsOf(run, ids);
            for (const id of ids) {
              const last = found.get(id)?.at(-1);
              const note = id < OWN_FIRST_ID + updated ? 'open-before-slot, updated' : 'open-before-slot';
              if (!last) problems.push(`row ${id} of the transaction open before the slot is missing from the sink`);
              else if (last.after?.note !== note)
                problems.push(
                  `row ${id} of the transaction open before the slot: the sink's last version is ${JSON.stringify(last.after)}, expected note '${note}'`,
                );
            }
            if (variant === 'snapshot-first') {
              // Committed after the slot's consistent point: the stream carries it, not the snapshot.
              const streamed = ids.filter((id) => found.get(id)?.some((r) => r.op === 'insert'));
              if (streamed.length !== ids.length)
                problems.push(
                  `${ids.length - streamed.length} rows of the transaction committed after the slot's creation arrived without their insert event`,
                );
            }
            ctx.log(
              `all ${ids.length} rows of the open transaction checked (${variant}, committed during the snapshot: ${committedDuringSnapshot ?? 'n/a'})`,
            );
            return problems;
          },
        },
        async (run, server) => {
          if (variant === 'snapshot-first') {
            await snapshotPoint(run, writeAt);
            await write(tx!);
            await snapshotPoint(run, Math.min(commitAt, 0.95));
            await tx!.query('COMMIT');
            committedDuringSnapshot = !(await run.snapshotDone());
            ctx.log(
              `wrote at ${Math.round(writeAt * 100)}%, committed at ${Math.round(commitAt * 100)}% of the snapshot (snapshot still running: ${committedDuringSnapshot})`,
            );
          }
          return server;
        },
      );
    },
  },
  {
    name: 'one-lsn-group',
    fault:
      'several events sharing one commit LSN (multi-row INSERT, COPY, multi-statement transaction), SIGKILL with part of the group in the sink',
    run: (ctx) => {
      let nextId = OWN_FIRST_ID;
      return frame(
        ctx,
        // Small produce requests: a group takes many of them, and several sink writes.
        { tune: (s) => ({ ...s, maxBytesInFlight: 16 * 1024 }) },
        async (run, server) => {
          const rounds = ctx.rng.int(1, 2);
          for (let round = 1; round <= rounds; round++) {
            const kind = ctx.rng.pick(['insert-select', 'copy', 'multi-statement'] as const);
            const rows = ctx.rng.int(MAX_WRITE_EVENTS + 200, 2 * MAX_WRITE_EVENTS + 1500);
            await streamPoint(run, ctx.rng.int(3, 30));
            // At a quiet point, so the restarted server's first stream writes are the group's.
            await quiet(run);
            await server.kill('SIGKILL');
            const lsnBefore = await walLsn(run);
            const first = nextId;
            nextId += rows;
            const ids = ownIds(first, rows);
            const note = `group${round}`;
            const changes: ExpectedChange[] = ids.map((id) => ({
              table: TABLE,
              op: 'insert',
              key: { id },
              after: { id, v: 3, note },
            }));
            if (kind === 'insert-select') {
              await run.db.query(
                `INSERT INTO ${TABLE} (id, v, note) SELECT g, 3, $3 FROM generate_series($1::int, $2::int) g`,
                [first, first + rows - 1, note],
              );
            } else if (kind === 'copy') {
              // A real COPY, the rows made by the server's shell (the runner's PostgreSQL is local).
              const program = `awk 'BEGIN { for (i = ${first}; i < ${first + rows}; i++) printf "%d\\t3\\t${note}\\n", i }'`;
              await run.db.query(`COPY ${TABLE} (id, v, note) FROM PROGRAM '${program.replace(/'/g, "''")}'`);
            } else {
              const client = new pg.Client({ connectionString: run.databaseUrl });
              await client.connect();
              try {
                await client.query('BEGIN');
                await client.query(
                  `INSERT INTO ${TABLE} (id, v, note) SELECT g, 3, $3 FROM generate_series($1::int, $2::int) g`,
                  [first, first + rows - 1, note],
                );
                const up = await client.query<{ id: number }>(
                  `UPDATE ${TABLE} SET v = v + 1, note = $2 WHERE id < $1 RETURNING id`,
                  [1_000_000, `${note} update`],
                );
                for (const { id } of up.rows)
                  changes.push({ table: TABLE, op: 'update', key: { id }, after: { note: `${note} update` } });
                const gone = ids.filter((_, i) => i % 97 === 5);
                await client.query(`DELETE FROM ${TABLE} WHERE id = ANY($1::int[])`, [gone]);
                for (const id of gone) changes.push({ table: TABLE, op: 'delete', key: { id } });
                await client.query('COMMIT');
              } finally {
                await client.end().catch(() => {});
              }
            }
            expectChanges(run, lsnBefore, changes);
            const events = changes.length;
            // The first N stream events durable, then SIGKILL: a write holds at most
            // MAX_WRITE_EVENTS, so the one crossing N ends before the group does.
            const n = ctx.rng.int(1, events - MAX_WRITE_EVENTS);
            ctx.log(
              `round ${round}/${rounds}: ${kind} of ${rows} rows (${events} events at one commit LSN); SIGKILL once ${n} of them are in the sink`,
            );
            const hooked = await run.startRun({ NODE_ENV: 'test', NANOSYNC_TEST_FAULT: `kill-after-events:${n}` });
            const exit = await exitOf(hooked, 'the fault hook');
            if (exit.signal !== 'SIGKILL' || !hooked.process.logLines('nanosync test fault: SIGKILL').length)
              throw new ScenarioFailure(
                [`the server was not killed by its fault hook (exit ${exit.code ?? exit.signal})`],
                hooked.process.logTail,
              );
            // The staging itself: part of the group is in the sink, not all of it.
            const inSink = new Set(
              (await run.sinkRecords())
                .filter((r) => r.op === 'insert' && Number(r.key.id) >= first && Number(r.key.id) < first + rows)
                .map((r) => Number(r.key.id)),
            );
            ctx.log(`killed with ${inSink.size} of the group's ${rows} inserts in the sink`);
            if (inSink.size === 0 || inSink.size === rows)
              throw new ScenarioFailure([
                `staging: the kill was to land inside the group, but ${inSink.size} of its ${rows} inserts were in the sink`,
              ]);
            server = await run.startRun();
            run.writer!.resume();
          }
          return server;
        },
      );
    },
  },
  {
    name: 'slot-lost',
    fault:
      'replication slot dropped (walsender terminated, pg_drop_replication_slot) or invalidated (max_slot_wal_keep_size) → ERRORED naming slot and lost range, no new slot, re-snapshot only when asked',
    run: (ctx) => {
      const variant = ctx.rng.pick(['dropped', 'invalidated'] as const);
      const retries = ctx.rng.int(0, 1);
      return frame(ctx, {}, async (run, server) => {
        await streamPoint(run, ctx.rng.int(3, 40));
        let headAtLoss: bigint;
        if (variant === 'dropped') {
          // The walsender reconnects at once; terminate and drop until the drop wins.
          for (let attempt = 1; ; attempt++) {
            await run.db.query(
              'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
              [run.slot],
            );
            const dropped = await run.db.query('SELECT pg_drop_replication_slot($1)', [run.slot]).then(
              () => true,
              () => false,
            );
            if (dropped) break;
            if (attempt >= 200) throw new Error('staging: could not drop the slot (always active)');
            await sleep(10);
          }
          headAtLoss = await walLsn(run);
          ctx.log(`dropped slot ${run.slot} while streaming (WAL at ${formatLsn(headAtLoss)})`);
        } else {
          const stopped = await server.process.stop(15_000);
          ctx.log(`server stopped (${stopped.code ?? stopped.signal}); the writer goes on`);
          const reset = await serverSetting(run, 'max_slot_wal_keep_size', '1MB');
          await run.db.query('CREATE TABLE public.wal_filler (id serial PRIMARY KEY)');
          try {
            for (let round = 1; ; round++) {
              await run.db.query('INSERT INTO public.wal_filler DEFAULT VALUES');
              await run.db.query('SELECT pg_switch_wal()');
              await run.db.query('CHECKPOINT');
              if ((await slotRow(run))?.wal_status === 'lost') break;
              if (round >= 40)
                throw new Error(`staging: the slot was not invalidated after ${round} WAL switches and checkpoints`);
            }
          } finally {
            await reset();
          }
          headAtLoss = await walLsn(run);
          ctx.log(`slot ${run.slot} invalidated (wal_status lost) while the pipeline was stopped`);
          server = await run.startRun();
        }
        const checkpoint = await run.checkpoint();
        const problems: string[] = [];
        const judge = async (s: NanosyncServer, attempt: string) => {
          const exit = await exitOf(s, `${attempt}: the pipeline to fail`);
          const line =
            s.process.output.split('\n').find((l) => l.includes(`pipeline ${run.pipeline} is ERRORED`)) ?? '';
          ctx.log(`${attempt}: exit ${exit.code ?? exit.signal}; ${line.slice(0, 400)}`);
          if (exit.code !== 1)
            problems.push(`${attempt}: nanosync run exited ${exit.code ?? exit.signal}, expected 1 (pipeline ERRORED)`);
          if (!line) problems.push(`${attempt}: no "pipeline ${run.pipeline} is ERRORED" line`);
          if (!line.includes(`replication slot "${run.slot}"`))
            problems.push(`${attempt}: the error does not name the slot ${run.slot}: ${line}`);
          // The lost range: from a checkpoint no later than the stored one, up to a WAL
          // position no earlier than where the loss happened.
          const range =
            /checkpoint ([0-9A-F]+\/[0-9A-F]+)(?:#\d+)? up to the server's WAL position ([0-9A-F]+\/[0-9A-F]+)/.exec(
              line,
            );
          if (!range)
            problems.push(`${attempt}: the error does not name the lost range (checkpoint … up to …): ${line}`);
          else {
            const [, from, to] = range;
            // The slot's own confirmed position (what the check before a start reports) is
            // the end of the checkpoint's commit record, a little past its commit LSN.
            if (checkpoint !== undefined && parsePgLsn(from!) > positionLsn(checkpoint) + COMMIT_RECORD_SLACK)
              problems.push(`${attempt}: the lost range starts at ${from}, after the stored checkpoint ${checkpoint}`);
            if (parsePgLsn(to!) < headAtLoss)
              problems.push(
                `${attempt}: the lost range ends at ${to}, before the WAL position ${formatLsn(headAtLoss)} the loss happened at`,
              );
          }
          // Never a silent new slot.
          const slot = await slotRow(run);
          if (variant === 'dropped' && slot)
            problems.push(
              `${attempt}: slot ${run.slot} exists again (wal_status ${slot.wal_status}): a new slot was created`,
            );
          if (variant === 'invalidated' && slot?.wal_status !== 'lost')
            problems.push(
              `${attempt}: slot ${run.slot} is ${slot ? `wal_status ${slot.wal_status}` : 'gone'}, expected the invalidated one (lost) left as it was`,
            );
        };
        await judge(server, 'first run');
        for (let r = 1; r <= retries; r++) {
          // Starting it again does not paper over the loss either.
          server = await run.startRun();
          await judge(server, `restart ${r}`);
        }
        if (problems.length > 0) throw new ScenarioFailure(problems, run.logTail());
        // The documented way out (errors.ts, docs): delete the pipeline and apply it again,
        // which takes a new slot and a full snapshot. The new generation is what the oracle judges.
        const serve = await run.startServe();
        const deleted = await cli(run, serve, ['pipeline', 'delete', run.pipeline]);
        if (deleted.code !== 0)
          throw new ScenarioFailure(
            [`pipeline delete failed (${deleted.code}): ${deleted.stderr}`],
            serve.process.logTail,
          );
        await run.markSink();
        const applied = await cli(run, serve, ['apply', '--file', run.configFile]);
        if (applied.code !== 0)
          throw new ScenarioFailure([`apply failed (${applied.code}): ${applied.stderr}`], serve.process.logTail);
        ctx.log(
          `deleted and applied again (lost range from checkpoint ${checkpoint} up to at least ${formatLsn(headAtLoss)})`,
        );
        await run.waitSnapshotDone();
        await run.writerProgress(20);
        return serve;
      });
    },
  },
  {
    name: 'idle-tables',
    fault:
      'captured tables idle while an uncaptured table of the database is busy: the slot advances, retained WAL stays bounded',
    run: (ctx) =>
      frame(ctx, {}, async (run, server) => {
        const mb = ctx.rng.int(24, 48);
        const rounds = ctx.rng.int(2, 6);
        const pad = ctx.rng.pick([300, 1500, 6000]);
        await run.db.query('CREATE TABLE public.busy (id bigserial PRIMARY KEY, pad text)');
        await streamPoint(run, ctx.rng.int(3, 30));
        await quiet(run);
        const delivered = await run.delivered();
        const start = await walLsn(run);
        const before = await slotRow(run);
        const perRound = Math.max(1, Math.ceil((mb * MiB) / rounds / (pad + 60)));
        for (let r = 0; r < rounds; r++) {
          await run.db.query(`INSERT INTO public.busy (pad) SELECT repeat('b', $2) FROM generate_series(1, $1::int)`, [
            perRound,
            pad,
          ]);
          if (r % 2 === 1) await run.db.query('DELETE FROM public.busy WHERE id % 3 = 0');
        }
        const end = await walLsn(run);
        const written = end - start;
        ctx.log(
          `${rounds} rounds of busy writes: ${(Number(written) / MiB).toFixed(1)} MiB of WAL, the captured table idle`,
        );
        const problems: string[] = [];
        // The slot follows the server through the WAL nobody captures (keepalives acknowledged).
        const passed = await run.until(
          async () => {
            const s = await slotRow(run);
            return s?.confirmed_flush_lsn && parsePgLsn(s.confirmed_flush_lsn) >= end ? s : undefined;
          },
          'the slot to advance past the busy writes while its tables are idle',
          90_000,
        );
        ctx.log(`confirmed_flush_lsn ${before?.confirmed_flush_lsn} → ${passed.confirmed_flush_lsn}`);
        // restart_lsn follows at the next running-transactions record (bgwriter, every 15 s
        // while WAL is written, or a checkpoint): the WAL kept for the slot shrinks to a bound
        // that does not depend on how much the busy table wrote.
        const bound = 16 * MiB;
        await run.db.query('CHECKPOINT');
        const retained = await run
          .until(
            async () => {
              const s = await slotRow(run);
              if (!s?.restart_lsn) return undefined;
              const kept = (await walLsn(run)) - parsePgLsn(s.restart_lsn);
              return kept <= BigInt(bound) ? kept : undefined;
            },
            `the WAL retained by the slot to come under ${bound / MiB} MiB`,
            90_000,
          )
          .catch(async (error: unknown) => {
            const s = await slotRow(run);
            problems.push(
              `retained WAL stayed above ${bound / MiB} MiB after ${(Number(written) / MiB).toFixed(1)} MiB of busy writes (restart_lsn ${s?.restart_lsn}): ${String(error).split('\n')[0]}`,
            );
            return undefined;
          });
        if (retained !== undefined)
          ctx.log(
            `retained WAL ${(Number(retained) / MiB).toFixed(2)} MiB (bound ${bound / MiB} MiB) after ${(Number(written) / MiB).toFixed(1)} MiB written`,
          );
        const now = await run.delivered();
        if (now !== delivered)
          problems.push(`the sink received ${now - delivered} records while only uncaptured tables changed`);
        if (problems.length > 0) throw new ScenarioFailure(problems, run.logTail());
        run.writer!.resume();
        return server;
      }),
  },
  {
    name: 'long-pause',
    fault:
      'pipeline paused (nanosync pipeline pause) while WAL grows: retained WAL reported and warned about before max_slot_wal_keep_size; nothing lost after resume',
    run: (ctx) =>
      frame(ctx, {}, async (run, server) => {
        const keepMb = ctx.rng.pick([96, 128, 160]);
        const level = ctx.rng.pick([50, 80]);
        await streamPoint(run, ctx.rng.int(3, 30));
        const paused = await cli(run, server, ['pipeline', 'pause', run.pipeline]);
        if (paused.code !== 0)
          throw new ScenarioFailure([`pipeline pause failed (${paused.code}): ${paused.stderr}`], run.logTail());
        await server.waitForPipeline<{ state: string }>(run.pipeline, (p) => p.state === 'PAUSED', 'PAUSED', 60_000);
        const reset = await serverSetting(run, 'max_slot_wal_keep_size', `${keepMb}MB`);
        const problems: string[] = [];
        type Status = {
          state: string;
          warnings: string[];
          source?: { retainedWalBytes?: number; safeWalBytes?: number | null };
        };
        try {
          // The writer goes on while paused; WAL segments are switched until the slot holds
          // `level`% of its limit (16 MiB segments), still short of it.
          let share = 0;
          let switches = 0;
          for (;;) {
            const s = (await slotRow(run))!;
            const retained = Number((await walLsn(run)) - parsePgLsn(s.restart_lsn!));
            const safe = Number(s.safe_wal_size ?? 0);
            share = retained / (retained + safe);
            if (share * 100 >= level + 3) break;
            if (switches++ > 40) throw new Error(`staging: retained WAL share stuck at ${Math.round(share * 100)}%`);
            await run.writerProgress(1);
            await run.db.query('SELECT pg_switch_wal()');
          }
          ctx.log(
            `paused; ${switches} WAL switches: the slot holds ${Math.round(share * 100)}% of max_slot_wal_keep_size ${keepMb}MB`,
          );
          const want = level === 80 ? 'over 80%' : /over (50|80)%/;
          const warned = await server.waitForPipeline<Status>(
            run.pipeline,
            (p) => p.warnings.some((w) => (typeof want === 'string' ? w.includes(want) : want.test(w))),
            `the ${level}% retained-WAL warning`,
            60_000,
          );
          const slot = (await slotRow(run))!;
          const warning = warned.warnings.find((w) => w.includes('retained WAL'));
          ctx.log(
            `${warned.state}: ${warning}; slot wal_status ${slot.wal_status}, safe_wal_size ${slot.safe_wal_size}`,
          );
          if (warned.state !== 'PAUSED') problems.push(`the pipeline is ${warned.state}, expected PAUSED`);
          // Warned before the server's limit: the slot is still whole.
          if (slot.wal_status === 'lost' || slot.wal_status === 'unreserved' || Number(slot.safe_wal_size ?? 0) <= 0)
            problems.push(
              `the warning came too late: wal_status ${slot.wal_status}, safe_wal_size ${slot.safe_wal_size}`,
            );
          const reported = warned.source?.retainedWalBytes ?? 0;
          if (reported < (level / 100) * keepMb * MiB * 0.9)
            problems.push(`the status reports ${reported} bytes of retained WAL, below ${level}% of ${keepMb} MiB`);
          const metrics = (await server.api('/metrics')).text;
          const line = metrics
            .split('\n')
            .find((l) => l.startsWith('ns_slot_retained_wal_bytes') && l.includes(`pipeline="${run.pipeline}"`));
          if (!line || Number(line.split(' ').at(-1)) <= 0)
            problems.push(`/metrics has no ns_slot_retained_wal_bytes for the pipeline: ${line}`);
          if (!/WRN retained WAL is \d+%/.test(server.process.output))
            problems.push('the retained-WAL warning is not in the server log');
          const listed = await cli(run, server, ['list', 'pipelines']);
          const row = listed.stdout.split('\n').find((l) => l.trim().startsWith(run.pipeline));
          if (!row?.includes('PAUSED')) problems.push(`list pipelines does not show the pipeline PAUSED: ${row}`);
        } finally {
          await reset();
        }
        if (problems.length > 0) throw new ScenarioFailure(problems, run.logTail());
        const resumed = await cli(run, server, ['pipeline', 'resume', run.pipeline]);
        if (resumed.code !== 0)
          throw new ScenarioFailure([`pipeline resume failed (${resumed.code}): ${resumed.stderr}`], run.logTail());
        await server.waitForPipeline<{ state: string }>(
          run.pipeline,
          (p) => p.state === 'LIVE_CDC',
          'LIVE_CDC after resume',
          60_000,
        );
        return server;
      }),
  },
];
