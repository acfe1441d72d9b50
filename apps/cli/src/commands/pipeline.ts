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
} as const;

export const pipelineCommand: Command = {
  name: 'pipeline',
  summary: 'pause, resume or delete one pipeline',
  help: `Usage: nanosync pipeline pause|resume|delete NAME [--server HOST:PORT] [--state PATH]

  pause NAME    checkpoint, then stop the pipeline; it stays stopped across restarts
  resume NAME   continue from the last checkpoint
  delete NAME   stop the pipeline and remove everything it owns: its state and, on the
                source, its replication slot and publication

Options:
${CLIENT_OPTIONS_HELP.join('\n')}
  -h, --help          show this help`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('pipeline', argv, clientOptions, { maxPositionals: 2 });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    const [action, name] = args.positionals;
    if (action === undefined || !(action in ACTIONS)) {
      throw new UsageError(
        action === undefined
          ? 'missing action: pause, resume or delete'
          : `unknown action '${action}' (pause, resume or delete)`,
        'pipeline',
      );
    }
    if (name === undefined) throw new UsageError(`missing pipeline name: nanosync pipeline ${action} NAME`, 'pipeline');
    const spec = ACTIONS[action as keyof typeof ACTIONS];
    const client = await connectClient(args.values, io);
    await client.request(spec.method, spec.path(name));
    io.out(`${name} ${spec.done}`);
    return ExitCode.Ok;
  },
};
