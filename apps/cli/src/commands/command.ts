import type { CliIo } from '../io.js';

/** A CLI command. `run` returns the exit code; errors it throws are mapped by `exitCodeFor`. */
export interface Command {
  name: string;
  /** One line for the overview in `nanosync --help`. */
  summary: string;
  /** The full `--help` text. */
  help: string;
  run(argv: string[], io: CliIo): Promise<number>;
}
