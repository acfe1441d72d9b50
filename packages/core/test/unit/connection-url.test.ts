import { describe, expect, it } from 'vitest';
import { ConnectionUrlError, hasUrlScheme, parseConnectionUrl } from '../../src/index.js';

describe('parseConnectionUrl: the URL form of a DSN, shared by connectors', () => {
  it('reads every part, percent-decoded, with the query in the order written', () => {
    expect(
      parseConnectionUrl('Postgres://app%40corp:p%2Fw+d@db.internal:6432/my%20db?sslmode=verify-full&b=x%26y', [
        'postgres',
      ]),
    ).toEqual({
      scheme: 'postgres',
      user: 'app@corp',
      password: 'p/w d',
      host: 'db.internal',
      port: '6432',
      database: 'my db',
      params: [
        ['sslmode', 'verify-full'],
        ['b', 'x&y'],
      ],
    });
  });

  it('leaves out what is not written, and reads a bracketed IPv6 host', () => {
    expect(parseConnectionUrl('mssql://[::1]:1433', ['sqlserver', 'mssql'])).toEqual({
      scheme: 'mssql',
      host: '::1',
      port: '1433',
      params: [],
    });
    expect(parseConnectionUrl('sqlserver://', ['sqlserver'])).toEqual({ scheme: 'sqlserver', params: [] });
    expect(parseConnectionUrl('sqlserver://sa@h', ['sqlserver'])).toMatchObject({ user: 'sa', host: 'h' });
    expect(parseConnectionUrl('sqlserver://sa@h', ['sqlserver']).password).toBeUndefined();
  });

  it('refuses another scheme, several hosts, a key without a value and bad escapes, never echoing the password', () => {
    const message = (text: string) => {
      try {
        parseConnectionUrl(text, ['postgres', 'postgresql']);
      } catch (err) {
        expect(err).toBeInstanceOf(ConnectionUrlError);
        return (err as Error).message;
      }
      throw new Error(`accepted ${text}`);
    };
    expect(message('mysql://u:Secret1@h/db')).toBe('the URL scheme must be postgres:// or postgresql://');
    expect(message('host=h')).toBe('expected a URL starting with postgres:// or postgresql://');
    expect(message('postgres://u:Secret2@h1,h2/db')).toBe('several hosts in one DSN are not supported');
    expect(message('postgres://u:Secret3@h/db?sslmode')).toBe('parameter "sslmode" has no value');
    expect(message('postgres://u:%E0%A4%A@h/db')).toBe('invalid percent-encoding');
  });

  it('tells a URL from a keyword DSN', () => {
    expect(hasUrlScheme('  postgresql://h')).toBe(true);
    expect(hasUrlScheme("host=h password='a://b'")).toBe(false);
  });
});
