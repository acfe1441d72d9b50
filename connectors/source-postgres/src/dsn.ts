import { type ConnectionUrl, ConnectionUrlError, hasUrlScheme, parseConnectionUrl } from '@nanosync/core';

/**
 * libpq connection strings, both forms:
 *   URI           postgres[ql]://[user[:password]@][host][:port][/dbname][?key=value&…]
 *   keyword/value host=db.example port=5432 dbname='my db' sslmode=verify-full
 * (values in the keyword form may be single-quoted, with `\'` and `\\` escapes).
 * Only the keywords nanosync supports are accepted; anything else is reported by name.
 */
export const DSN_KEYWORDS = [
  'host',
  'hostaddr',
  'port',
  'user',
  'password',
  'dbname',
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'application_name',
  'options',
  'connect_timeout',
] as const;
export type DsnKeyword = (typeof DSN_KEYWORDS)[number];
export type DsnParams = Partial<Record<DsnKeyword, string>>;

export class DsnError extends Error {}

const KNOWN = new Set<string>(DSN_KEYWORDS);

function accept(out: DsnParams, key: string, value: string): void {
  if (!KNOWN.has(key))
    throw new DsnError(`unsupported connection parameter "${key}" (supported: ${DSN_KEYWORDS.join(', ')})`);
  out[key as DsnKeyword] = value;
}

export function parseDsn(dsn: string): DsnParams {
  const text = dsn.trim();
  // Any scheme goes to the URL parser, which refuses all but postgres:// and postgresql://.
  return hasUrlScheme(text) ? parseUri(text) : parseKeywords(text);
}

/** The URL form, read by core's shared parser; the query keys are libpq keywords. */
function parseUri(text: string): DsnParams {
  let url: ConnectionUrl;
  try {
    url = parseConnectionUrl(text, ['postgres', 'postgresql']);
  } catch (err) {
    throw err instanceof ConnectionUrlError ? new DsnError(err.message) : err;
  }
  const out: DsnParams = {};
  if (url.user !== undefined) out.user = url.user;
  if (url.password !== undefined) out.password = url.password;
  if (url.host !== undefined) out.host = url.host;
  if (url.port !== undefined) out.port = url.port;
  if (url.database !== undefined) out.dbname = url.database;
  for (const [key, value] of url.params) accept(out, key, value);
  return out;
}

function parseKeywords(text: string): DsnParams {
  const out: DsnParams = {};
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && /\s/.test(text[i]!)) i++;
    if (i >= n) break;
    const keyStart = i;
    while (i < n && text[i] !== '=' && !/\s/.test(text[i]!)) i++;
    const key = text.slice(keyStart, i);
    while (i < n && /\s/.test(text[i]!)) i++;
    if (text[i] !== '=') throw new DsnError(`missing "=" after "${key}"`);
    i++;
    while (i < n && /\s/.test(text[i]!)) i++;
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= n) throw new DsnError(`unterminated quoted value for "${key}"`);
        const c = text[i]!;
        if (c === '\\' && i + 1 < n) {
          value += text[i + 1];
          i += 2;
        } else if (c === "'") {
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
    } else {
      while (i < n && !/\s/.test(text[i]!)) {
        if (text[i] === '\\' && i + 1 < n) {
          value += text[i + 1];
          i += 2;
        } else {
          value += text[i];
          i++;
        }
      }
    }
    accept(out, key, value);
  }
  return out;
}
