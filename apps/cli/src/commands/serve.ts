import { parseCommandArgs, parseHostPort } from '../args.js';
import { ExitCode, UsageError } from '../exit-codes.js';
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
  help: `Usage: nanosync serve [--state PATH] [--listen HOST:PORT] [--server-name NAME]
                      [--lease-ttl SECONDS] [--max-pipelines N]

Runs every pipeline applied to the state database (paused ones excepted) and
answers the admin API that 'apply', 'list' and 'pipeline' talk to. The API
requires a bearer token: NANOSYNC_TOKEN when set, otherwise a token generated
into a file (mode 0600) next to the state database, which the other commands
read by themselves when given the same --state.

Literal secrets of applied configs are encrypted with NANOSYNC_SECRET_KEY, or a
key generated into a 0600 file next to the state database.

Ctrl-C or SIGTERM checkpoints every pipeline and stops within 10 seconds.

Several servers given the same postgres:// state form a fleet: each pipeline
runs in one of them (a free one goes to the server running the fewest), a
stopped server's pipelines move to the others at once, a killed one's once
its leases expire.

Options:
${SERVER_OPTIONS_HELP.join('\n')}
      --server-name NAME  this server's name in the fleet (default HOST/pid-PID);
                          must be unique among the servers sharing the state
      --lease-ttl SECONDS how long a pipeline stays with a server that stopped
                          renewing it (default 30; renewed every third of it)
      --max-pipelines N   run at most N pipelines here (default: no limit)
  -h, --help              show this help

Exit codes: 0 stopped cleanly, 1 runtime failure, 2 port in use, unusable
state folder or wrong arguments.`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('serve', argv, {
      ...serverOptions,
      'server-name': { type: 'string' },
      'lease-ttl': { type: 'string' },
      'max-pipelines': { type: 'string' },
    });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    const listen = parseHostPort(args.values.listen || DEFAULT_LISTEN, '--listen');
    const logger = serverLogger(args.values['log-level'], io, 'serve', args.values['log-format']);
    const serverName = args.values['server-name']?.trim();
    if (serverName !== undefined && !/^[\w.:/@-]{1,200}$/.test(serverName)) {
      throw new UsageError(
        `--server-name must be 1 to 200 letters, digits or . _ : / @ - (got '${args.values['server-name']}')`,
        'serve',
      );
    }
    const leaseTtl = positiveNumber(args.values['lease-ttl'], '--lease-ttl', 'a number of seconds, at least 0.3');
    if (leaseTtl !== undefined && leaseTtl < 0.3) {
      throw new UsageError(
        `--lease-ttl must be a number of seconds, at least 0.3 (got '${args.values['lease-ttl']}')`,
        'serve',
      );
    }
    const maxPipelines = positiveNumber(args.values['max-pipelines'], '--max-pipelines', 'a whole number, at least 1');
    if (maxPipelines !== undefined && !Number.isInteger(maxPipelines)) {
      throw new UsageError(
        `--max-pipelines must be a whole number, at least 1 (got '${args.values['max-pipelines']}')`,
        'serve',
      );
    }
    const server = await startServer({
      paths: statePaths(args.values.state, io),
      listen,
      io,
      logger,
      ...(serverName ? { holderId: serverName } : {}),
      ...(leaseTtl !== undefined ? { leaseTtlMs: Math.round(leaseTtl * 1000) } : {}),
      ...(maxPipelines !== undefined ? { maxPipelines } : {}),
    });
    return serveUntilSignal(server, io, logger);
  },
};

/** A flag's number, or undefined when not given; anything else than a positive number is a usage error. */
function positiveNumber(value: string | undefined, flag: string, expected: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value.trim());
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new UsageError(`${flag} must be ${expected} (got '${value}')`, 'serve');
  }
  return n;
}
