import { basename } from 'node:path';
import { redact } from '@nanosync/core';
import type { StoredDefinitionInfo, StoredPipelineDefinition } from '@nanosync/core/host';
import { applyEffects, decryptTree, redactConfig, secretNamesOfDefinition, stableStringify } from '@nanosync/core/host';
import { parseCommandArgs } from '../args.js';
import { CLIENT_OPTIONS_HELP, clientOptions, connectClient } from '../client.js';
import { checkConfigOrExit } from '../config-check.js';
import { connectorResolver } from '../connectors.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import { clientSecretKey } from '../secret-key.js';
import type { ApplyEntry } from '../server/admin-engine.js';
import { statePaths } from '../state-paths.js';
import { storedEntries } from './apply.js';
import type { Command } from './command.js';

type Node = Record<string, unknown>;

function isNode(value: unknown): value is Node {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One field that differs between the stored definition and the file, as shown (secrets masked). */
export interface FieldChange {
  /** `replication_type`, `source.tables`, `connections.pg.dsn`, `sinks[0].properties.path`. */
  path: string;
  before: string;
  after: string;
}

export type PlanAction = 'create' | 'update' | 'unchanged' | 'keep';

export interface PlanItem {
  name: string;
  action: PlanAction;
  replicationType?: string;
  /** Only for `update`. */
  changes: FieldChange[];
  /** What applying it means for the source and the sinks, one sentence each. */
  implies: string[];
}

/** A definition with its secrets readable, and the same definition as it may be shown. */
interface Readable {
  plain: Node;
  shown: Node;
}

async function readable(definition: StoredPipelineDefinition, key: Buffer, name: string): Promise<Readable> {
  const names = await secretNamesOfDefinition(definition, connectorResolver());
  // The fields a plan compares: the pipeline node at the top, its connections under `connections`.
  const pipeline = isNode(definition.pipeline) ? definition.pipeline : {};
  const { name: _name, ...rest } = pipeline;
  const whole = { ...rest, connections: definition.connections, config_folder: definition.configDir };
  // Encrypted values are masked whatever their key is called (a DSN with a password is encrypted whole).
  const shown = redactConfig(whole, names) as Node;
  const plain = decryptTree(whole, key, `the stored definition of pipeline "${name}"`) as Node;
  return { plain, shown: maskDecryptedDsns(shown, plain) };
}

/** An encrypted DSN shows as `***`; show it decrypted with its password masked instead. */
function maskDecryptedDsns(shown: unknown, plain: unknown): Node {
  const walk = (s: unknown, p: unknown): unknown => {
    if (s === '***' && typeof p === 'string' && /^[a-z][a-z0-9+.-]*:\/\//i.test(p)) return redact(p);
    if (Array.isArray(s) && Array.isArray(p)) return s.map((item, i) => walk(item, p[i]));
    if (isNode(s) && isNode(p)) return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, walk(v, p[k])]));
    return s;
  };
  return walk(shown, plain) as Node;
}

/** Leaves by path; arrays of plain values (table lists, columns) are one leaf. */
function flatten(value: unknown, path: string, out: Map<string, unknown>): Map<string, unknown> {
  if (isNode(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, path === '' ? k : `${path}.${k}`, out);
  } else if (Array.isArray(value) && value.some((item) => isNode(item) || Array.isArray(item))) {
    value.forEach((item, i) => {
      flatten(item, `${path}[${i}]`, out);
    });
  } else if (value !== undefined) {
    out.set(path, value);
  }
  return out;
}

