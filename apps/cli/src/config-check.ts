import { resolve } from 'node:path';
import {
  ConfigError,
  type ConfigIssue,
  type ConnectorResolver,
  loadConfigFile,
  type NanosyncConfig,
  NanosyncError,
  validateConnectors,
} from '@nanosync/core';
import type { CliIo } from './io.js';

export interface CheckedConfig {
  file: string;
  config: NanosyncConfig;
  raw: unknown;
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
): Promise<CheckedConfig> {
  const path = resolve(io.cwd, file);
  const loaded = await loadConfigFile(path, { env: io.env });
  let issues: ConfigIssue[];
  try {
    issues = await validateConnectors(loaded.config, { resolve: resolveConnector });
  } catch (err) {
    // A connector that cannot be found or loaded is a config problem like any other.
    if (err instanceof NanosyncError && err.code.startsWith('NS_C') && !(err instanceof ConfigError)) {
      throw new ConfigError([{ path: '', message: err.message.replace(/^\[NS_C\d+\]\s*/, ''), code: err.code }], {
        file: path,
        cause: err,
      });
    }
    throw err;
  }
  if (issues.length > 0) throw new ConfigError(issues, { file: path });
  return { file: path, config: loaded.config, raw: loaded.raw, warnings: loaded.warnings };
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
