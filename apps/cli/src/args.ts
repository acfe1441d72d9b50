import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError } from './exit-codes.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs<O extends Options> {
  values: {
    [K in keyof O]?: O[K] extends { type: 'boolean' } ? boolean : O[K] extends { multiple: true } ? string[] : string;
  };
  positionals: string[];
}

/**
 * `parseArgs` in strict mode, with its errors turned into a {@link UsageError} that names
 * the command. `--help`/`-h` is added to every command here so none can forget it.
 */
export function parseCommandArgs<O extends Options>(
  command: string,
  argv: string[],
  options: O,
  { minPositionals = 0, maxPositionals = 0 }: { minPositionals?: number; maxPositionals?: number } = {},
): ParsedArgs<O> & { help: boolean } {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(describeParseError(err), command);
  }
  const help = parsed.values.help === true;
  if (!help) {
    if (parsed.positionals.length > maxPositionals) {
      const extra = parsed.positionals.slice(maxPositionals).map((p) => `'${p}'`);
      throw new UsageError(`unexpected argument${extra.length > 1 ? 's' : ''} ${extra.join(' ')}`, command);
    }
    if (parsed.positionals.length < minPositionals) throw new UsageError('missing argument', command);
  }
  return { values: parsed.values as ParsedArgs<O>['values'], positionals: parsed.positionals, help };
}

function describeParseError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string }).code;
  // Node's messages end with a hint about `--` that does not apply to us; keep the first sentence.
  const first = message.split('. ')[0]!.replace(/\.$/, '');
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return first.replace(/^Unknown option/, 'unknown option');
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return first.replace(/^Option/, 'option');
  return first;
}

/** The `--listen` / `--server` form: `host:port`, `[::1]:port`, or a bare port. */
export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new UsageError(`${what} must look like 127.0.0.1:7654 (got '${value}')`);
  }
  return { host: match[1] || match[2] || '127.0.0.1', port };
}
