import { parseCommandArgs, parseHostPort } from '../args.js';
import { ExitCode } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import { serveUntilSignal } from '../server/foreground.js';
import { LOG_LEVEL_HELP, logLevelOption, serverLogger } from '../server/logger.js';
import { startServer } from '../server/start.js';
import { DEFAULT_LISTEN, DEFAULT_STATE_HELP, statePaths } from '../state-paths.js';
import type { Command } from './command.js';

export const serverOptions = {
  state: { type: 'string' },
  listen: { type: 'string' },
  ...logLevelOption,
} as const;

export const SERVER_OPTIONS_HELP = [
  '      --state PATH        SQLite state database (default: NANOSYNC_STATE, else',
  `                          ${DEFAULT_STATE_HELP});`,
  '                          the secret key and admin token files are kept in the same folder.',
  '                          A postgres://… URL keeps the state in PostgreSQL instead',
  '                          (@nanosync/state-postgres; ?schema=NAME, default nanosync)',
  `      --listen HOST:PORT  admin API address (default: ${DEFAULT_LISTEN}; port 0 picks a free one)`,
  LOG_LEVEL_HELP,
];

export const serveCommand: Command = {
  name: 'serve',
  summary: 'run the pipelines stored in the state database and the admin API',
  help: `Usage: nanosync serve [--state PATH] [--listen HOST:PORT]

Runs every pipeline applied to the state database (paused ones excepted) and
answers the admin API that 'apply', 'list' and 'pipeline' talk to. The API
requires a bearer token: NANOSYNC_TOKEN when set, otherwise a token generated
into a file (mode 0600) next to the state database, which the other commands
read by themselves when given the same --state.

Literal secrets of applied configs are encrypted with NANOSYNC_SECRET_KEY, or a
key generated into a 0600 file next to the state database.

Ctrl-C or SIGTERM checkpoints every pipeline and stops within 10 seconds.

Options:
${SERVER_OPTIONS_HELP.join('\n')}
  -h, --help              show this help

Exit codes: 0 stopped cleanly, 1 runtime failure, 2 port in use, unusable
state folder or wrong arguments.`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('serve', argv, serverOptions);
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    const listen = parseHostPort(args.values.listen || DEFAULT_LISTEN, '--listen');
    const logger = serverLogger(args.values['log-level'], io, 'serve', args.values['log-format']);
    const server = await startServer({ paths: statePaths(args.values.state, io), listen, io, logger });
    return serveUntilSignal(server, io, logger);
  },
};
