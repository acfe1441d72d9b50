import type { PipelineStatus } from '@nanosync/core/host';
import { parseCommandArgs } from '../args.js';
import { CLIENT_OPTIONS_HELP, clientOptions, connectClient } from '../client.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import { renderPipelineReport } from '../monitor/pipeline-report.js';
import type { Command } from './command.js';

export const metricsCommand: Command = {
  name: 'metrics',
  summary: 'show the figures of one pipeline: lag, throughput, snapshot, sinks, WAL, warnings',
  help: `Usage: nanosync metrics pipeline NAME [--json] [--server HOST:PORT] [--state PATH]

Prints what the server measures for one pipeline, in sections:
  Pipeline    state, lag, events/s, events since the server started, checkpoint
  Snapshot    progress bar, partitions done, rows read vs estimated, ETA
  Tables      per table: snapshot rows, partitions, stream changes, lag
  Sinks       per sink: state, rows written, write errors, dead letters and
              skipped events (on_error), queue, spilled bytes, lag, write latency
  Source WAL  WAL retained by the replication slot and how much more is safe
  Warnings    retained WAL past 50% / 80% of the limit, stalled pipeline

These are the figures Prometheus scrapes from the server's /metrics endpoint.
Counters start from zero when the server starts.

Options:
      --json          print the server's status object as JSON
${CLIENT_OPTIONS_HELP.join('\n')}
  -h, --help          show this help`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs(
      'metrics',
      argv,
      { json: { type: 'boolean' }, ...clientOptions },
      { maxPositionals: 2 },
    );
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    const [what, name] = args.positionals;
    if (what !== 'pipeline') {
      throw new UsageError(
        what === undefined
          ? "say which pipeline: 'nanosync metrics pipeline NAME'"
          : `unknown metrics subject '${what}' (try 'pipeline NAME')`,
        'metrics',
      );
    }
    if (name === undefined) throw new UsageError("missing pipeline name: 'nanosync metrics pipeline NAME'", 'metrics');
    const client = await connectClient(args.values, io);
    const { pipeline } = await client.request<{ pipeline: PipelineStatus }>(
      'GET',
      `/v1/pipelines/${encodeURIComponent(name)}`,
    );
    io.out(args.values.json ? JSON.stringify(pipeline, null, 2) : renderPipelineReport(pipeline));
    return ExitCode.Ok;
  },
};
