/**
 * Scenarios for the faults of RELIABILITY.md that change the captured table or freeze a
 * server: partitions attached, detached and created while streaming; DDL while streaming;
 * SQL Server change rows removed by the cleanup job; a server frozen past its lease.
 *
 * DDL and partition changes run on the writer's own connection between two of its
 * transactions ({@link SeededWriter.between}), so the writer always knows the table's
 * columns and live ids, and each change has a place in the WAL the checks can compare
 * event positions with.
 */
import type { NanosyncServer } from '@nanosync/connector-testkit/harness';
import { eventually, type OracleRecord, runNanosync } from '@nanosync/connector-testkit/harness';
import type { Row, Value } from '@nanosync/core';
import { type ActionLsns, AdminDb, type ChaosRun, positionLsn, TABLE, type WriterAction } from './run.js';
import {
  crashAndRestart,
  frame,
  type Scenario,
  type ScenarioContext,
  snapshotPoint,
  streamPoint,
} from './scenarios.js';
import { sqlServerCleanupScenario } from './sqlserver-cleanup.js';

/** One change of the table, made between two writer transactions. */
interface Step {
  /** Named in the run's log. */
  what: string;
  apply: WriterAction;
  /** After it committed (and after a restart scheduled around it): wait for its effect (an attach read). */
  settle?: (run: ChaosRun) => Promise<void>;
}

/**
 * Makes `count` steps (each drawn when its turn comes, after the previous one ran), each
 * after 2–25 more writer transactions, with one SIGKILL at a seeded step: just before it (the
 * change is then made while no server runs), just after it, or 1–15 writer transactions later.
 */
async function runSteps(
  ctx: ScenarioContext,
  run: ChaosRun,
  server: NanosyncServer,
  count: number,
  makeStep: (index: number) => Step,
): Promise<{ server: NanosyncServer; marks: { what: string; lsns: ActionLsns }[] }> {
  const killAt = ctx.rng.int(0, count - 1);
  const placement = ctx.rng.pick(['before', 'after', 'later'] as const);
  const marks: { what: string; lsns: ActionLsns }[] = [];
  for (let i = 0; i < count; i++) {
    await streamPoint(run, ctx.rng.int(2, 25));
    const step = makeStep(i);
    if (i === killAt && placement === 'before') {
      await server.kill('SIGKILL');
      ctx.log(`SIGKILLed pid ${server.process.pid}; ${step.what} while no server runs`);
      marks.push({ what: step.what, lsns: await run.writer!.between(step.apply) });
      server = await run.startRun();
    } else {
      marks.push({ what: step.what, lsns: await run.writer!.between(step.apply) });
      ctx.log(step.what);
      if (i === killAt) {
        if (placement === 'later') {
          const txns = ctx.rng.int(1, 15);
          await run.writerProgress(txns);
          ctx.log(`SIGKILL ${txns} writer transactions after it`);
        } else ctx.log('SIGKILL right after it');
        server = await crashAndRestart(run, server, ctx.log);
      }
    }
    await step.settle?.(run);
  }
  return { server, marks };
}

