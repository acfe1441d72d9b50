import { resolve } from 'node:path';
import { configErrors, NanosyncError } from '@nanosync/core';
import {
  ConfigError,
  type ConfigIssue,
  type ConnectorResolver,
  loadConfigFile,
  type MaterializedPipeline,
  type NanosyncConfig,
  resolvePipelines,
} from '@nanosync/core/host';
import { connectorResolver } from './connectors.js';
import { ExitCode } from './exit-codes.js';
import type { CliIo } from './io.js';

export interface CheckedConfig {
  file: string;
  config: NanosyncConfig;
  /** One per pipeline, connectors resolved (once, here) and their properties parsed. */
  pipelines: MaterializedPipeline[];
  warnings: string[];
}

/**
 * Everything `validate` checks, offline: YAML, structure, `${env:…}` references, and each
 * connector's own property schema. Throws a {@link ConfigError} carrying every issue found.
 */
export async function checkConfigFile(
  file: string,
  io: CliIo,
  resolveConnector: ConnectorResolver,
  options: { deferEnv?: boolean } = {},
): Promise<CheckedConfig> {
  const path = resolve(io.cwd, file);
  const loaded = await loadConfigFile(path, { env: io.env, deferEnv: options.deferEnv === true });
  let resolved: { issues: ConfigIssue[]; pipelines: MaterializedPipeline[] };
  try {
    resolved = await resolvePipelines(loaded.config, resolveConnector);
  } catch (err) {
    // A connector that cannot be found or loaded is a config problem like any other.
    if (err instanceof NanosyncError && configErrors.has(err.code) && !(err instanceof ConfigError)) {
      throw new ConfigError([{ path: '', message: err.message, code: err.code }], {
        file: path,
        cause: err,
      });
    }
    throw err;
  }
  if (resolved.issues.length > 0) throw new ConfigError(resolved.issues, { file: path });
  return { file: path, config: loaded.config, pipelines: resolved.pipelines, warnings: loaded.warnings };
}

/**
 * `checkConfigFile` for commands that stop on a bad file: prints the errors (or the
 * warnings of a good file) and returns the exit code to use instead of the config.
 */
export async function checkConfigOrExit(
  file: string,
  io: CliIo,
  options: { deferEnv?: boolean } = {},
): Promise<CheckedConfig | ExitCode> {
  try {
    const checked = await checkConfigFile(file, io, connectorResolver(), options);
    printWarnings(checked.warnings, io);
    return checked;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    printConfigError(err, io);
    return ExitCode.Usage;
  }
}

/** Print a config error the way `validate` and `apply` show it: the file, then one line per issue. */
export function printConfigError(err: ConfigError, io: CliIo): void {
  const count = err.issues.length === 1 ? '1 problem' : `${err.issues.length} problems`;
  io.err(`${err.file ?? 'config'}: ${count}`);
  for (const issue of err.issues) {
    const where = issue.line === undefined ? '' : `${issue.line}:${issue.column ?? 1} `;
    const path = issue.path === '' ? '' : `${issue.path}: `;
    io.err(`  ${where}${path}${issue.message}`);
  }
}

export function printWarnings(warnings: string[], io: CliIo): void {
  for (const warning of warnings) io.err(`warning: ${warning}`);
}
