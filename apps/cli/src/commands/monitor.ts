import { ErrorCode, NanosyncError } from '@nanosync/core';
import type { PipelineStatus } from '@nanosync/core/host';
import { parseCommandArgs } from '../args.js';
import { type AdminClient, CLIENT_OPTIONS_HELP, clientOptions, connectClient } from '../client.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import { StatusPoller } from '../monitor/poller.js';
import type { Command } from './command.js';

export const monitorCommand: Command = {
  name: 'monitor',
  summary: 'live dashboard of every pipeline: state, lag, events/s, snapshot progress',
  help: `Usage: nanosync monitor [--interval SECONDS] [--server HOST:PORT] [--state PATH]

A live view of every pipeline in the terminal: state, lag, events/s and a
snapshot progress bar with its ETA. Warnings (retained WAL, stalled pipeline),
errors and what a WAITING pipeline waits for (a replication slot another
process holds: its pid, application and address) are listed under the table.

Keys:
  ↑ / ↓ (or k / j)   select a pipeline
  Enter              per-table view: rows snapshotted, events, lag; the sinks
  Esc                back to the list
  q                  quit

When the server does not answer, the dashboard says so, keeps the last figures
on screen and keeps trying until it is back.

Options:
      --interval S    seconds between two refreshes (default 1)
${CLIENT_OPTIONS_HELP.join('\n')}
  -h, --help          show this help`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('monitor', argv, { interval: { type: 'string' }, ...clientOptions });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    const interval = Number(args.values.interval ?? '1');
    if (!Number.isFinite(interval) || interval < 0.2 || interval > 3600) {
      throw new UsageError(
        `--interval must be a number of seconds between 0.2 and 3600 (got '${args.values.interval}')`,
        'monitor',
      );
    }
    if (!process.stdin.isTTY || !process.stdout.isTTY) {
      throw new UsageError(
        "needs an interactive terminal; for scripts use 'nanosync list pipelines' or 'nanosync metrics pipeline NAME'",
        'monitor',
      );
    }

    let client: AdminClient = await connectClient(args.values, io);
    const fetch = async (): Promise<PipelineStatus[]> => {
      try {
        return (await client.request<{ pipelines: PipelineStatus[] }>('GET', '/v1/pipelines')).pipelines;
      } catch (err) {
        // A restarted server may have a new token file: read it again before the next try.
        if (NanosyncError.is(err, ErrorCode.ServerAuth))
          client = await connectClient(args.values, io).catch(() => client);
        throw err;
      }
    };
    const intervalMs = Math.round(interval * 1000);
    // The dashboard (Ink, React, Yoga's WebAssembly) is loaded only here: every other command,
    // the server above all, would carry it in memory for nothing.
    const { showDashboard } = await import('../monitor/dashboard.js');
    const poller = new StatusPoller({ fetch, intervalMs });
    poller.start();
    try {
      await showDashboard(poller, client.baseUrl, intervalMs);
    } finally {
      poller.stop();
    }
    return ExitCode.Ok;
  },
};
