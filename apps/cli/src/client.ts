import { ErrorCode, NanosyncError } from '@nanosync/core';
import { parseHostPort } from './args.js';
import type { CliIo } from './io.js';
import { DEFAULT_LISTEN, DEFAULT_STATE_HELP, readClientToken, statePaths } from './state-paths.js';

/** Options every client command accepts to find the server and its token. */
export const clientOptions = {
  server: { type: 'string' },
  state: { type: 'string' },
} as const;

export const CLIENT_OPTIONS_HELP = [
  '  --server HOST:PORT  admin API of the server (default: NANOSYNC_SERVER or 127.0.0.1:7654)',
  '  --state PATH        state database of the server; its token file is read from the same',
  '                      folder unless NANOSYNC_TOKEN is set (default: NANOSYNC_STATE, else',
  `                      ${DEFAULT_STATE_HELP})`,
];

/** A small JSON client for the admin API. */
export class AdminClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    private readonly tokenSource: string,
  ) {}

  async request<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(120_000),
      });
    } catch (err) {
      const code =
        ((err as { cause?: { code?: string } }).cause?.code ?? (err as { name?: string }).name) || 'unknown error';
      const why =
        code === 'ECONNREFUSED' ? 'connection refused' : code === 'TimeoutError' ? 'no answer within 120 s' : code;
      throw new NanosyncError(
        ErrorCode.ServerUnavailable,
        `no nanosync server answers at ${this.baseUrl} (${why}); start one with 'nanosync serve' or point --server at it`,
        { cause: err, retriable: true },
      );
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (response.status === 401) {
      throw new NanosyncError(
        ErrorCode.ServerAuth,
        `the server at ${this.baseUrl} rejected the admin token from ${this.tokenSource}`,
      );
    }
    if (!response.ok) {
      const error = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
      const code = typeof error?.code === 'string' ? error.code : ErrorCode.Internal;
      const message = error?.message ?? `HTTP ${response.status}`;
      throw Object.assign(new NanosyncError(code, message), { response: json });
    }
    return json as T;
  }
}

/** Resolve server address and token the way every client command does. */
export async function connectClient(values: { server?: string; state?: string }, io: CliIo): Promise<AdminClient> {
  const address = values.server || io.env.NANOSYNC_SERVER || DEFAULT_LISTEN;
  const baseUrl = /^https?:\/\//.test(address)
    ? address.replace(/\/+$/, '')
    : toUrl(parseHostPort(address, '--server'));
  const paths = statePaths(values.state, io);
  const token = await readClientToken(paths, io.env);
  const tokenSource = io.env.NANOSYNC_TOKEN?.trim() ? 'NANOSYNC_TOKEN' : paths.tokenFile;
  return new AdminClient(baseUrl, token, tokenSource);
}

function toUrl({ host, port }: { host: string; port: number }): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
