import { describe, expect, it } from 'vitest';
import { NanosyncError } from '../../src/errors.js';
import { createLogger, describeError, errorFields } from '../../src/log/logger.js';

function capture(options: Parameters<typeof createLogger>[0] = {}) {
  const lines: string[] = [];
  const logger = createLogger({ ...options, write: (line) => lines.push(line) });
  return { logger, lines };
}

describe('createLogger', () => {
  it('writes level tag, message and key=value fields', () => {
    const { logger, lines } = capture();
    logger.info('pipeline resuming', { name: 'orders-pipeline', lsn: '0/3A1B2C4D' });
    logger.warn('retained wal', { bytes: 12n, ratio: 0.5, ok: false, none: null, skipped: undefined });
    logger.error('failed');
    expect(lines).toEqual([
      'INF pipeline resuming name=orders-pipeline lsn=0/3A1B2C4D',
      'WRN retained wal bytes=12 ratio=0.5 ok=false none=null',
      'ERR failed',
    ]);
  });

  it('quotes values with spaces, quotes or equals signs, and empty values', () => {
    const { logger, lines } = capture();
    logger.info('x', { a: 'two words', b: 'say "hi"', c: 'k=v', d: '', e: 'line\nbreak' });
    expect(lines).toEqual(['INF x a="two words" b="say \\"hi\\"" c="k=v" d="" e="line\\nbreak"']);
  });

  it('filters below the configured level', () => {
    const { logger, lines } = capture({ level: 'warn' });
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    expect(lines).toEqual(['WRN w']);
    const verbose = capture({ level: 'debug' });
    verbose.logger.debug('d', { n: 1 });
    expect(verbose.lines).toEqual(['DBG d n=1']);
  });

  it('prefixes a timestamp when asked', () => {
    const { logger, lines } = capture({ timestamps: true, now: () => new Date('2024-05-01T10:00:00.123Z') });
    logger.info('hello');
    expect(lines).toEqual(['2024-05-01T10:00:00.123Z INF hello']);
  });

  it('carries bound fields into children, after the call fields', () => {
    const { logger, lines } = capture({ fields: { server: 's1' } });
    logger.child({ pipeline: 'orders' }).info('cdc streaming', { lsn: '0/1' });
    expect(lines).toEqual(['INF cdc streaming lsn=0/1 pipeline=orders server=s1']);
  });

  it('redacts passwords in messages, field values and secret-named fields', () => {
    const { logger, lines } = capture({ fields: { dsn: 'postgres://app:hunter2@db:5432/shop' } });
    logger.error('cannot connect to postgres://app:hunter2@db/shop password=hunter2', {
      cause: 'connect failed: password=hunter2 host=db',
      password: 'hunter2',
      sasl_token: 'abc',
    });
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line).not.toContain('hunter2');
    expect(line).not.toContain('abc');
    expect(line).toContain('postgres://app:***@db/shop');
    expect(line).toContain('password=***');
    expect(line).toContain('sasl_token=***');
    expect(line).toContain('dsn=postgres://app:***@db:5432/shop');
  });

  it('redacts prefixed password keys, JSON pairs and DSN passwords containing @', () => {
    const { logger, lines } = capture();
    logger.error('connect failed', {
      detail: 'host=db user=app sslpassword=hunter2a ssl_key_password=hunter2b',
      json: '{"password":"hunter2c","user":"app"}',
      url: 'postgres://app:hun@ter2d@db/shop',
    });
    const line = lines[0]!;
    for (const secret of ['hunter2a', 'hunter2b', 'hunter2c', 'ter2d']) expect(line).not.toContain(secret);
    expect(line).toContain('user=app');
    expect(line).toContain('@db/shop');
  });

  it('describes errors with their code and cause, redacted', () => {
    const err = new NanosyncError('NS_P4001', 'cannot reach postgres://u:pw1@h/db', {
      cause: new Error('ECONNREFUSED'),
    });
    expect(describeError(err)).toBe('[NS_P4001] cannot reach postgres://u:***@h/db: ECONNREFUSED');
    expect(errorFields(err)).toEqual({
      error: '[NS_P4001] cannot reach postgres://u:***@h/db: ECONNREFUSED',
      code: 'NS_P4001',
    });
  });
});
