/**
 * Where a command writes and what it reads from its surroundings. `bin.ts` wires the real
 * process; tests pass their own to capture output without spawning anything.
 */
export interface CliIo {
  /** One line (or block) of the command's result, newline added. */
  out(text: string): void;
  /** One line of diagnostics (errors, warnings, hints), newline added. */
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export function processIo(): CliIo {
  return {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    env: process.env,
    cwd: process.cwd(),
  };
}
