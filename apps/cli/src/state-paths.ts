import { randomBytes } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ErrorCode, NanosyncError } from '@nanosync/core';
import type { CliIo } from './io.js';

/** How the default is described in help texts. */
export const DEFAULT_STATE_HELP = '$XDG_STATE_HOME/nanosync/state.db, else ~/.local/state/nanosync/state.db';
export const DEFAULT_LISTEN = '127.0.0.1:7654';

/** The state database and the files the server keeps next to it. */
export interface StatePaths {
  stateFile: string;
  /**
   * Set when `--state` / `NANOSYNC_STATE` is a `postgres://` URL: the state then lives in
   * that database (@nanosync/state-postgres), and `stateFile`/`dir` are the per-user default
   * place for the token and the secret key.
   */
  stateUrl?: string;
  dir: string;
  /** Admin API bearer token (0600), read by the client commands when NANOSYNC_TOKEN is not set. */
  tokenFile: string;
  /** AES key for literal secrets (0600), used when NANOSYNC_SECRET_KEY is not set. */
  keyFile: string;
}

/**
 * The per-user default (XDG base directories): `$XDG_STATE_HOME/nanosync/state.db`, else
 * `~/.local/state/nanosync/state.db`. The same wherever a command is started, so a client
 * run from any folder finds the server's token.
 */
export function defaultStateFile(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_STATE_HOME?.trim();
  // The spec says a relative XDG_STATE_HOME is invalid and is to be ignored.
  const stateHome = xdg?.startsWith('/') ? xdg : join(env.HOME?.trim() || homedir(), '.local', 'state');
  return join(stateHome, 'nanosync', 'state.db');
}

/** `--state`, else `NANOSYNC_STATE`, else {@link defaultStateFile}. */
export function statePaths(option: string | undefined, io: Pick<CliIo, 'env' | 'cwd'>): StatePaths {
  const chosen = option || io.env.NANOSYNC_STATE;
  const stateUrl = chosen && POSTGRES_URL.test(chosen) ? chosen : undefined;
  const stateFile = resolve(io.cwd, (stateUrl ? undefined : chosen) || defaultStateFile(io.env));
  const dir = dirname(stateFile);
  const paths: StatePaths = { stateFile, dir, tokenFile: join(dir, 'token'), keyFile: join(dir, 'secret.key') };
  if (stateUrl) paths.stateUrl = stateUrl;
  return paths;
}

const POSTGRES_URL = /^postgres(ql)?:\/\//i;

/**
 * The token the server accepts: `NANOSYNC_TOKEN`, else the token file next to the state
 * database, created (0600) with a random token the first time.
 */
export async function loadOrCreateServerToken(paths: StatePaths, env: NodeJS.ProcessEnv): Promise<string> {
  const fromEnv = env.NANOSYNC_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const existing = await readTokenFile(paths.tokenFile);
  if (existing !== undefined) {
    await chmod(paths.tokenFile, 0o600).catch(() => undefined);
    return existing;
  }
  const token = randomBytes(32).toString('base64url');
  try {
    await writeFile(paths.tokenFile, `${token}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      const raced = await readTokenFile(paths.tokenFile);
      if (raced !== undefined) return raced;
    }
    throw new NanosyncError(
      ErrorCode.StateUnavailable,
      `cannot write the token file ${paths.tokenFile}: ${errnoText(err)}`,
      { cause: err },
    );
  }
  return token;
}

/** The token a client sends: `NANOSYNC_TOKEN`, else the server's token file. Never creates anything. */
export async function readClientToken(paths: StatePaths, env: NodeJS.ProcessEnv): Promise<string> {
  const fromEnv = env.NANOSYNC_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const fromFile = await readTokenFile(paths.tokenFile).catch((err) => {
    throw new NanosyncError(ErrorCode.ServerAuth, `cannot read the token file ${paths.tokenFile}: ${errnoText(err)}`, {
      cause: err,
    });
  });
  if (fromFile === undefined) {
    throw new NanosyncError(
      ErrorCode.ServerAuth,
      `no admin token: NANOSYNC_TOKEN is not set and ${paths.tokenFile} does not exist (start 'nanosync serve' with the same --state, or set NANOSYNC_TOKEN)`,
    );
  }
  return fromFile;
}

async function readTokenFile(file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    return text === '' ? undefined : text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function fileExists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

export function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'EACCES' || e?.code === 'EPERM') return 'permission denied';
  if (e?.code === 'ENOTDIR') return 'a parent is not a folder';
  if (e?.code === 'EEXIST') return 'it exists and is not a folder';
  if (e?.code === 'EROFS') return 'read-only file system';
  if (e?.code === 'ENOSPC') return 'disk full';
  return e?.code ?? (err instanceof Error ? err.message : String(err));
}
