import { readFileSync } from 'node:fs';
import { ErrorCode, NanosyncError } from '../errors.js';

/**
 * Read a TLS file a connector property names (a CA certificate, a client certificate or
 * key, PEM). Connectors read them when they build their client, so a wrong path is found at
 * start and reported as a config problem naming the property and the file, not as a bare
 * ENOENT from deep inside a driver.
 */
export function readTlsFile(property: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'does not exist'
        : `cannot be read (${(err as Error).message})`;
    throw new NanosyncError(ErrorCode.ConfigInvalid, `${property} file "${file}" ${reason}`, {
      cause: err,
      details: { property },
    });
  }
}
