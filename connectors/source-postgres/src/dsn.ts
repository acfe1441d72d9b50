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
  if (/^postgres(ql)?:\/\//i.test(text)) return parseUri(text);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) throw new DsnError('the URI scheme must be postgres:// or postgresql://');
  return parseKeywords(text);
}

function parseUri(text: string): DsnParams {
  const out: DsnParams = {};
  const rest = text.replace(/^postgres(ql)?:\/\//i, '');
  const slash = rest.search(/[/?]/);
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const pathAndQuery = slash < 0 ? '' : rest.slice(slash);
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? '' : authority.slice(0, at);
  const hostport = at < 0 ? authority : authority.slice(at + 1);
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    out.user = decode(colon < 0 ? userinfo : userinfo.slice(0, colon));
    if (colon >= 0) out.password = decode(userinfo.slice(colon + 1));
  }
  if (hostport.includes(',')) throw new DsnError('several hosts in one DSN are not supported');
  if (hostport) {
    const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(hostport);
    if (!m) throw new DsnError('cannot read host and port');
    const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : decode(m[1]!);
    if (host) out.host = host;
    if (m[2]) out.port = m[2];
  }
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q < 0 ? '' : pathAndQuery.slice(q + 1);
  if (path.length > 1) out.dbname = decode(path.slice(1));
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    if (eq < 0) throw new DsnError(`parameter "${decode(pair)}" has no value`);
    accept(out, decode(pair.slice(0, eq)), decode(pair.slice(eq + 1)));
  }
  return out;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, '%20'));
  } catch {
    throw new DsnError('invalid percent-encoding');
  }
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
