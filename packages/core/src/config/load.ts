import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError, type ConfigIssue } from './issues.js';
import type { NanosyncConfig } from './types.js';
import { validateConfigValue } from './validate.js';
import { parseYaml } from './yaml-document.js';

export interface LoadedConfig {
  /**
   * The validated config. It carries what later steps need as fields of its own: `locate`
   * (line and column of a YAML path) and each connection's and pipeline's YAML node as
   * written (`written`, `${env:…}` kept, what `toStoredDefinitions` stores).
   */
  config: NanosyncConfig;
  /** Non-fatal findings (ignored `sink`, unused connections), each with its YAML path. */
  warnings: string[];
}

export interface ParseConfigOptions {
  env?: NodeJS.ProcessEnv;
  /** Variables missing from `env` are resolved later elsewhere (the server, for `apply`): not an error here. */
  deferEnv?: boolean;
  /** Shown in messages; also the base of `configDir` when that is not given. */
  file?: string;
  configDir?: string;
}

/** Validate YAML text. Throws {@link ConfigError} listing every issue. */
export function parseConfig(text: string, options: ParseConfigOptions = {}): LoadedConfig {
  const configDir = options.configDir ?? (options.file === undefined ? process.cwd() : dirname(resolve(options.file)));
  const parsed = parseYaml(text);
  if (parsed.issues.length > 0) throw new ConfigError(parsed.issues, fileOption(options.file));
  const result = validateConfigValue(parsed.value, {
    env: options.env ?? process.env,
    deferEnv: options.deferEnv === true,
    configDir,
    locate: parsed.locate,
    ...fileOption(options.file),
  });
  if (result.config === undefined) throw new ConfigError(result.issues, fileOption(options.file));
  return {
    config: result.config,
    warnings: result.warnings.map((warning) => formatWarning(warning, options.file)),
  };
}

/** Read and validate a config file. Throws {@link ConfigError} (with the file name) listing every issue. */
export async function loadConfigFile(
  file: string,
  options: { env?: NodeJS.ProcessEnv; deferEnv?: boolean } = {},
): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'the file does not exist' : (err as Error).message;
    throw new ConfigError([{ path: '', message: `cannot read the config: ${reason}` }], { file, cause: err });
  }
  return parseConfig(text, {
    file,
    deferEnv: options.deferEnv === true,
    ...(options.env === undefined ? {} : { env: options.env }),
  });
}

function fileOption(file: string | undefined): { file?: string } {
  return file === undefined ? {} : { file };
}

export function formatWarning(warning: ConfigIssue, file?: string): string {
  const where = [file, warning.line, warning.line === undefined ? undefined : warning.column].filter(
    (p) => p !== undefined,
  );
  return `${where.length > 0 ? `${where.join(':')} ` : ''}${warning.path === '' ? '' : `${warning.path}: `}${warning.message}`;
}
