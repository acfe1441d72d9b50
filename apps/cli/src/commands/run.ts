import type { Engine } from '@nanosync/core/host';
import { parseCommandArgs, parseHostPort } from '../args.js';
import { checkConfigOrExit } from '../config-check.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import { serveUntilSignal } from '../server/foreground.js';
import { serverLogger } from '../server/logger.js';
import { startServer } from '../server/start.js';
import { DEFAULT_LISTEN, statePaths } from '../state-paths.js';
import { printApplyResults, storedEntries } from './apply.js';
import type { Command } from './command.js';
import { SERVER_OPTIONS_HELP, serverOptions } from './serve.js';

export const runCommand: Command = {
  name: 'run',
  summary: 'serve and apply a config file in one foreground process',
  help: `Usage: nanosync run --file FILE [--state PATH] [--listen HOST:PORT]

'nanosync serve' and 'nanosync apply --file FILE' in one process: validates the
file (nothing starts when it has errors), starts the server, applies every
pipeline of the file, then runs until Ctrl-C or SIGTERM. The admin API is up as
with 'serve', so 'list pipelines' and 'pipeline pause' work against it.

Options:
  -f, --file FILE         config file
${SERVER_OPTIONS_HELP.join('\n')}
  -h, --help              show this help

Stops by itself once every pipeline of the file has ended and one of them is
ERRORED (and exits 1).

Exit codes: 0 stopped cleanly, 1 runtime failure or a pipeline of the file
ERRORED, 2 invalid config, port in use, unusable state folder or wrong arguments.`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('run', argv, { file: { type: 'string', short: 'f' }, ...serverOptions });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    if (!args.values.file) throw new UsageError('--file is required', 'run');
    const listen = parseHostPort(args.values.listen || DEFAULT_LISTEN, '--listen');
    const logger = serverLogger(args.values['log-level'], io, 'run', args.values['log-format']);
    const checked = await checkConfigOrExit(args.values.file, io);
    if (typeof checked === 'number') return checked;
    const server = await startServer({ paths: statePaths(args.values.state, io), listen, io, logger });
    const watch = watchPipelines(server.engine);
    try {
      const entries = await storedEntries(checked, server.secretKey);
      watch.expect(entries.map((entry) => entry.name));
      const results = [];
      for (const entry of entries) {
        results.push({
          name: entry.name,
          result: await server.engine.apply(entry.name, entry.definition, entry.hash, entry.replicationType),
        });
      }
      printApplyResults(results, io);
    } catch (err) {
      await server.stop().catch(() => undefined);
      throw err;
    }
    return serveUntilSignal(server, io, logger, {
      until: watch.ended,
      exitCode: () => {
        const errored = watch.errored();
        for (const { pipeline, error } of errored) io.err(`nanosync: pipeline ${pipeline} is ERRORED: ${error ?? ''}`);
        return errored.length > 0 ? ExitCode.Failure : ExitCode.Ok;
      },
    });
  },
};

/**
 * The states of the file's pipelines, from the engine's events. `ended` resolves once every
 * one of them has stopped for good (ERRORED or COMPLETED) and at least one is ERRORED, so a
 * script running \`nanosync run\` learns of the failure from the exit code.
 */
function watchPipelines(engine: Engine) {
  const states = new Map<string, { state: string; error?: string }>();
  let names: string[] | undefined;
  let resolveEnded!: (reason: string) => void;
  const ended = new Promise<string>((resolve) => {
    resolveEnded = resolve;
  });
  const errored = () =>
    (names ?? []).map((pipeline) => ({ pipeline, ...states.get(pipeline) })).filter((s) => s.state === 'ERRORED');
  const evaluate = () => {
    if (names === undefined || names.length === 0) return;
    const finished = names.every((n) => ['ERRORED', 'COMPLETED'].includes(states.get(n)?.state ?? ''));
    if (finished && errored().length > 0) resolveEnded('pipeline errored');
  };
  engine.on('state', (event) => {
    states.set(event.pipeline, { state: event.state, ...(event.error !== undefined ? { error: event.error } : {}) });
    evaluate();
  });
  return {
    ended,
    errored,
    expect(pipelines: string[]) {
      names = pipelines;
      evaluate();
    },
  };
}