function shuffled<T>(ctx: ScenarioContext, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = ctx.rng.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// partition-attach-detach

const ATTACHED_BASE = 3_000_000;
const CREATED_BASE = 5_000_000;
const RANGE = 100_000;

/** Waits until some server logged the last chunk of an attached partition's rows. */
async function attachRead(run: ChaosRun, partition: string): Promise<void> {
  await run.until(
    async () =>
      run.output
        .split('\n')
        .some(
          (line) =>
            line.includes('rows of an attached partition delivered') &&
            line.includes(partition) &&
            /last[=":]+true/.test(line),
        )
        ? true
        : undefined,
    `the rows of the attached partition ${partition} to be delivered`,
    120_000,
  );
}

const partitionAttachDetach: Scenario = {
  name: 'partition-attach-detach',
  fault:
    'partitioned table: ATTACH PARTITION (with rows), DETACH PARTITION, CREATE TABLE … PARTITION OF while streaming, SIGKILL around one',
  run: (ctx) => {
    const createTable = async (db: ChaosRun['db'], rows: number) => {
      const mid = Math.max(2, Math.floor(rows / 2));
      await db.query(
        `CREATE TABLE ${TABLE} (id int NOT NULL, v int NOT NULL, note text, PRIMARY KEY (id)) PARTITION BY RANGE (id)`,
      );
      await db.query(`CREATE TABLE public.accounts_s1 PARTITION OF ${TABLE} FOR VALUES FROM (MINVALUE) TO (${mid})`);
      await db.query(`CREATE TABLE public.accounts_s2 PARTITION OF ${TABLE} FOR VALUES FROM (${mid}) TO (1000000)`);
      // The writer inserts from 1 000 000 on; the drain's marker row (9 999 999) lands in the default partition.
      await db.query(`CREATE TABLE public.accounts_w PARTITION OF ${TABLE} FOR VALUES FROM (1000000) TO (2000000)`);
      await db.query(`CREATE TABLE public.accounts_rest PARTITION OF ${TABLE} DEFAULT`);
      await db.query(`INSERT INTO ${TABLE} SELECT g, 0, 'seed' FROM generate_series(1, $1::int) g`, [rows]);
    };
    return frame(ctx, { prepare: async () => ({ createTable }) }, async (run, server) => {
      /** Leaves that may be detached: their rows are all in the sink by the time their turn comes. */
      const detachable = ['accounts_s1', 'accounts_s2'];
      const detached: string[] = [];
      let attaches = 0;
      let creates = 0;
      const kinds = shuffled(ctx, ['attach', 'detach', 'create'] as const);
      if (ctx.rng.chance(0.5)) kinds.splice(ctx.rng.int(0, kinds.length), 0, 'attach');
      const step = (kind: (typeof kinds)[number]): Step => {
        if (kind === 'attach') {
          const k = ++attaches;
          const name = `accounts_a${k}`;
          const base = ATTACHED_BASE + k * RANGE;
          const rows = ctx.rng.int(20, 600);
          return {
            what: `ATTACH PARTITION public.${name} holding ${rows} rows`,
            apply: async (db, live) => {
              // Rows written before the attach are never in the WAL under the parent's name: the stream reads them.
              await db.query(`CREATE TABLE public.${name} (id int NOT NULL, v int NOT NULL, note text)`);
              await db.query(
                `INSERT INTO public.${name} SELECT g, 0, 'attached' FROM generate_series($1::int, $2::int) g`,
                [base + 1, base + rows],
              );
              await db.query(
                `ALTER TABLE ${TABLE} ATTACH PARTITION public.${name} FOR VALUES FROM (${base}) TO (${base + RANGE})`,
              );
              for (let id = base + 1; id <= base + rows; id++) live.push(id);
              return undefined;
            },
            settle: async (r) => {
              await attachRead(r, `public.${name}`);
              detachable.push(name);
            },
          };
        }
        if (kind === 'create') {
          const k = ++creates;
          const name = `accounts_c${k}`;
          const base = CREATED_BASE + k * RANGE;
          const rows = ctx.rng.int(5, 120);
          return {
            what: `CREATE TABLE public.${name} PARTITION OF ${TABLE}, then ${rows} rows inserted into it`,
            apply: async (db, live) => {
              await db.query(
                `CREATE TABLE public.${name} PARTITION OF ${TABLE} FOR VALUES FROM (${base}) TO (${base + RANGE})`,
              );
              await db.query(
                `INSERT INTO ${TABLE} (id, v, note) SELECT g, 1, 'created' FROM generate_series($1::int, $2::int) g`,
                [base + 1, base + rows],
              );
              const changes = [];
              for (let id = base + 1; id <= base + rows; id++) {
                live.push(id);
                changes.push({
                  table: TABLE,
                  op: 'insert' as const,
                  key: { id },
                  after: { id, v: 1, note: 'created' },
                });
              }
              detachable.push(name);
              return changes;
            },
          };
        }
        const name = detachable.splice(ctx.rng.int(0, detachable.length - 1), 1)[0]!;
        return {
          what: `DETACH PARTITION public.${name}`,
          apply: async (db, live) => {
            await db.query(`ALTER TABLE ${TABLE} DETACH PARTITION public.${name}`);
            // No delete events exist for a detach: the rows stay in the sink as they were.
            const { rows } = await db.query<Row>(`SELECT * FROM public.${name} ORDER BY id`);
            run.keptRows.push(...rows);
            const gone = new Set(rows.map((r) => Number(r.id)));
            live.splice(0, live.length, ...live.filter((id) => !gone.has(id)));
            detached.push(`${name} (${rows.length} rows)`);
            return undefined;
          },
        };
      };
      const { server: last } = await runSteps(ctx, run, server, kinds.length, (i) => step(kinds[i]!));
      ctx.log(`detached ${detached.join(', ')}; their rows must stay in the sink as they were`);
      return last;
    });
  },
};

// ---------------------------------------------------------------------------------------
// ddl-while-streaming

type DdlKind = 'add' | 'drop' | 'retype' | 'rename' | 'truncate';

/** What the table looks like after each DDL, per event: columns present, absent, and the JSON type of `v`. */
export const SHAPE: Record<
  Exclude<DdlKind, 'truncate'>,
  { log: RegExp; holds: (row: Row, after: boolean) => boolean }
> = {
  // The log's text format escapes the quotes of a field value (change="column \"added\" added (text)").
  add: { log: /schema change .*column \\?"added\\?" added/, holds: (row, after) => 'added' in row === after },
  drop: { log: /schema change .*column \\?"spare\\?" dropped/, holds: (row, after) => 'spare' in row !== after },
  rename: {
    log: /schema change .*column \\?"note\\?" renamed to \\?"memo\\?"/,
    holds: (row, after) => 'memo' in row === after && 'note' in row !== after,
  },
  // Decoded from any format, an int64 is its canonical decimal string, an int32 a number.
  retype: {
    log: /schema change .*column \\?"v\\?" type /,
    holds: (row, after) => (after ? typeof row.v === 'string' : typeof row.v === 'number'),
  },
};

/**
 * The value of `v` the runner reads back once `v` is a bigint: the canonical int64, a
 * decimal string, whatever the message format (an Avro long too: the sink's decoders give
 * canonical values, never a BigInt).
 */
export function retypedV(v: number): Value {
  return String(v);
}

const ddlWhileStreaming: Scenario = {
  name: 'ddl-while-streaming',
  fault:
    'ADD / DROP / ALTER TYPE / RENAME COLUMN and TRUNCATE while the writer runs, SIGKILL around one (Kafka json, a quarter of the seeds Avro)',
  run: (ctx) => {
    const messageFormat = ctx.rng.chance(0.25) ? ('avro' as const) : ('json' as const);
    const kinds = shuffled(ctx, ['add', 'drop', 'retype', 'rename', 'truncate'] as const).slice(0, ctx.rng.int(3, 5));
    const addedDefault = ctx.rng.pick([null, 'dflt']);
    const done = new Set<DdlKind>();
    const marks = new Map<DdlKind, ActionLsns>();
    const createTable = async (db: ChaosRun['db'], rows: number) => {
      await db.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, v int NOT NULL, note text, spare text)`);
      await db.query(`INSERT INTO ${TABLE} SELECT g, 0, 'seed', 'spare' FROM generate_series(1, $1::int) g`, [rows]);
    };
    /**
     * Rows a consumer holds keep the shape of their last event: a row not changed since a
     * DDL still has a dropped column, the old name of a renamed one, `v` as an int32, and
     * no added column (PostgreSQL writes no event for the rows an ADD COLUMN fills). So the
     * comparison with the table leaves out what only the DDL changed.
     */
    const normalize = (row: Row): Row => {
      const out = { ...row };
      if (done.has('rename') && 'note' in out) {
        if (!('memo' in out)) out.memo = out.note;
        delete out.note;
      }
      if (done.has('drop')) delete out.spare;
      if (done.has('add') && (out.added === null || out.added === undefined || out.added === addedDefault))
        delete out.added;
      if (done.has('retype') && out.v !== null && out.v !== undefined) out.v = String(out.v);
      return out;
    };
    /** Every insert and update after a DDL has the new shape, every one before it the old. */
    const shapes = (records: readonly OracleRecord[]): string[] => {
      const problems: string[] = [];
      for (const [kind, lsns] of marks) {
        if (kind === 'truncate') {
          const found = records.some((r) => {
            if (r.op !== 'truncate' || r.position === undefined) return false;
            const at = positionLsn(r.position);
            return at >= lsns.before && at <= lsns.after;
          });
          if (!found) problems.push(`no truncate event at the TRUNCATE's place in the WAL`);
          continue;
        }
        const shape = SHAPE[kind];
        let wrong = 0;
        for (const r of records) {
          if ((r.op !== 'insert' && r.op !== 'update') || !r.after || r.position === undefined) continue;
          const at = positionLsn(r.position);
          const after = at > lsns.after;
          if (!after && at >= lsns.before) continue;
          if (!shape.holds(r.after, after) && wrong++ < 3)
            problems.push(
              `${r.op} key ${String(r.key.id)} at ${r.position}, ${after ? 'after' : 'before'} the ${kind} DDL, has the wrong shape: ${JSON.stringify(r.after)}`,
            );
        }
        if (wrong > 3) problems.push(`… ${wrong - 3} more events of the wrong shape around the ${kind} DDL`);
      }
      return problems;
    };
    return frame(
      ctx,
      {
        // A truncate record has no key and lands on one partition of the topic; the oracle's
        // history check reads the topic partition after partition, so a run that truncates
        // uses one partition (a consumer of several must order by position, as the Kafka
        // sink's README says).
        prepare: async () => ({ createTable, messageFormat, ...(kinds.includes('truncate') ? { partitions: 1 } : {}) }),
        after: (run) =>
          kinds
            .filter((k) => k !== 'truncate')
            .map((k) => SHAPE[k as Exclude<DdlKind, 'truncate'>].log)
            .filter((pattern) => !pattern.test(run.output))
            .map((pattern) => `no server logged the schema change (${pattern.source})`),
      },
      async (run, server) => {
        ctx.log(`Kafka ${messageFormat}; DDL in this order: ${kinds.join(', ')}`);
        run.normalize = normalize;
        run.recordChecks.push(shapes);
        const writer = run.writer!;
        const statements: Record<DdlKind, string> = {
          add: `ALTER TABLE ${TABLE} ADD COLUMN added text${addedDefault === null ? '' : ` DEFAULT '${addedDefault}'`}`,
          drop: `ALTER TABLE ${TABLE} DROP COLUMN spare`,
          retype: `ALTER TABLE ${TABLE} ALTER COLUMN v TYPE bigint`,
          rename: `ALTER TABLE ${TABLE} RENAME COLUMN note TO memo`,
          truncate: `TRUNCATE ${TABLE}`,
        };
        const { server: last, marks: steps } = await runSteps(ctx, run, server, kinds.length, (i) => {
          const kind = kinds[i]!;
          return {
            what: statements[kind],
            apply: async (db, live) => {
              await db.query(statements[kind]);
              done.add(kind);
              if (kind === 'rename') writer.noteColumn = 'memo';
              if (kind === 'retype') writer.vValue = retypedV;
              if (kind === 'truncate') {
                live.length = 0;
                return [{ table: TABLE, op: 'truncate', key: {} }];
              }
              return undefined;
            },
          };
        });
        for (const [i, step] of steps.entries()) marks.set(kinds[i]!, step.lsns);
        return last;
      },
    );
  },
};

