import { type ResolvedConfig, toStoredDefinitions } from '@nanosync/core/host';
import { parseCommandArgs } from '../args.js';
import { CLIENT_OPTIONS_HELP, clientOptions, connectClient } from '../client.js';
import { checkConfigOrExit } from '../config-check.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import { clientSecretKey } from '../secret-key.js';
import type { ApplyEntry, ApplyResult } from '../server/admin-engine.js';
import { statePaths } from '../state-paths.js';
import type { Command } from './command.js';

interface ApplyResponse {
  results: { name: string; result: ApplyResult }[];
}

/** Turn a checked config into the entries `POST /v1/apply` takes (literal secrets encrypted). */
export async function storedEntries(checked: ResolvedConfig, secretKey: Buffer): Promise<ApplyEntry[]> {
  const stored = await toStoredDefinitions(checked, { secretKey });
  return [...stored].map(([name, entry]) => ({
    name,
    definition: entry.definition,
    hash: entry.hash,
    replicationType: entry.replicationType,
  }));
}

export function printApplyResults(results: { name: string; result: ApplyResult }[], io: CliIo): void {
  for (const { name, result } of results) io.out(`${name} ${result}`);
}

export const applyCommand: Command = {
  name: 'apply',
  summary: 'create or update the pipelines of a config file on the running server',
  help: `Usage: nanosync apply --file FILE [--server HOST:PORT] [--state PATH]

Validates FILE offline first (exactly like 'nanosync validate'); nothing is sent
when it has errors. Then sends every pipeline to the server and prints, per
pipeline, whether it was created, updated or left unchanged. Running it again
with the same file changes nothing. Pipelines missing from the file are kept
(remove them with 'nanosync pipeline delete').

Literal secrets in the file are encrypted with the server's key before they are
sent; \${env:VAR} references are sent as references and resolved by the server.

Options:
  -f, --file FILE     config file
${CLIENT_OPTIONS_HELP.join('\n')}
  -h, --help          show this help

Exit codes: 0 applied, 1 the server failed or is unreachable, 2 invalid config,
wrong token or wrong arguments.`,
  async run(argv: string[], io: CliIo): Promise<number> {
    const args = parseCommandArgs('apply', argv, { file: { type: 'string', short: 'f' }, ...clientOptions });
    if (args.help) {
      io.out(this.help);
      return ExitCode.Ok;
    }
    if (!args.values.file) throw new UsageError('--file is required', 'apply');
    // `${env:…}` references are resolved by the server, in its environment: a variable this
    // shell lacks is no reason to refuse the file.
    const checked = await checkConfigOrExit(args.values.file, io, { deferEnv: true });
    if (typeof checked === 'number') return checked;
    const client = await connectClient(args.values, io);
    const secretKey = await clientSecretKey(statePaths(args.values.state, io), io.env);
    const definitions = await storedEntries(checked, secretKey);
    try {
      const response = await client.request<ApplyResponse>('POST', '/v1/apply', { definitions });
      printApplyResults(response.results, io);
    } catch (err) {
      const partial = (err as { response?: Partial<ApplyResponse> }).response?.results;
      if (partial) printApplyResults(partial, io);
      throw err;
    }
    return ExitCode.Ok;
  },
};
