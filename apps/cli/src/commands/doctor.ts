import { randomBytes } from 'node:crypto';
import { type CheckResult, ErrorCode, type Sink, type Source } from '@nanosync/core';
import {
  createLogger,
  describeError,
  materializePipeline,
  PreflightError,
  type PreflightFailure,
} from '@nanosync/core/host';
import { parseCommandArgs } from '../args.js';
import { type CheckedConfig, checkConfigOrExit } from '../config-check.js';
import { connectorResolver } from '../connectors.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import { storedEntries } from './apply.js';
import type { Command } from './command.js';

/** One connector's results, as `doctor` prints them. */
export interface DoctorSection {
  pipeline: string;
  /** `source shop (postgres)`, `sink events (kafka)`. */
  title: string;
  results: CheckResult[];
}

const MARK = { ok: '✓', error: '✗', warning: '!' } as const;

function markOf(result: CheckResult): string {
  if (result.ok) return MARK.ok;
  return result.severity === 'warning' ? MARK.warning : MARK.error;
}

/** A failed check's fix under its line: `fix: ` before the first line, the others aligned with it. */
function fixLines(fix: string | undefined): string[] {
  if (!fix) return [];
  return fix.split('\n').map((line, i) => `      ${i === 0 ? 'fix: ' : '     '}${line}`);
}

/** The report: one block per pipeline, one line per check, the fix indented below a failure. */
export function renderDoctor(sections: DoctorSection[]): string {
  const lines: string[] = [];
  let pipeline: string | undefined;
  for (const section of sections) {
    if (section.pipeline !== pipeline) {
      if (pipeline !== undefined) lines.push('');
      pipeline = section.pipeline;
      lines.push(`pipeline ${pipeline}`);
    }
    lines.push(`  ${section.title}`);
    for (const result of section.results) {
      lines.push(`    ${markOf(result)} ${result.name}: ${result.message}`);
      if (!result.ok) lines.push(...fixLines(result.fix));
    }
  }
  const errors = sections.flatMap((s) => s.results).filter((r) => !r.ok && r.severity !== 'warning').length;
  const warnings = sections.flatMap((s) => s.results).filter((r) => !r.ok && r.severity === 'warning').length;
  lines.push('');
  lines.push(
    errors === 0
      ? `no problems found${warnings > 0 ? ` (${warnings} warning${warnings === 1 ? '' : 's'})` : ''}`
      : `${errors} problem${errors === 1 ? '' : 's'} to fix${warnings > 0 ? `, ${warnings} warning${warnings === 1 ? '' : 's'}` : ''}`,
  );
  return lines.join('\n');
}

/**
 * The failed checks of a refused `apply`/`run` (a preflight): from core's PreflightError
 * (`run`, in this process) or from the admin API's answer (`apply`: a 422 whose error
 * carries the failures).
 */
export function preflightFailures(err: unknown): { pipeline: string; failures: PreflightFailure[] } | undefined {
  if (err instanceof PreflightError) return { pipeline: err.pipeline, failures: err.failures };
  const remote = (err as { response?: { error?: { pipeline?: unknown; failures?: unknown } } }).response?.error;
  if (remote === undefined || !Array.isArray(remote.failures)) return undefined;
  return { pipeline: String(remote.pipeline ?? '?'), failures: remote.failures as PreflightFailure[] };
}

/** A refused preflight the way `doctor` prints failures: one ✗ line per check, its fix below. */
export function renderPreflightFailures(
  refused: NonNullable<ReturnType<typeof preflightFailures>>,
  command: string,
): string[] {
  const lines = [
    `nanosync ${command}: [${ErrorCode.PreflightFailed}] pipeline ${refused.pipeline} cannot start; nothing was created:`,
  ];
  let who: string | undefined;
  for (const failure of refused.failures) {
    if (failure.who !== who) {
      who = failure.who;
      lines.push(`  ${who}`);
    }
    lines.push(`    ${MARK.error} ${failure.check}: ${failure.message}`);
    lines.push(...fixLines(failure.fix));
  }
  lines.push(`Fix these and run 'nanosync ${command}' again ('nanosync doctor --file FILE' shows every check).`);
  return lines;
}

/** A check that threw instead of answering is a failed check, not a crash of `doctor`. */
function thrown(name: string, err: unknown): CheckResult {
  return { name, ok: false, severity: 'error', message: describeError(err) };
}

/**
 * Build each pipeline's source and sinks exactly as the server would (same config path,
 * same connectors), ask every one for its `check()`, and close them again. Nothing is
 * created: checks only read.
 */