// ---------------------------------------------------------------------------------------
// frozen-server

/** A connection to the PostgreSQL state store, closed with the scenario. */
class StoreDb extends AdminDb implements AsyncDisposable {
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

const LOST_LEASE = /lost the pipeline lease|a write of this server was refused|lease expired and was taken again/;

/** The stored checkpoint, sampled every 100 ms through the run, never goes backwards. */
function checkpointNeverBack(run: ChaosRun): string[] {
  const problems: string[] = [];
  let highest: string | undefined;
  for (const { checkpoint } of run.flushSamples) {
    if (highest !== undefined && checkpoint < highest)
      problems.push(`the stored checkpoint went back from ${highest} to ${checkpoint}`);
    if (highest === undefined || checkpoint > highest) highest = checkpoint;
  }
  if (run.flushSamples.length < 10) problems.push(`only ${run.flushSamples.length} checkpoint samples were taken`);
  return problems.slice(0, 10);
}

const frozenServer: Scenario = {
  name: 'frozen-server',
  fault:
    'a server frozen past its lease (SIGSTOP), then resumed (SIGCONT): its writes are refused, the new holder’s checkpoint is never overwritten',
  run: async (ctx) => {
    const stateUrl = await ctx.services.postgres.createDatabase();
    await using store = new StoreDb(stateUrl);
    const ttl = ctx.rng.pick([2, 3, 5]);
    let second: NanosyncServer | undefined;
    return await frame(
      ctx,
      {
        prepare: async () => ({ state: `${stateUrl}?schema=chaos` }),
        start: async (run) => {
          const a = await run.startServe(['--lease-ttl', String(ttl)]);
          const applied = await runNanosync(
            ['apply', '--file', run.configFile, '--server', a.url, '--state', run.options.state],
            { env: { ...run.env, NANOSYNC_TOKEN: a.token } },
          );
          if (applied.code !== 0) throw new Error(`apply failed: ${applied.stderr}`);
          second = await run.startServe(['--lease-ttl', String(ttl)]);
          return a;
        },
        after: (run) => checkpointNeverBack(run),
      },
      async (run, a) => {
        const b = second!;
        await eventually(
          async () => ((await b.pipeline<{ heldBy?: unknown }>(run.pipeline)).heldBy ? true : undefined),
          'the second server to see the pipeline held by the first',
          60_000,
        );
        if (ctx.rng.chance(0.3)) await snapshotPoint(run, ctx.rng.int(10, 80) / 100);
        else await streamPoint(run, ctx.rng.int(3, 40));
        const lease = async () =>
          (
            await store.query<{ holder: string; epoch: string }>(
              'SELECT holder, epoch::text AS epoch FROM chaos.leases WHERE pipeline = $1',
              [run.pipeline],
            )
          ).rows[0];
        const frozenLease = await lease();
        a.process.child.kill('SIGSTOP');
        ctx.log(`SIGSTOPped the lease holder pid ${a.process.pid} (lease TTL ${ttl} s, epoch ${frozenLease?.epoch})`);
        // Taken over: the store's lease names the other server, and its own runner streams
        // (a status read from the store alone would still say LIVE_CDC from the frozen one).
        const holder = `/pid-${b.process.pid}`;
        await run.until(
          async () => {
            if (!(await lease())?.holder.endsWith(holder)) return undefined;
            const status = await b.pipeline<{ state: string; heldBy?: string }>(run.pipeline);
            return status.state === 'LIVE_CDC' && !status.heldBy ? true : undefined;
          },
          'the other server to take the frozen one’s pipeline over',
          120_000,
        );
        const takeover = Number((await lease())?.epoch ?? 0);
        ctx.log(`the other server holds the lease at epoch ${takeover}`);
        const ahead = ctx.rng.int(3, 30);
        await run.writerProgress(ahead);
        ctx.log(`the other server took over and streamed ${ahead} more writer transactions; SIGCONT`);
        a.process.child.kill('SIGCONT');
        const said = await run.until(
          async () => LOST_LEASE.exec(a.process.output)?.[0],
          'the resumed server to say it lost the lease',
          60_000,
        );
        const refused = a.process.output.split('\n').filter((l) => l.includes('a write of this server was refused'));
        ctx.log(`the resumed server said "${said}"; ${refused.length} of its writes were refused`);
        // Either the resumed server names the new holder, or it took the lease back at a newer
        // epoch because the other server's lease ran out unrenewed (its start-up, waiting for the
        // slot the frozen server's walsender still held, can outlast the TTL on a loaded machine):
        // a legitimate take-over, after which the other server must say it lost the lease.
        const outcome = await run.until(
          async () => {
            const status = await a.pipeline<{ heldBy?: string }>(run.pipeline);
            if (status.heldBy?.endsWith(holder)) return 'named';
            const now = await lease();
            if (
              now?.holder.endsWith(`/pid-${a.process.pid}`) &&
              Number(now.epoch) > takeover &&
              LOST_LEASE.test(b.process.output)
            )
              return 'taken back';
            return undefined;
          },
          'the resumed server to name the new holder (or to take an expired lease back, the other server saying so)',
          60_000,
        );
        const current = outcome === 'named' ? b : a;
        if (outcome === 'taken back')
          ctx.log(
            `the other server's lease ran out; the resumed server took it back at epoch ${(await lease())?.epoch}`,
          );
        await run.writerProgress(ctx.rng.int(3, 20));
        // One server streams: the store's lease names it and its own runner is LIVE_CDC. Not
        // always `current` at this instant: on a loaded machine the holder's own lease can run
        // out between two renewals; it then takes the lease again (or the other server does)
        // and restarts from the checkpoint, a moment not LIVE_CDC (seed 9: CREATED).
        const last = await run.until(
          async () => {
            const holder = (await lease())?.holder;
            for (const server of [current, current === a ? b : a]) {
              if (!holder?.endsWith(`/pid-${server.process.pid}`)) continue;
              const status = await server.pipeline<{ state: string; heldBy?: unknown }>(run.pipeline);
              if (status.state === 'LIVE_CDC' && !status.heldBy) return server;
            }
            return undefined;
          },
          'after the frozen server resumed, the lease holder to stream',
          60_000,
        );
        if (last !== current) ctx.log(`the lease moved again; pid ${last.process.pid} streams`);
        return last;
      },
    );
  },
};

export const CHAOS_DDL_SCENARIOS: Scenario[] = [
  partitionAttachDetach,
  ddlWhileStreaming,
  sqlServerCleanupScenario,
  frozenServer,
];
