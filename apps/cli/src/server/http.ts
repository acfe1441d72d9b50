import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { configErrors, ErrorCode, type Logger, NanosyncError, redact } from '@nanosync/core';
import type { AdminEngine } from './admin-engine.js';

/**
 * A route of the admin API. Routes live in tables (`routes/*.ts`) so a feature adds its
 * endpoints in its own file; the server only matches, authenticates and serialises.
 */
export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** `/v1/pipelines/:name`: `:x` segments become `params.x` (URL-decoded). */
  path: string;
  /** Bearer token required (default). Only set false for endpoints that expose nothing sensitive. */
  auth?: boolean;
  handle(context: RouteContext): Promise<RouteResult> | RouteResult;
}

export interface RouteContext {
  engine: AdminEngine;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body (undefined when there is none). */
  body: unknown;
  logger: Logger;
}

export type RouteResult = { status?: number; json: unknown } | { status?: number; text: string; contentType?: string };

/** Request bodies beyond this are refused: definitions are small. */
const MAX_BODY_BYTES = 8 << 20;

export interface AdminHandlerOptions {
  engine: AdminEngine;
  token: string;
  routes: readonly Route[];
  logger: Logger;
}

/** Map an error onto an HTTP status. Messages are redacted: no secret ever leaves in a response. */
export function errorResponse(err: unknown): { status: number; json: { error: { code: string; message: string } } } {
  if (err instanceof NanosyncError) {
    const status =
      err.code === ErrorCode.PipelineNotFound
        ? 404
        : err.code === ErrorCode.ServerAuth
          ? 401
          : err.code === ErrorCode.PipelineLeaseHeld
            ? 409
            : configErrors.has(err.code) || err.code === ErrorCode.CliUsage
              ? 400
              : err.code === ErrorCode.PreflightFailed
                ? 422
                : 500;
    return { status, json: { error: { code: err.code, message: redact(err.message) } } };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, json: { error: { code: ErrorCode.Internal, message: redact(message) } } };
}

interface CompiledRoute {
  route: Route;
  segments: string[];
}

function compile(routes: readonly Route[]): CompiledRoute[] {
  return routes.map((route) => ({ route, segments: route.path.split('/').filter(Boolean) }));
}

function match(compiled: CompiledRoute, parts: string[]): Record<string, string> | undefined {
  if (compiled.segments.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const expected = compiled.segments[i]!;
    const actual = parts[i]!;
    if (expected.startsWith(':')) {
      try {
        params[expected.slice(1)] = decodeURIComponent(actual);
      } catch {
        return undefined;
      }
    } else if (expected !== actual) return undefined;
  }
  return params;
}

function tokenMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice('Bearer '.length).trim());
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new NanosyncError(ErrorCode.CliUsage, `request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new NanosyncError(ErrorCode.CliUsage, 'request body is not valid JSON');
  }
}

function send(res: ServerResponse, result: RouteResult): void {
  const status = result.status ?? 200;
  if ('json' in result) {
    const body = JSON.stringify(result.json);
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  } else {
    res.writeHead(status, {
      'content-type': result.contentType ?? 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(result.text),
    });
    res.end(result.text);
  }
}

/** The request handler of the admin API: routing, bearer-token check, JSON in and out. */
export function createAdminHandler(options: AdminHandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const compiled = compile(options.routes);
  return (req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const parts = url.pathname.split('/').filter(Boolean);
      const candidates = compiled.map((c) => ({ c, params: match(c, parts) })).filter((m) => m.params !== undefined);
      if (candidates.length === 0) {
        send(res, {
          status: 404,
          json: { error: { code: ErrorCode.CliUsage, message: `no such endpoint: ${url.pathname}` } },
        });
        return;
      }
      const found = candidates.find((m) => m.c.route.method === req.method);
      // Authenticate before saying anything about methods, so a caller without the token learns nothing.
      const needsAuth = found ? found.c.route.auth !== false : candidates.some((m) => m.c.route.auth !== false);
      if (needsAuth && !tokenMatches(req.headers.authorization, options.token)) {
        res.setHeader('www-authenticate', 'Bearer');
        send(res, {
          status: 401,
          json: { error: { code: ErrorCode.ServerAuth, message: 'missing or wrong bearer token' } },
        });
        return;
      }
      if (!found) {
        res.setHeader('allow', candidates.map((m) => m.c.route.method).join(', '));
        send(res, {
          status: 405,
          json: { error: { code: ErrorCode.CliUsage, message: `${req.method} not allowed on ${url.pathname}` } },
        });
        return;
      }
      const body = req.method === 'GET' || req.method === 'DELETE' ? undefined : await readJsonBody(req);
      const result = await found.c.route.handle({
        engine: options.engine,
        params: found.params!,
        query: url.searchParams,
        body,
        logger: options.logger,
      });
      send(res, result);
    })().catch((err) => {
      const response = errorResponse(err);
      if (response.status >= 500)
        options.logger.error('admin api request failed', { path: req.url, error: response.json.error.message });
      if (!res.headersSent) send(res, response);
      else res.destroy();
    });
  };
}

export interface AdminServer {
  server: Server;
  /** `http://127.0.0.1:7654` (the real port when 0 was asked for). */
  url: string;
  host: string;
  port: number;
  /** Swap in the real handler once the engine is ready; until then every request gets 503. */
  setHandler(handler: (req: IncomingMessage, res: ServerResponse) => void): void;
  close(): Promise<void>;
}

/**
 * Bind the admin API's port. Called before anything is created on disk, so a port in use
 * fails fast with nothing half-made. Requests are answered 503 until `setHandler`.
 */
export async function listenAdmin(host: string, port: number): Promise<AdminServer> {
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    send(res, { status: 503, json: { error: { code: ErrorCode.ServerUnavailable, message: 'server is starting' } } });
  };
  const server = createServer((req, res) => handler(req, res));
  server.keepAliveTimeout = 2_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      if (err.code === 'EADDRINUSE') {
        reject(
          new NanosyncError(
            ErrorCode.PortInUse,
            `cannot listen on ${where}: the port is already in use (another nanosync serve? pick another with --listen)`,
            { cause: err },
          ),
        );
      } else if (err.code === 'EACCES') {
        reject(new NanosyncError(ErrorCode.PortInUse, `cannot listen on ${where}: permission denied`, { cause: err }));
      } else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') {
        reject(
          new NanosyncError(ErrorCode.CliUsage, `cannot listen on ${where}: no such local address`, { cause: err }),
        );
      } else reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host, port, exclusive: true });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    server,
    url: `http://${shownHost}:${address.port}`,
    host: address.address,
    port: address.port,
    setHandler(next) {
      handler = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