export async function runDoctor(checked: CheckedConfig, io: CliIo, only?: string): Promise<DoctorSection[]> {
  const pipelines = checked.config.pipelines.filter((p) => only === undefined || p.name === only);
  if (only !== undefined && pipelines.length === 0) {
    const known = checked.config.pipelines.map((p) => p.name).join(', ');
    throw new UsageError(`no pipeline '${only}' in ${checked.file} (it has: ${known || 'none'})`, 'doctor');
  }
  // Secrets are encrypted and decrypted again in this process only: a throw-away key will do.
  const secretKey = randomBytes(32);
  const entries = new Map((await storedEntries(checked, secretKey)).map((e) => [e.name, e]));
  const logger = createLogger({ level: 'error', write: (line) => io.err(line) });
  const sections: DoctorSection[] = [];
  for (const pipeline of pipelines) {
    const entry = entries.get(pipeline.name);
    if (entry === undefined) continue;
    const materialized = await materializePipeline(entry.definition, {
      env: io.env,
      secretKey,
      resolve: connectorResolver(),
    });
    const signal = AbortSignal.timeout(60_000);
    const context = (role: string) => ({ pipeline: pipeline.name, logger: logger.child({ connector: role }), signal });
    const sourceConnection = connectionOf(checked, pipeline.source.connection);
    const sourceTitle = `source ${pipeline.source.connection} (${sourceConnection?.type ?? materialized.source.definition.type})`;
    if (pipeline.replication_type === 'query') {
      sections.push({
        pipeline: pipeline.name,
        title: sourceTitle,
        results: [{ name: 'replication', ok: true, message: 'a query pipeline needs no replication set-up' }],
      });
    } else {
      sections.push({
        pipeline: pipeline.name,
        title: sourceTitle,
        results: await withConnector(
          () => materialized.source.definition.create(materialized.source.config, context('source')),
          (source: Source) => source.check(pipeline.source.tableRefs),
        ),
      });
    }
    for (const [index, sink] of materialized.sinks.entries()) {
      const connectionName = pipeline.sinks[index]?.connection ?? sink.name;
      const title = `sink ${connectionName} (${connectionOf(checked, connectionName)?.type ?? sink.definition.type})`;
      sections.push({
        pipeline: pipeline.name,
        title,
        results: await withConnector(
          () => sink.definition.create(sink.config, context(`sink ${sink.name}`)),
          async (created: Sink) =>
            created.check
              ? created.check(pipeline.source.tableRefs)
              : [{ name: 'checks', ok: true, severity: 'warning', message: 'this sink has no checks' }],
        ),
      });
    }
  }
  return sections;
}

async function withConnector<T extends { close(): Promise<void> }>(
  create: () => T | Promise<T>,
  check: (connector: T) => Promise<CheckResult[]>,
): Promise<CheckResult[]> {
  let connector: T;
  try {
    connector = await create();
  } catch (err) {
    return [thrown('create', err)];
  }
  try {
    const results = await check(connector);
    return results.length > 0 ? results : [{ name: 'checks', ok: true, message: 'nothing to check' }];
  } catch (err) {
    return [thrown('check', err)];
  } finally {
    await connector.close().catch(() => undefined);
  }
}

function connectionOf(checked: CheckedConfig, name: string): { type: string } | undefined {
  return checked.config.connections.find((c) => c.name === name);
}

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'connect to every source and sink of a config file and check they are ready',
  help: `Usage: nanosync doctor --file FILE [--pipeline NAME]

Checks the file offline first (like 'nanosync validate'), then connects to the
source and each sink of every pipeline (or only of NAME) and runs the
connector's own checks, without creating anything. Each check is one line:

  ✓  ready
  ✗  a problem that stops the pipeline, with its cause and the fix (SQL or command)
  !  a warning: the pipeline runs, but should be looked at

PostgreSQL sources check wal_level, the REPLICATION and SELECT privileges,
replica identity, row-level security, free replication slots,
max_slot_wal_keep_size and publication ownership. Kafka sinks check that the
brokers answer and accept the credentials, that each topic the pipeline writes
to exists and is visible (or, when missing, may be created: a dry run), and that
its max.message.bytes takes the sink's batches (max_bytes_in_flight).

Options:
  -f, --file FILE       config file
      --pipeline NAME   check only this pipeline
  -h, --help            show this help

Exit codes: 0 no problems (warnings allowed), 1 at least one ✗, 2 invalid
config or wrong arguments.`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('doctor', argv, {
      file: { type: 'string', short: 'f' },
      pipeline: { type: 'string' },
    });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    if (!args.values.file) throw new UsageError('--file is required', 'doctor');
    const checked = await checkConfigOrExit(args.values.file, io);
    if (typeof checked === 'number') return checked;
    const sections = await runDoctor(checked, io, args.values.pipeline);
    io.out(renderDoctor(sections));
    const failed = sections.some((s) => s.results.some((r) => !r.ok && r.severity !== 'warning'));
    return failed ? ExitCode.Failure : ExitCode.Ok;
  },
};
