/**
 * One error type for the whole project. The code is a field, the message only the
 * description: the CLI and the logger print `[NS_P4003] table "public"."ordrs" not found…`,
 * nothing ever parses a message. Retry loops read `retriable`.
 *
 * Codes are grouped in areas, each owning a letter and a block of numbers it declares
 * (`NS_P4000`–`NS_P4999` for the PostgreSQL source). Core owns the config, runtime, state
 * and CLI areas below; every connector declares its own area with `defineErrorArea` in its
 * own `errors.ts` and hands it over as `errorCodes` in its definition, so adding a
 * connector never touches this file. Every code carries what it means and what the
 * operator can do; docs/errors.md is generated from these tables.
 *
 * Messages name the pipeline, table, column, key and position that matter, and the fix
 * when there is one. They never contain secrets: pass input through `redact()` first.
 */

/** What one code means and how an operator gets past it (both end up in docs/errors.md). */
export interface ErrorCodeEntry {
  /** `NS_` + the area's letter + four digits inside the area's block. */
  code: string;
  /** What happened, in a sentence an operator understands. */
  meaning: string;
  /** What to do about it. */
  fix: string;
}

/** The codes of one area (a connector, or a part of core) and the block they live in. */
export interface ErrorArea<Codes extends Record<string, string> = Record<string, string>> {
  /** Who owns the codes, as a reader would name it: "PostgreSQL source", "Kafka sink". */
  readonly area: string;
  /** The letter after `NS_` (`P` for `NS_P4001`). */
  readonly letter: string;
  /** First and last number of the block this area owns (`[4000, 4999]`). */
  readonly range: readonly [first: number, last: number];
  /** The codes by name, for `new NanosyncError(area.code.PgConnection, …)`. */
  readonly code: Codes;
  /** Every code with its name, meaning and fix, in declaration order. */
  readonly entries: readonly (ErrorCodeEntry & { name: string })[];
  /** True for a code of this area (use it instead of looking at a code's letters). */
  has(code: string): boolean;
}

const CODE_FORMAT = /^NS_([A-Z])(\d{4})$/;

/**
 * Declare an area's codes. Fails at import time (so in the connector's first test) when
 * a code is malformed, outside the declared block, repeated, or lacks a meaning or fix.
 */
export function defineErrorArea<const T extends Record<string, ErrorCodeEntry>>(spec: {
  area: string;
  letter: string;
  range: readonly [first: number, last: number];
  codes: T;
}): ErrorArea<{ readonly [K in keyof T]: T[K]['code'] }> {
  const [first, last] = spec.range;
  const seen = new Set<string>();
  for (const [name, entry] of Object.entries(spec.codes)) {
    const m = CODE_FORMAT.exec(entry.code);
    const where = `error code ${name} (${entry.code}) of the ${spec.area} area`;
    if (!m || m[1] !== spec.letter || Number(m[2]) < first || Number(m[2]) > last) {
      throw new Error(`${where} is outside its block NS_${spec.letter}${first}–NS_${spec.letter}${last}`);
    }
    if (seen.has(entry.code)) throw new Error(`${where} is declared twice`);
    if (entry.meaning.trim() === '' || entry.fix.trim() === '') throw new Error(`${where} needs a meaning and a fix`);
    seen.add(entry.code);
  }
  const code = Object.fromEntries(Object.entries(spec.codes).map(([name, entry]) => [name, entry.code]));
  return {
    area: spec.area,
    letter: spec.letter,
    range: spec.range,
    code: code as { readonly [K in keyof T]: T[K]['code'] },
    entries: Object.entries(spec.codes).map(([name, entry]) => ({ name, ...entry })),
    has: (c) => seen.has(c),
  };
}

export const configErrors = defineErrorArea({
  area: 'configuration',
  letter: 'C',
  range: [1000, 1999],
  codes: {
    ConfigInvalid: {
      code: 'NS_C1001',
      meaning: 'The pipelines file has a value of the wrong type or shape, or names something that does not exist.',
      fix: 'Correct the value at the YAML path and line the message names; `nanosync validate --file …` checks the file without a server.',
    },
    ConfigUnknownKey: {
      code: 'NS_C1002',
      meaning: 'The pipelines file has a key nanosync does not know (often a typo).',
      fix: 'Rename it to the key the message suggests ("did you mean …"), or remove it.',
    },
    ConfigMissingEnv: {
      code: 'NS_C1003',
      meaning: `A \`\${env:NAME}\` reference names a variable that is not set where it is resolved (the server, for applied pipelines).`,
      fix: "Set the variable in the server's environment (or the shell of `nanosync run`) and apply again.",
    },
    ConfigYaml: {
      code: 'NS_C1004',
      meaning: 'The pipelines file is not valid YAML.',
      fix: 'Fix the syntax at the line and column the message names (indentation and unquoted `:` are the usual causes).',
    },
    ConnectorNotFound: {
      code: 'NS_C1101',
      meaning: 'No connector package was found for a connection `type`.',
      fix: "Install the package the message names in the config file's folder (`npm i …`), or correct the `type`.",
    },
    ConnectorInvalid: {
      code: 'NS_C1102',
      meaning:
        'A connector package was found but failed to load, or its default export is not a connector definition of the right kind and API version.',
      fix: 'Install a release of the connector built for this nanosync; the message lists what was expected and what was found.',
    },
  },
});

