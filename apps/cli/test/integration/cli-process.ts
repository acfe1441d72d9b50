import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ExitResult, eventually, NanosyncProcess, nanosyncCommand } from '@nanosync/connector-testkit';

/**
 * The CLI tests' view of the shared child-process harness of @nanosync/connector-testkit
 * (`NanosyncProcess`): the same names these tests always used, nothing of their own.
 */

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const CLI_ENTRY = join(REPO_ROOT, 'apps/cli/src/bin.ts');

/** The CLI exactly as a user's shell runs it from source (`node --conditions=… --import tsx bin.ts …`). */
export const cliCommand = nanosyncCommand;

/** The environment of a CLI child: ours without any NANOSYNC_* or VITEST* setting, plus `extra`. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('NANOSYNC_') && !k.startsWith('VITEST')) env[k] = v;
  return { ...env, FORCE_COLOR: '0', ...extra };
}

export type CliResult = ExitResult;

/** A CLI child process whose output is collected; killed on dispose if still running. */
export class CliProcess extends NanosyncProcess {
  constructor(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}) {
    super(args, { cwd: options.cwd ?? REPO_ROOT, ...(options.env ? { env: options.env } : {}) });
  }
}

/** Run a CLI command to completion. */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  await using proc = new CliProcess(args, options);
  return await proc.exited;
}

/** Start `serve` (or `run`) on a free port and wait until its admin API answers; returns the API address. */
export async function startServing(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ proc: CliProcess; server: string }> {
  const proc = new CliProcess([...args, '--listen', '127.0.0.1:0'], options);
  try {
    const match = await proc.waitFor(/admin api listening url=(http:\/\/127\.0\.0\.1:\d+)/);
    await proc.waitFor(/nanosync serving — Ctrl-C to stop/);
    return { proc, server: match[1]! };
  } catch (err) {
    await proc[Symbol.asyncDispose]();
    throw err;
  }
}

export { eventually };
