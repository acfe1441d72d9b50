import { parseCommandArgs } from '../args.js';
import { ExitCode } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import type { Command } from './command.js';

/** Placeholder: the observability work replaces this module with the live dashboard (ink). */
export const monitorCommand: Command = {
  name: 'monitor',
  summary: 'live dashboard of every pipeline (not available yet)',
  help: `Usage: nanosync monitor

A live terminal view of every pipeline: state, lag and events/s, with a
per-table breakdown. Not available in this build yet.`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('monitor', argv, {});
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    io.err("nanosync monitor: not available in this build yet (use 'nanosync list pipelines')");
    return ExitCode.Failure;
  },
};