export const runtimeErrors = defineErrorArea({
  area: 'pipeline runtime',
  letter: 'R',
  range: [2000, 2999],
  codes: {
    PipelineNotFound: {
      code: 'NS_R2001',
      meaning: 'No pipeline of that name is applied on this server.',
      fix: 'Check the name with `nanosync list pipelines`, or apply the file that defines it.',
    },
    PipelineLeaseHeld: {
      code: 'NS_R2002',
      meaning:
        'Another nanosync process holds the lease on this pipeline, so this one will not run it (two writers would duplicate and reorder changes).',
      fix: 'Stop the other process, or wait: a lease of a process that died runs out on its own.',
    },
    PipelineStopped: {
      code: 'NS_R2003',
      meaning:
        'The pipeline was stopped (paused, deleted or the server shut down) while an operation was running, or a delete could not clean up the source and paused the pipeline instead.',
      fix: 'After a stop nothing needs fixing: resuming carries on from the last checkpoint. After a failed delete, fix the cause the message names and delete again.',
    },
    PipelineUnsupported: {
      code: 'NS_R2004',
      meaning:
        'The pipeline asks for something its source cannot do, such as a `query` pipeline on a source without SQL.',
      fix: 'Use a replication type the source supports (see the connector README).',
    },
    SinkWriteFailed: {
      code: 'NS_R2005',
      meaning: "A sink's write failed with an error that is not retriable, or retries ran out.",
      fix: "Read the cause in the message (the sink's own code follows it), fix the target, then resume the pipeline; it replays from its checkpoint.",
    },
    PreflightFailed: {
      code: 'NS_R2006',
      meaning: 'A preflight `check()` of the source or a sink failed when the pipeline started; nothing was created.',
      fix: 'Apply the fix each failed check prints (privileges, server settings), then resume the pipeline.',
    },
    SinkSpillFull: {
      code: 'NS_R2007',
      meaning:
        'A sink fell so far behind the others that its spill log reached `max_spill_bytes`: it stopped taking events, holds the replication slot at its checkpoint, and the pipeline reads the stream again from there once it has caught up.',
      fix: "Nothing, if the sink was only slow for a while. Otherwise make the sink faster, raise the sink's `max_spill_bytes` (the disk under the state folder must hold it), or give the slow target a pipeline of its own.",
    },
    SinkSpillFailed: {
      code: 'NS_R2008',
      meaning:
        "A sink's spill log (its backlog on disk under the state folder, while it is behind the other sinks) could not be written or read back, or a record in it is damaged. Nothing damaged is written to the sink: the pipeline restarts from the sinks' checkpoints.",
      fix: 'Read the cause in the message (it names the sink and the spill folder): usually the disk under the state folder is full or not writable. Free space or fix the permissions; the pipeline retries by itself.',
    },
    SchemaChangePaused: {
      code: 'NS_R2010',
      meaning:
        'A streamed table changed shape (a column added, dropped, renamed or retyped, or its key redefined) and the pipeline has `schema_changes: pause`: it stopped in PAUSED before writing anything of the new shape.',
      fix: 'Check that the consumers can take the new shape (the message names the table and the change), then `nanosync pipeline resume <pipeline>`: the change is accepted and streaming carries on from the checkpoint.',
    },
    SchemaChanged: {
      code: 'NS_R2011',
      meaning:
        'A streamed table changed shape and the pipeline has `schema_changes: fail`: it stopped in ERRORED before writing anything of the new shape.',
      fix: 'To carry on with the new shape, set `schema_changes: propagate` (or `pause`) on the pipeline, apply it and resume the pipeline; it replays from its checkpoint.',
    },
    WorkerFailed: {
      code: 'NS_R2012',
      meaning:
        'A worker thread of the pipeline (encoding or decoding in parallel) died: an uncaught error, out of memory, or it was stopped. Nothing it had not handed back was written or acknowledged.',
      fix: 'Read the cause in the message (it names the pool and the worker). Resuming the pipeline replays from its checkpoint; if it keeps failing, set `workers: 0` on the pipeline to run inline and report the cause.',
    },
    Internal: {
      code: 'NS_R2099',
      meaning: 'nanosync reached a state it should never be in (a bug).',
      fix: 'Report it with the log lines around it; restarting the pipeline resumes from the last checkpoint.',
    },
  },
});

