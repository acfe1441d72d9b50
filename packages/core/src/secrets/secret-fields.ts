import { isOnlyEnvReferences } from '../config/env.js';
import { redact } from '../errors.js';
import { isEncryptedSecret } from './cipher.js';

/**
 * Property names treated as secrets for every connector, on top of the names a
 * connector lists in `secretProperties`: exact names and any `…_password`, `…_secret`,
 * `…_token`, `…_private_key`, `…_api_key` variant.
 */
export const DEFAULT_SECRET_NAMES = ['password', 'secret', 'token', 'sasl_password', 'credentials_json'] as const;
const SECRET_NAME = /(^|_)(password|passwd|secret|token|credentials_json|private_key|api_key)$/i;

export function isSecretName(key: string, extraNames: readonly string[] = []): boolean {
  return SECRET_NAME.test(key) || (DEFAULT_SECRET_NAMES as readonly string[]).includes(key) || extraNames.includes(key);
}

/**
 * Passwords written inside a DSN: the URL's user-info password, a `password=` query
 * parameter, or a `password=` / `pwd=` pair in key-value form (libpq, ADO.NET).
 */
export function dsnPasswords(dsn: string): string[] {
  const found: string[] = [];
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)@/i.exec(dsn);
  if (authority !== null) {
    const userInfo = authority[1]!;
    const colon = userInfo.indexOf(':');
    if (colon >= 0) found.push(userInfo.slice(colon + 1));
  }
  for (const match of dsn.matchAll(/[?&](?:password|sslpassword)=([^&#]*)/gi)) found.push(match[1]!);
  for (const match of dsn.matchAll(/(?:^|[\s;])(?:password|pwd)\s*=\s*('(?:[^'\\]|\\.)*'|"[^"]*"|[^\s;]*)/gi)) {
    found.push(match[1]!.replace(/^['"]|['"]$/g, ''));
  }
  return found.filter((password) => password !== '');
}

/** True when the DSN carries a password written literally (not only `${env:…}` references). */
export function dsnHasLiteralPassword(dsn: string): boolean {
  return dsnPasswords(dsn).some((password) => !isOnlyEnvReferences(password));
}

/** A value under a secret-named key that must not be stored or shown as is. */
export function isLiteralSecretValue(value: unknown): boolean {
  if (value === null || value === undefined) return false;
  if (typeof value === 'string') return value !== '' && !isOnlyEnvReferences(value) && !isEncryptedSecret(value);
  return true;
}

/**
 * A copy of a config value safe to show (API, `list`, logs): values under secret-named
 * keys become `***` (unless they are only `${env:…}` references, which reveal nothing),
 * encrypted values become `***`, and passwords inside DSN-like strings are masked.
 */
export function redactConfig(value: unknown, secretNames: readonly string[] = []): unknown {
  return redactValue(value, secretNames);
}

function redactValue(value: unknown, secretNames: readonly string[]): unknown {
  if (typeof value === 'string') {
    if (isEncryptedSecret(value)) return '***';
    return dsnHasLiteralPassword(value) ? redact(value) : value;
  }
  if (Array.isArray(value)) return value.map((item) => redactValue(item, secretNames));
  if (typeof value === 'object' && value !== null) {
    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (isSecretName(key, secretNames)) {
        copy[key] = isLiteralSecretValue(item) || isEncryptedSecret(item) ? '***' : item;
      } else {
        copy[key] = redactValue(item, secretNames);
      }
    }
    return copy;
  }
  return value;
}

/**
 * Paths (`connections.db.dsn`) of the secrets inside a stored definition that are still
 * written literally: neither encrypted nor only `${env:…}` references. Mirrors what
 * `toStoredDefinitions` encrypts (secret-named keys, and `dsn` strings with a password),
 * so a definition it produced has none. Never returns the values themselves.
 */
export function literalSecretPaths(value: unknown, secretNames: readonly string[] = []): string[] {
  const found: string[] = [];
  const walk = (item: unknown, path: string) => {
    if (Array.isArray(item)) {
      for (let i = 0; i < item.length; i++) walk(item[i], `${path}[${i}]`);
    } else if (typeof item === 'object' && item !== null) {
      for (const [key, child] of Object.entries(item)) {
        const at = path === '' ? key : `${path}.${key}`;
        if (isSecretName(key, secretNames)) {
          if (isLiteralSecretValue(child)) found.push(at);
        } else if (key === 'dsn' && typeof child === 'string' && dsnHasLiteralPassword(child)) {
          found.push(at);
        } else walk(child, at);
      }
    }
  };
  walk(value, '');
  return found;
}

/** Every literal secret string inside a value (for scrubbing messages that might echo input). */
export function collectSecretStrings(value: unknown, secretNames: readonly string[] = []): string[] {
  const found = new Set<string>();
  const walk = (item: unknown, underSecret: boolean) => {
    if (typeof item === 'string') {
      if (underSecret && item.length >= 3) found.add(item);
      for (const password of dsnPasswords(item)) if (password.length >= 3) found.add(password);
      return;
    }
    if (typeof item === 'number' && underSecret) found.add(String(item));
    if (Array.isArray(item)) for (const child of item) walk(child, underSecret);
    else if (typeof item === 'object' && item !== null) {
      for (const [key, child] of Object.entries(item)) walk(child, underSecret || isSecretName(key, secretNames));
    }
  };
  walk(value, false);
  return [...found].sort((a, b) => b.length - a.length);
}

/** Replace every occurrence of the given secrets (and DSN passwords) in a message with `***`. */
export function scrubSecrets(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const secret of secrets) out = out.split(secret).join('***');
  return redact(out);
}
