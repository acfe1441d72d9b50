import type { CheckResult, Sink, Source, TableRef } from '../contract/connector.js';
import type { Logger } from '../contract/logger.js';
import { ErrorCode, NanosyncError } from '../errors.js';

/** One failed check of a preflight, as `doctor` would show it. */
export interface PreflightFailure {
  /** `source`, `sink 0:events`. */
  who: string;
  check: string;
  message: string;
  fix?: string;
}

/** A preflight that refused: the message lists every failure; `failures` keeps them apart for display. */
export class PreflightError extends NanosyncError {
  constructor(
    readonly pipeline: string,
    readonly failures: PreflightFailure[],
    message: string,
    options: { retriable: boolean },
  ) {
    super(ErrorCode.PreflightFailed, message, options);
  }
}

export interface PreflightOptions {
  pipeline: string;
  /** Undefined for a query pipeline: its source needs no replication set-up. */
  source: { source: Source; tables: TableRef[] } | undefined;
  sinks: { name: string; sink: Sink }[];
  /** The pipeline's tables for the sinks' checks when there is no source check (query pipelines). */
  tables?: TableRef[];
  logger: Logger;
  onWarning?: (warning: string) => void;
  /**
   * `apply`: failures that may pass by themselves (a service not reachable yet) do not
   * refuse the definition; the pipeline's own start retries them.
   */
  ignoreRetriable?: boolean;
}

/**
 * The source's and every sink's `check()`, before anything is created. A failure with
 * severity `error` throws one error listing every failure with its fix (retriable when
 * every failure says it may pass by itself); warnings are logged.
 */
export async function runPreflight(options: PreflightOptions): Promise<void> {
  const checks: { who: string; run: () => Promise<CheckResult[]> }[] = [];
  if (options.source !== undefined) {
    const { source, tables } = options.source;
    checks.push({ who: 'source', run: () => source.check(tables) });
  }
  for (const { name, sink } of options.sinks) {
    if (sink.check === undefined) continue;
    const tables = options.source?.tables ?? options.tables;
    checks.push({ who: `sink ${name}`, run: () => sink.check!(tables) });
  }
  const failed: { who: string; result: CheckResult }[] = [];
  for (const { who, run } of checks) {
    for (const result of await run()) {
      if (result.ok) continue;
      if (result.severity === 'warning') {
        const warning = `${who} check ${result.name}: ${result.message}${result.fix ? ` Fix: ${result.fix}` : ''}`;
        options.logger.warn(warning);
        options.onWarning?.(warning);
        continue;
      }
      failed.push({ who, result });
    }
  }
  if (failed.length === 0) return;
  const retriable = failed.every(({ result }) => result.retriable === true);
  if (retriable && options.ignoreRetriable) return;
  const lines = failed.map(({ who, result }) => `${who}: ${result.message}${result.fix ? ` Fix: ${result.fix}` : ''}`);
  throw new PreflightError(
    options.pipeline,
    failed.map(({ who, result }) => ({
      who,
      check: result.name,
      message: result.message,
      ...(result.fix ? { fix: result.fix } : {}),
    })),
    `pipeline ${options.pipeline} cannot start; nothing was created. ${lines.join(' | ')}`,
    { retriable },
  );
}