function display(value: unknown): string {
  if (value === undefined) return '(not set)';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/** Field-by-field differences, in a stable order, secrets masked (a changed secret says so). */
export function diffDefinitions(before: Readable, after: Readable): FieldChange[] {
  const plainBefore = flatten(before.plain, '', new Map());
  const plainAfter = flatten(after.plain, '', new Map());
  const shownBefore = flatten(before.shown, '', new Map());
  const shownAfter = flatten(after.shown, '', new Map());
  const paths = [...new Set([...plainBefore.keys(), ...plainAfter.keys()])];
  const changes: FieldChange[] = [];
  for (const path of paths) {
    const a = plainBefore.get(path);
    const b = plainAfter.get(path);
    if (stableStringify(a) === stableStringify(b)) continue;
    const shownA = display(shownBefore.get(path));
    const shownB = display(shownAfter.get(path));
    if (
      Array.isArray(a) &&
      Array.isArray(b) &&
      a.every((x) => typeof x === 'string') &&
      b.every((x) => typeof x === 'string')
    ) {
      const added = b.filter((x) => !a.includes(x));
      const removed = a.filter((x) => !b.includes(x));
      if (added.length + removed.length > 0) {
        changes.push({
          path,
          before: shownA,
          after: [...added.map((x) => `+${x}`), ...removed.map((x) => `-${x}`)].join(' '),
        });
        continue;
      }
    }
    changes.push({ path, before: shownA, after: shownA === shownB ? `${shownB} (secret changed)` : shownB });
  }
  return changes;
}

function tablesOf(def: Node): string[] {
  const source = isNode(def.source) ? def.source : {};
  return Array.isArray(source.tables) ? source.tables.map((t) => (typeof t === 'string' ? t : stableStringify(t))) : [];
}

function sinksOf(def: Node): { connection: string; node: Node }[] {
  const list = Array.isArray(def.sinks) ? def.sinks : def.sink !== undefined ? [def.sink] : [];
  return list.filter(isNode).map((node) => ({ connection: String(node.connection), node }));
}

function sourceConnection(def: Node): { name: string; node: Node } {
  const name = String(isNode(def.source) ? def.source.connection : '');
  const connections = isNode(def.connections) ? def.connections : {};
  const node = connections[name];
  return { name, node: isNode(node) ? node : {} };
}

/** Host, port and database of a source connection, when the DSN or properties say them. */
function sourceAddress(connection: Node): string | undefined {
  const props = isNode(connection.properties) ? connection.properties : {};
  let host: unknown = props.host;
  let port: unknown = props.port;
  let database: unknown = props.database;
  if (typeof connection.dsn === 'string' && /^[a-z][a-z0-9+.-]*:\/\//i.test(connection.dsn)) {
    try {
      const url = new URL(connection.dsn);
      host ??= url.hostname;
      port ??= url.port || undefined;
      database ??= decodeURIComponent(url.pathname.replace(/^\//, '')) || undefined;
    } catch {
      return undefined;
    }
  }
  if (host === undefined) return undefined;
  return `${String(host)}${port === undefined ? '' : `:${String(port)}`}/${database === undefined ? '' : String(database)}`;
}

function list(items: string[]): string {
  return items.join(', ');
}

/** What creating a pipeline sets up. */
function createImplications(def: Node, type: string): string[] {
  const tables = tablesOf(def);
  const source = sourceConnection(def);
  const slot = source.node.type === 'postgres' ? 'a replication slot and a publication' : 'change capture';
  switch (type) {
    case 'query':
      return ['runs its query on schedule; no replication slot'];
    case 'cdc':
      return [
        `creates ${slot} on ${source.name}`,
        `streams changes of ${list(tables)} from the moment it starts; existing rows are not sent`,
      ];
    case 'snapshot':
      return [
        `creates ${slot} on ${source.name} for a consistent read, removed when the snapshot completes`,
        `snapshots ${list(tables)} once`,
      ];
    default:
      return [`creates ${slot} on ${source.name}`, `snapshots ${list(tables)}, then streams their changes`];
  }
}

/**
 * What an update of a stored pipeline means, from the changed fields and the pipeline's
 * state. What happens to the snapshot, the slot and the checkpoints is what the engine's
 * `apply` does: both take it from core's `applyEffects`.
 */
export function updateImplications(
  before: Node,
  after: Node,
  info: {
    replicationType?: string;
    state: StoredDefinitionInfo['state'];
    paused: boolean;
    snapshotDone: boolean;
    started: boolean;
  },
  newType: string,
  changes: FieldChange[],
): string[] {
  const implies: string[] = [];
  const oldType = info.replicationType ?? newType;
  const effects = applyEffects(info, newType);
  const changed = (prefix: string) =>
    changes.some((c) => c.path === prefix || c.path.startsWith(`${prefix}.`) || c.path.startsWith(`${prefix}[`));
  const allTables = tablesOf(after);

  if (effects.resnapshotAll) {
    if (newType === 'snapshot') {
      implies.push(
        `re-snapshot: every table (${list(allTables)}) is read again from the start and written to every sink again`,
      );
      if (effects.newSlot) implies.push('a new replication slot: the completed snapshot removed its own');
    } else {
      implies.push(`re-snapshot of ${list(allTables)}; the slot is kept and the stream goes on`);
    }
  } else if (oldType !== newType) {
    if (oldType === 'cdc_backfill' && newType === 'cdc') {
      implies.push(
        info.snapshotDone
          ? 'nothing is read again: the finished snapshot stays finished'
          : 'the unfinished snapshot is not continued; only changes are streamed',
      );
    } else {
      implies.push(
        `replication type ${oldType} → ${newType}: the pipeline reads its source differently from its next start`,
      );
    }
  }

  const tablesBefore = tablesOf(before);
  const added = allTables.filter((t) => !tablesBefore.includes(t));
  const removed = tablesBefore.filter((t) => !allTables.includes(t));
  if (added.length > 0 && !effects.resnapshotAll) {
    if (effects.snapshotsNewTables)
      implies.push(
        `snapshot of ${list(added)} (new tables) while the stream goes on; the other tables are not read again and the slot is kept`,
      );
    else if (newType === 'cdc')
      implies.push(`${list(added)} join the publication: their changes from now on, existing rows are not sent`);
  }
  if (removed.length > 0) implies.push(`${list(removed)} no longer captured; rows already delivered stay in the sinks`);

  const source = sourceConnection(after);
  if (changed(`connections.${source.name}`) || changed('source.connection')) {
    const was = sourceAddress(sourceConnection(before).node);
    const now = sourceAddress(source.node);
    if (info.started && (changed('source.connection') || (was !== undefined && now !== undefined && was !== now))) {
      implies.push(
        `the source moves${was && now ? ` (${was} → ${now})` : ''}: the pipeline's replication slot stays on the old database, ` +
          'so it cannot resume there; delete the pipeline and apply again for a new start',
      );
    } else {
      implies.push('the source reconnects with the new connection settings; nothing is read again');
    }
  }

  const sinksBefore = sinksOf(before);
  const sinksAfter = sinksOf(after);
  sinksAfter.forEach((sink, i) => {
    const old = sinksBefore[i];
    const label = `sink ${sink.connection}`;
    if (old === undefined || old.connection !== sink.connection) {
      implies.push(
        effects.resnapshotAll
          ? `${label} is new: it receives the rows of the re-snapshot like the other sinks`
          : `${label} is new: it starts without a checkpoint and receives the stream from the pipeline's start position; ` +
              'rows snapshotted earlier are not read again for it',
      );
      return;
    }
    const prefix = Array.isArray(after.sinks) ? `sinks[${i}]` : 'sink';
    if (changed(`connections.${sink.connection}`) || changed(`${prefix}.properties`))
      implies.push(
        effects.resnapshotAll
          ? `${label} restarts with its new settings`
          : `${label} restarts with its new settings from its checkpoint; nothing is sent again`,
      );
    if (changed(`${prefix}.target_mappings`))
      implies.push(
        effects.resnapshotAll
          ? `${label}: the new mappings apply to every row, the re-snapshot's included`
          : `${label}: the new mappings apply to changes from its checkpoint on; rows already written stay as they are`,
      );
  });
  for (const [i, old] of sinksBefore.entries()) {
    const now = sinksAfter[i];
    if (now === undefined || now.connection !== old.connection)
      implies.push(`sink ${old.connection} is no longer written`);
  }
  if (changed('snapshot')) implies.push('the snapshot settings apply to snapshots still to run');
  if (changed('config_folder')) implies.push('connectors and relative paths resolve from the new config folder');
  if (implies.length === 0) implies.push('nothing is read again and no slot is created');
  if (info.paused) implies.push('the pipeline is paused: it stays paused and runs with the change once resumed');
  else implies.unshift('the pipeline stops at a checkpoint and starts again with the new definition');
  return implies;
}

/** Compare the file's definitions with the server's: what `apply` would create, change or leave. */
export async function planChanges(
  entries: ApplyEntry[],
  stored: StoredDefinitionInfo[],
  secretKey: Buffer,
): Promise<PlanItem[]> {
  const byName = new Map(stored.map((s) => [s.name, s]));
  const items: PlanItem[] = [];
  for (const entry of entries) {
    const after = await readable(entry.definition, secretKey, entry.name);
    const info = byName.get(entry.name);
    if (info === undefined) {
      items.push({
        name: entry.name,
        action: 'create',
        replicationType: entry.replicationType,
        changes: [],
        implies: createImplications(after.plain, entry.replicationType),
      });
      continue;
    }
    if (info.hash === entry.hash && (info.replicationType ?? entry.replicationType) === entry.replicationType) {
      items.push({
        name: entry.name,
        action: 'unchanged',
        replicationType: entry.replicationType,
        changes: [],
        implies: [],
      });
      continue;
    }
    const before = await readable(info.definition, secretKey, entry.name);
    const changes = diffDefinitions(before, after);
    items.push({
      name: entry.name,
      action: 'update',
      replicationType: entry.replicationType,
      changes,
      implies: updateImplications(before.plain, after.plain, info, entry.replicationType, changes),
    });
  }
  const inFile = new Set(entries.map((e) => e.name));
  for (const info of stored) {
    if (inFile.has(info.name)) continue;
    items.push({
      name: info.name,
      action: 'keep',
      ...(info.replicationType !== undefined ? { replicationType: info.replicationType } : {}),
      changes: [],
      implies: [],
    });
  }
  return items;
}

const SIGN: Record<PlanAction, string> = { create: '+', update: '~', unchanged: '=', keep: ' ' };

export function renderPlan(items: PlanItem[], file: string): string {
  const lines: string[] = [];
  for (const item of items) {
    const type = item.replicationType ? ` (${item.replicationType})` : '';
    if (item.action === 'keep') {
      lines.push(
        `  keep ${item.name}${type}: on the server, not in the file; apply leaves it (delete: nanosync pipeline delete ${item.name})`,
      );
      continue;
    }
    lines.push(`${SIGN[item.action]} ${item.action} ${item.name}${type}`);
    for (const change of item.changes) lines.push(`    ${change.path}: ${change.before} → ${change.after}`);
    for (const implication of item.implies) lines.push(`    implies: ${implication}`);
  }
  const count = (action: PlanAction) => items.filter((i) => i.action === action).length;
  lines.push('');
  lines.push(
    `${count('create')} to create, ${count('update')} to update, ${count('unchanged')} unchanged` +
      `${count('keep') > 0 ? `, ${count('keep')} on the server only (kept)` : ''}. Nothing was applied.`,
  );
  if (count('create') + count('update') > 0) lines.push(`To apply: nanosync apply --file ${file}`);
  return lines.join('\n');
}

export const planCommand: Command = {
  name: 'plan',
  summary: 'show what apply would create, change or leave on the server, without applying',
  help: `Usage: nanosync plan --file FILE [--server HOST:PORT] [--state PATH]

Validates FILE offline (like 'nanosync validate'), reads the definitions stored
on the server and prints, per pipeline of the file, what 'nanosync apply'
would do — without doing it:

  + create     a new pipeline, and what it sets up (slot, publication, snapshot)
  ~ update     each changed field, before → after (secrets shown as ***), and
               what the change implies (a re-snapshot of a table, a new slot,
               a restart from the checkpoint, nothing)
  = unchanged  applying changes nothing
    keep       on the server but not in the file: apply leaves it

Options:
  -f, --file FILE     config file
${CLIENT_OPTIONS_HELP.join('\n')}
  -h, --help          show this help

Exit codes: 0 plan printed, 1 the server failed or is unreachable, 2 invalid
config, wrong token or wrong arguments.`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('plan', argv, { file: { type: 'string', short: 'f' }, ...clientOptions });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    if (!args.values.file) throw new UsageError('--file is required', 'plan');
    const checked = await checkConfigOrExit(args.values.file, io, { deferEnv: true });
    if (typeof checked === 'number') return checked;
    const client = await connectClient(args.values, io);
    const secretKey = await clientSecretKey(statePaths(args.values.state, io), io.env);
    const entries = await storedEntries(checked, secretKey);
    const { definitions } = await client.request<{ definitions: StoredDefinitionInfo[] }>('GET', '/v1/definitions');
    const items = await planChanges(entries, definitions, secretKey);
    io.out(`plan for ${basename(checked.file)} against ${client.baseUrl}`);
    io.out('');
    io.out(renderPlan(items, args.values.file));
    return ExitCode.Ok;
  },
};
