/**
 * The URL form of a database DSN, shared by connectors so each parses it the same way:
 *
 *   scheme://[user[:password]@][host][:port][/database][?key=value&…]
 *
 * The user, password, host, database and query keys and values are percent-decoded (`+`
 * is a space, as in query strings); an IPv6 host is written in brackets (`[::1]:5432`).
 * What a query key means, and which keys exist, is the connector's business: they come back
 * in the order written. Problems throw {@link ConnectionUrlError}, whose message never
 * holds the password.
 */
export interface ConnectionUrl {
  /** Lowercase, without `://`. */
  scheme: string;
  user?: string;
  password?: string;
  host?: string;
  /** Digits as written (the connector checks the range). */
  port?: string;
  /** The path without its leading `/`, when there is one. */
  database?: string;
  /** `key=value` pairs of the query, in order. */
  params: [key: string, value: string][];
}

export class ConnectionUrlError extends Error {
  override name = 'ConnectionUrlError';
}

/** True when `text` starts with some `scheme://` (so it is meant as a URL, not a keyword DSN). */
export function hasUrlScheme(text: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(text.trim());
}

/**
 * Parse a connection URL whose scheme is one of `schemes` (compared case-insensitively).
 * Several hosts (`h1,h2`) are refused: no connector supports them.
 */
export function parseConnectionUrl(text: string, schemes: readonly string[]): ConnectionUrl {
  const trimmed = text.trim();
  const match = /^([a-z][a-z0-9+.-]*):\/\//i.exec(trimmed);
  const scheme = match?.[1]!.toLowerCase();
  if (match === null || scheme === undefined || !schemes.includes(scheme)) {
    const allowed = schemes.map((s) => `${s}://`).join(' or ');
    throw new ConnectionUrlError(
      match === null ? `expected a URL starting with ${allowed}` : `the URL scheme must be ${allowed}`,
    );
  }
  const rest = trimmed.slice(match[0].length);
  const slash = rest.search(/[/?]/);
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const pathAndQuery = slash < 0 ? '' : rest.slice(slash);
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? '' : authority.slice(0, at);
  const hostport = at < 0 ? authority : authority.slice(at + 1);
  const url: ConnectionUrl = { scheme, params: [] };
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    url.user = decodeUrlPart(colon < 0 ? userinfo : userinfo.slice(0, colon));
    if (colon >= 0) url.password = decodeUrlPart(userinfo.slice(colon + 1));
  }
  if (hostport.includes(',')) throw new ConnectionUrlError('several hosts in one DSN are not supported');
  if (hostport) {
    const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(hostport);
    if (!m) throw new ConnectionUrlError('cannot read host and port');
    const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : decodeUrlPart(m[1]!);
    if (host) url.host = host;
    if (m[2]) url.port = m[2];
  }
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q < 0 ? '' : pathAndQuery.slice(q + 1);
  if (path.length > 1) url.database = decodeUrlPart(path.slice(1));
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const key = decodeUrlPart(eq < 0 ? pair : pair.slice(0, eq));
    if (eq < 0) throw new ConnectionUrlError(`parameter "${key}" has no value`);
    url.params.push([key, decodeUrlPart(pair.slice(eq + 1))]);
  }
  return url;
}

function decodeUrlPart(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, '%20'));
  } catch {
    throw new ConnectionUrlError('invalid percent-encoding');
  }
}
