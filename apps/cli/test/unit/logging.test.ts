import { describe, expect, it } from 'vitest';
import { serverLogger } from '../../src/server/logger.js';

function capture(env: Record<string, string> = {}) {
  const lines: string[] = [];
  return { lines, io: { out: () => undefined, err: (line: string) => lines.push(line), env, cwd: '/' } };
}

describe('server logs', () => {
  it('text: a timestamp, the level tag, the message and fields, one line per event', () => {
    const { lines, io } = capture();
    serverLogger(undefined, io, 'serve').info('pipeline created', { name: 'orders' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INF pipeline created name=orders$/);
  });

  it('json (--log-format or NANOSYNC_LOG_FORMAT): one object per line, secrets redacted, child fields kept', () => {
    const { lines, io } = capture({ NANOSYNC_LOG_FORMAT: 'json' });
    const logger = serverLogger('debug', io, 'serve').child({ pipeline: 'orders' });
    logger.warn('cannot connect to postgres://app:hunter2@db:5432/shop', {
      password: 'hunter2',
      attempt: 3,
      lsn: 10n,
    });
    logger.debug('details');
    expect(lines).toHaveLength(2);
    const record = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(record).toMatchObject({ level: 'warn', pipeline: 'orders', password: '***', attempt: 3, lsn: '10' });
    expect(typeof record.time).toBe('string');
    expect(Number.isNaN(Date.parse(record.time as string))).toBe(false);
    expect(lines[0]).not.toContain('hunter2');
    expect(JSON.parse(lines[1]!)).toMatchObject({ level: 'debug', msg: 'details' });

    const flag = capture();
    serverLogger('info', flag.io, 'serve', 'json').debug('hidden below info');
    expect(flag.lines).toHaveLength(0);
    expect(() => serverLogger('info', flag.io, 'serve', 'xml')).toThrow(/--log-format must be text or json/);
  });
});
