import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ErrorCode, NanosyncError } from '../errors.js';

const KEY_BYTES = 32;

/**
 * Parse a 32-byte key written as 64 hex digits or as base64 (standard or URL-safe).
 * `source` names where it came from for the error; the key itself is never printed.
 */
export function parseSecretKey(text: string, source: string): Buffer {
  const trimmed = text.trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) key = Buffer.from(trimmed, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed))
    key = Buffer.from(trimmed.replaceAll('-', '+').replaceAll('_', '/'), 'base64');
  if (key === undefined || key.length !== KEY_BYTES) {
    throw new NanosyncError(
      ErrorCode.SecretKey,
      `${source} is not a valid secret key: it must be 32 bytes written as 64 hex digits or 44 base64 characters ` +
        `(generate one with: openssl rand -base64 32)`,
    );
  }
  return key;
}

export interface LoadSecretKeyOptions {
  env?: NodeJS.ProcessEnv;
  /** Used when NANOSYNC_SECRET_KEY is not set; created (mode 0600) when missing. */
  keyFile: string;
  /** Told when the key file is readable by other users. */
  warn?: (message: string) => void;
}

/**
 * The key for literal secrets in the state store: NANOSYNC_SECRET_KEY when set,
 * otherwise the key file, generated on first use with mode 0600 in a 0700 folder.
 * Losing the key file means stored secrets can no longer be read: apply the config again.
 */
export async function loadOrCreateSecretKey(options: LoadSecretKeyOptions): Promise<Buffer> {
  const env = options.env ?? process.env;
  const fromEnv = env.NANOSYNC_SECRET_KEY;
  if (fromEnv !== undefined && fromEnv !== '') return parseSecretKey(fromEnv, 'NANOSYNC_SECRET_KEY');

  const existing = await readKeyFile(options.keyFile, options.warn);
  if (existing !== undefined) return existing;

  const key = randomBytes(KEY_BYTES);
  // Written to a private temporary file and linked into place, so a concurrent reader
  // never sees a half-written key and two creators cannot both win.
  const temporary = `${options.keyFile}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await mkdir(dirname(options.keyFile), { recursive: true, mode: 0o700 });
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(`${key.toString('base64')}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await chmod(temporary, 0o600);
    await link(temporary, options.keyFile);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      const raced = await readKeyFile(options.keyFile, options.warn);
      if (raced !== undefined) return raced;
    }
    throw new NanosyncError(
      ErrorCode.SecretKey,
      `cannot create the secret key file ${options.keyFile}: ${(err as Error).message}; set NANOSYNC_SECRET_KEY or make the folder writable`,
      { cause: err },
    );
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

async function readKeyFile(file: string, warn: ((message: string) => void) | undefined): Promise<Buffer | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new NanosyncError(ErrorCode.SecretKey, `cannot read the secret key file ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const key = parseSecretKey(text, `the secret key file ${file}`);
  if (warn !== undefined && process.platform !== 'win32') {
    const { mode } = await stat(file);
    if ((mode & 0o077) !== 0)
      warn(
        `the secret key file ${file} is readable by other users (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${file}`,
      );
  }
  return key;
}
