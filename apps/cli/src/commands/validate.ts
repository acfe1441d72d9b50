import { ConfigError } from '@nanosync/core/host';
import { parseCommandArgs } from '../args.js';
import { checkConfigFile, printConfigError, printWarnings } from '../config-check.js';
import { connectorResolver } from '../connectors.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import type { Command } from './command.js';

export const validateCommand: Command = {
  name: 'validate',
  summary: 'check config files offline (YAML, fields, env references, connector properties)',
  help: `Usage: nanosync validate --file FILE [--file FILE…]

Checks each file without contacting any database or broker: YAML syntax, the
structure of connections and pipelines, \${env:VAR} references (an unset variable
is an error), and every connector's own properties. Prints every problem of a
file with its YAML path, and stops at the first file that has any.

Options:
  -f, --file FILE   config file to check (repeatable)
  -h, --help        show this help

Exit codes: 0 all valid, 2 a file has errors or the arguments are wrong.`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('validate', argv, { file: { type: 'string', short: 'f', multiple: true } });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    const files = args.values.file ?? [];
    if (files.length === 0) throw new UsageError('--file is required', 'validate');
    for (const file of files) {
      try {
        const checked = await checkConfigFile(file, io, connectorResolver());
        printWarnings(checked.warnings, io);
        const { connections, pipelines } = checked.config;
        io.out(`${file}: ok (${plural(connections.length, 'connection')}, ${plural(pipelines.length, 'pipeline')})`);
      } catch (err) {
        if (err instanceof ConfigError) {
          printConfigError(err, io);
          return ExitCode.Usage;
        }
        throw err;
      }
    }
    return ExitCode.Ok;
  },
};

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