export const stateErrors = defineErrorArea({
  area: 'state store',
  letter: 'S',
  range: [3000, 3999],
  codes: {
    StateUnavailable: {
      code: 'NS_S3001',
      meaning: 'The state database (checkpoints, leases, applied pipelines) cannot be opened or written.',
      fix: "Check that the state database's folder exists, is writable by the server and the disk is not full; `--state PATH` (or `NANOSYNC_STATE`) chooses another one.",
    },
    StateCorrupt: {
      code: 'NS_S3002',
      meaning:
        'The state database holds something this nanosync cannot read (damaged, or written by an incompatible version).',
      fix: 'Restore the state folder from a backup or run the matching nanosync version; as a last resort remove it and re-snapshot every pipeline.',
    },
    SecretKey: {
      code: 'NS_S3003',
      meaning:
        'The key that encrypts stored secrets is missing, malformed or not the one the secrets were stored with.',
      fix: 'Give the server its original key (`NANOSYNC_SECRET_KEY`, or `secret.key` next to the state database), or apply the pipelines again so their secrets are stored with the current key.',
    },
  },
});

export const cliErrors = defineErrorArea({
  area: 'CLI and server',
  letter: 'X',
  range: [9000, 9999],
  codes: {
    CliUsage: {
      code: 'NS_X9001',
      meaning: 'A command was called with an unknown option, a missing argument or a bad value.',
      fix: 'Run the command with `--help` for its options.',
    },
    ServerUnavailable: {
      code: 'NS_X9002',
      meaning: 'No nanosync server answers at the admin address.',
      fix: 'Start one with `nanosync serve`, or pass its address with `--server HOST:PORT` (or `NANOSYNC_SERVER`).',
    },
    ServerAuth: {
      code: 'NS_X9003',
      meaning: 'The admin API refused the bearer token, or the token file cannot be read.',
      fix: 'Run the command with the same `--state` as the server (its `token` file is read from there), or set the same `NANOSYNC_TOKEN` the server has.',
    },
    PortInUse: {
      code: 'NS_X9004',
      meaning: 'The admin or metrics address is already taken (often by another nanosync server) or not permitted.',
      fix: 'Stop the other process or choose another address with `--listen`.',
    },
  },
});

/** Core's own codes by name. Connectors' codes live in the connectors. */
export const ErrorCode = {
  ...configErrors.code,
  ...runtimeErrors.code,
  ...stateErrors.code,
  ...cliErrors.code,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Core's areas, for docs/errors.md and for checks such as "is this a config error". */
export const CORE_ERROR_AREAS: readonly ErrorArea[] = [configErrors, runtimeErrors, stateErrors, cliErrors];

export interface NanosyncErrorOptions {
  retriable?: boolean;
  cause?: unknown;
  /** Structured context (pipeline, table, key, position); printed by the logger, never secrets. */
  details?: Record<string, string | number | boolean | undefined>;
}

export class NanosyncError extends Error {
  override readonly name = 'NanosyncError';
  /** `NS_` + area letter + four digits; see the area tables (core's above, each connector's own). */
  readonly code: string;
  readonly retriable: boolean;
  readonly details: Record<string, string | number | boolean | undefined>;

  /** `message` is the description only; the code is printed next to it by whoever shows the error. */
  constructor(code: string, message: string, options: NanosyncErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.details = options.details ?? {};
  }

  static is(err: unknown, code?: string): err is NanosyncError {
    return err instanceof NanosyncError && (code === undefined || err.code === code);
  }
}

/** How an error is shown to people: `[NS_P4003] table … not found`, or the plain message without a code. */
export function formatError(err: { code?: unknown; message: string }): string {
  return typeof err.code === 'string' && CODE_FORMAT.test(err.code) ? `[${err.code}] ${err.message}` : err.message;
}

/**
 * An error and the errors in its `cause` chain, outermost first. Stops after 8 (a chain that
 * loops back on itself ends there) and at the first missing cause.
 */
export function* causeChain(err: unknown): Generator<unknown> {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) yield e;
}

/** True when an error (or its cause chain) says a retry may succeed. Unknown errors are not retriable. */
export function isRetriable(err: unknown): boolean {
  for (const e of causeChain(err)) {
    if (e instanceof NanosyncError) return e.retriable;
    if (typeof e === 'object' && e !== null && (e as { retriable?: unknown }).retriable === true) return true;
  }
  return false;
}

/** Replace the password in a URL/DSN (`postgres://u:secret@h/db` → `postgres://u:***@h/db`) and `password=` pairs. */
export function redact(text: string): string {
  return (
    text
      // user:password@ — up to the last `@` of the token, as URL parsers split an unencoded `@` in a password.
      .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)(\S*)(@)/gi, '$1***$3')
      // password=…, ssl_key_password: …, sslpassword=…, "password":"…" (JSON)
      .replace(/\b([a-z0-9_]*(?:password|passwd|pwd|secret))("?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&;,"]+)/gi, '$1$2***')
  );
}
