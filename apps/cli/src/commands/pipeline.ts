import { parseCommandArgs } from '../args.js';
import { CLIENT_OPTIONS_HELP, clientOptions, connectClient } from '../client.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import type { Command } from './command.js';

const ACTIONS = {
  pause: { method: 'POST', path: (name: string) => `/v1/pipelines/${encodeURIComponent(name)}/pause`, done: 'paused' },
  resume: {
    method: 'POST',
    path: (name: string) => `/v1/pipelines/${encodeURIComponent(name)}/resume`,
    done: 'resumed',
  },
  delete: { method: 'DELETE', path: (name: string) => `/v1/pipelines/${encodeURIComponent(name)}`, done: 'deleted' },
  resnapshot: {
    method: 'POST',
    path: (name: string) => `/v1/pipelines/${encodeURIComponent(name)}/resnapshot`,
    done: 're-snapshotting',
  },
} as const;

interface DeleteResponse {
  leftBehind?: { error: string; steps: string[] };
}

/** What `delete --force` prints when the source could not be cleaned up. */
export function renderLeftBehind(name: string, left: NonNullable<DeleteResponse['leftBehind']>): string[] {
  return [
    `${name} deleted: its state is removed, but the source could not be cleaned up (${left.error}).`,
    ...(left.steps.length > 0
      ? ['Remove what the pipeline left on the source by hand:', ...left.steps.map((step) => `  ${step}`)]
      : ['The source connector did not say what to remove; look for what the pipeline created there.']),
  ];
}

export const pipelineCommand: Command = {
  name: 'pipeline',
  summary: 'pause, resume, re-snapshot or delete one pipeline',
  help: `Usage: nanosync pipeline pause|resume|resnapshot|delete NAME [--table schema.table …] [--force] [--server HOST:PORT] [--state PATH]

  pause NAME    checkpoint, then stop the pipeline; it stays stopped across restarts
  resume NAME   continue from the last checkpoint
  resnapshot NAME
                read the pipeline's tables again (or only those given with --table),
                while it keeps streaming (snapshot.mode: concurrent) or before it
                streams on (blocking); the stream is not interrupted for long and
                nothing is lost. Progress shows in monitor and metrics like the first
                snapshot
      --table   with resnapshot: one table of the pipeline (schema.table); repeat for more
  delete NAME   stop the pipeline and remove everything it owns: its state and, on the
                source, its replication slot and publication. When the source cannot
                be reached the pipeline is kept (paused) and the command fails;
      --force   with delete: remove the pipeline's state even when the source cannot be
                cleaned up, and print what was left there with the SQL to remove it

Options:
${CLIENT_OPTIONS_HELP.join('\n')}
  -h, --help          show this help`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs(
      'pipeline',
      argv,
      { force: { type: 'boolean' }, table: { type: 'string', multiple: true }, ...clientOptions },
      { maxPositionals: 2 },
    );
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    const [action, name] = args.positionals;
    if (action === undefined || !(action in ACTIONS)) {
      throw new UsageError(
        action === undefined
          ? 'missing action: pause, resume, resnapshot or delete'
          : `unknown action '${action}' (pause, resume, resnapshot or delete)`,
        'pipeline',
      );
    }
    if (name === undefined) throw new UsageError(`missing pipeline name: nanosync pipeline ${action} NAME`, 'pipeline');
    if (args.values.force && action !== 'delete') throw new UsageError('--force goes with delete only', 'pipeline');
    const tables = args.values.table ?? [];
    if (tables.length > 0 && action !== 'resnapshot')
      throw new UsageError('--table goes with resnapshot only', 'pipeline');
    const spec = ACTIONS[action as keyof typeof ACTIONS];
    const client = await connectClient(args.values, io);
    const path = args.values.force ? `${spec.path(name)}?force=true` : spec.path(name);
    const response = await client.request<(DeleteResponse & { tables?: string[] }) | undefined>(
      spec.method,
      path,
      action === 'resnapshot' ? { tables } : undefined,
    );
    if (action === 'resnapshot' && response?.tables) {
      io.out(`${name} re-snapshotting ${response.tables.join(', ')}`);
      return ExitCode.Ok;
    }
    if (response?.leftBehind) {
      for (const line of renderLeftBehind(name, response.leftBehind)) io.out(line);
      return ExitCode.Ok;
    }
    io.out(`${name} ${spec.done}`);
    return ExitCode.Ok;
  },
};
