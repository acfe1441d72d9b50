import { ErrorCode, NanosyncError } from '@nanosync/core';
import { loadOrCreateSecretKey } from '@nanosync/core/host';
import { fileExists, type StatePaths } from './state-paths.js';

/** The server's key: from `NANOSYNC_SECRET_KEY`, else the key file next to the state database (created 0600 when missing). */
export function serverSecretKey(
  paths: StatePaths,
  env: NodeJS.ProcessEnv,
  warn?: (message: string) => void,
): Promise<Buffer> {
  return loadOrCreateSecretKey({ env, keyFile: paths.keyFile, ...(warn ? { warn } : {}) });
}

/**
 * The key a client encrypts literal secrets with before sending definitions. It must be the
 * server's key, so a client never creates one: a missing key means it is looking in the
 * wrong folder.
 */
export async function clientSecretKey(paths: StatePaths, env: NodeJS.ProcessEnv): Promise<Buffer> {
  if (!env.NANOSYNC_SECRET_KEY && !(await fileExists(paths.keyFile))) {
    throw new NanosyncError(
      ErrorCode.SecretKey,
      `the server's secret key was not found: NANOSYNC_SECRET_KEY is not set and ${paths.keyFile} does not exist (use the server's --state, or set NANOSYNC_SECRET_KEY as the server has it)`,
    );
  }
  return loadOrCreateSecretKey({ env, keyFile: paths.keyFile });
}
