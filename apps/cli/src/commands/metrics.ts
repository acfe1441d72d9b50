import { parseCommandArgs } from '../args.js';
import { ExitCode } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import type { Command } from './command.js';

/** Placeholder: the observability work replaces this module with the real command. */
export const metricsCommand: Command = {
  name: 'metrics',
  summary: 'show the metrics of a pipeline (not available yet)',
  help: `Usage: nanosync metrics pipeline NAME

Shows lag, throughput, snapshot progress and sink statistics of one pipeline.
Not available in this build yet.`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('metrics', argv, {}, { maxPositionals: 2 });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    io.err("nanosync metrics: not available in this build yet (use 'nanosync list pipelines')");
    return ExitCode.Failure;
  },
};
