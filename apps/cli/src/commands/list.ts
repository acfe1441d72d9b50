import type { PipelineStatus } from '@nanosync/core/host';
import { parseCommandArgs } from '../args.js';
import { CLIENT_OPTIONS_HELP, clientOptions, connectClient } from '../client.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import { formatLag, formatRate, formatTable, retryText } from '../format.js';
import type { CliIo } from '../io.js';
import type { Command } from './command.js';

/**
 * The rows of `list pipelines`, plus one note per pipeline that is errored, retrying or
 * waiting (for what, and who holds it). A
 * pipeline run by another server needs no note: its SERVER cell names that server.
 */
export function renderPipelineList(pipelines: PipelineStatus[]): string {
  if (pipelines.length === 0) return 'no pipelines (create some with: nanosync apply --file FILE)';
  const sorted = [...pipelines].sort((a, b) => a.name.localeCompare(b.name));
  const table = formatTable(
    ['NAME', 'STATE', 'TYPE', 'LAG', 'EVENTS/S', 'SERVER'],
    sorted.map((p) => [
      p.name,
      p.state,
      p.replicationType,
      formatLag(p.lagSeconds),
      formatRate(p.eventsPerSecond),
      p.server ?? '-',
    ]),
  );
  const notes: string[] = [];
  for (const p of sorted) {
    if (p.retry) notes.push(`${p.name}: retrying, ${retryText(p.retry)}: ${p.retry.lastError}`);
    else if (p.error) notes.push(`${p.name}: ${p.error}`);
    if (p.waitingFor) notes.push(`${p.name}: waiting for ${p.waitingFor}`);
  }
  return notes.length === 0 ? table : `${table}\n\n${notes.join('\n')}`;
}

export const listCommand: Command = {
  name: 'list',
  summary: 'list pipelines with state, type, lag and events/s',
  help: `Usage: nanosync list pipelines [--json] [--server HOST:PORT] [--state PATH]

Shows every pipeline the server knows: NAME, STATE, TYPE (replication type),
LAG (how far behind the source), EVENTS/S and SERVER (the server running it,
'-' when none does; with a shared PostgreSQL state every server of the fleet
lists every pipeline). Errored and retrying pipelines (with the attempt, the
next retry and the last error) and waiting ones (WAITING: what for, e.g. a
replication slot another process holds, with its pid, application and
address) are explained below the table.

Options:
      --json          print the server's status objects as JSON
${CLIENT_OPTIONS_HELP.join('\n')}
  -h, --help          show this help`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('list', argv, { json: { type: 'boolean' }, ...clientOptions }, { maxPositionals: 1 });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    const what = args.positionals[0];
    if (what !== 'pipelines') {
      throw new UsageError(
        what === undefined ? "say what to list: 'nanosync list pipelines'" : `cannot list '${what}' (try 'pipelines')`,
        'list',
      );
    }
    const client = await connectClient(args.values, io);
    const { pipelines } = await client.request<{ pipelines: PipelineStatus[] }>('GET', '/v1/pipelines');
    io.out(args.values.json ? JSON.stringify(pipelines, null, 2) : renderPipelineList(pipelines));
    return ExitCode.Ok;
  },
};
