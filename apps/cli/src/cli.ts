import { createRequire } from 'node:module';
import { formatError, NanosyncError, redact } from '@nanosync/core';
import { ConfigError } from '@nanosync/core/host';
import { applyCommand } from './commands/apply.js';
import type { Command } from './commands/command.js';
import { doctorCommand, preflightFailures, renderPreflightFailures } from './commands/doctor.js';
import { listCommand } from './commands/list.js';
import { metricsCommand } from './commands/metrics.js';
import { monitorCommand } from './commands/monitor.js';
import { pipelineCommand } from './commands/pipeline.js';
import { planCommand } from './commands/plan.js';
import { runCommand } from './commands/run.js';
import { serveCommand } from './commands/serve.js';
import { validateCommand } from './commands/validate.js';
import { printConfigError } from './config-check.js';
import { ExitCode, exitCodeFor, UsageError } from './exit-codes.js';
import type { CliIo } from './io.js';

export const commands: readonly Command[] = [
  serveCommand,
  runCommand,
  planCommand,
  applyCommand,
  validateCommand,
  doctorCommand,
  listCommand,
  pipelineCommand,
  metricsCommand,
  monitorCommand,
];

export function version(): string {
  return (createRequire(import.meta.url)('../package.json') as { version: string }).version;
}

export function overview(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `nanosync — change data capture from PostgreSQL into Kafka, files and more

Usage: nanosync <command> [options]

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run 'nanosync <command> --help' for the options of a command.
Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.`;
}

/**
 * The whole CLI as a function: parse `argv` (without `node` and the script), run the
 * command, return its exit code. Errors become one readable line on stderr.
 */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h') {
    io.out(overview());
    return first === undefined ? ExitCode.Usage : ExitCode.Ok;
  }
  if (first === '--version' || first === '-v') {
    io.out(version());
    return ExitCode.Ok;
  }
  if (first === 'help') {
    const target = rest[0] === undefined ? undefined : commands.find((c) => c.name === rest[0]);
    io.out(target?.help ?? overview());
    return rest[0] === undefined || target ? ExitCode.Ok : ExitCode.Usage;
  }
  const command = commands.find((c) => c.name === first);
  if (!command) {
    io.err(`nanosync: unknown command '${first}'`);
    io.err("Run 'nanosync --help' to see the commands.");
    return ExitCode.Usage;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    reportError(err, command.name, io);
    return exitCodeFor(err);
  }
}

function reportError(err: unknown, command: string, io: CliIo): void {
  if (err instanceof UsageError) {
    io.err(`nanosync ${err.command ?? command}: ${err.message}`);
    io.err(`Run 'nanosync ${err.command ?? command} --help' for usage.`);
    return;
  }
  if (err instanceof ConfigError) {
    printConfigError(err, io);
    return;
  }
  const refused = preflightFailures(err);
  if (refused !== undefined) {
    for (const line of renderPreflightFailures(refused, command)) io.err(redact(line));
    return;
  }
  if (err instanceof NanosyncError) {
    io.err(`nanosync ${command}: ${redact(formatError(err))}`);
    return;
  }
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  io.err(`nanosync ${command}: unexpected error: ${redact(message)}`);
}
