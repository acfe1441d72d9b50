// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${env:…}` is the config syntax under test
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/index.js';
import { type ConfigError, parseConfig, substituteEnv } from '../../src/host.js';
import { baseConfig } from './config-fixtures.js';

const withDsn = (dsn: string) => baseConfig.replace('dsn: testdb://app@db.internal/shop', `dsn: ${dsn}`);

function rejected(text: string, env: NodeJS.ProcessEnv): ConfigError {
  try {
    parseConfig(text, { env, file: 'pipelines.yaml' });
  } catch (err) {
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('config: ${env:VAR} substitution', () => {
  it('substitutes a set variable inside a DSN and keeps the reference in the node as written', () => {
    const { config } = parseConfig(withDsn('"testdb://app:${env:DB_PASSWORD}@db.internal/shop?sslmode=require"'), {
      env: { DB_PASSWORD: 'p@ss:w/rd' },
    });
    expect(config.connections[0]!.dsn).toBe('testdb://app:p@ss:w/rd@db.internal/shop?sslmode=require');
    expect(config.connections[0]!.written!.dsn).toBe(
      'testdb://app:${env:DB_PASSWORD}@db.internal/shop?sslmode=require',
    );
  });

  it('substitutes several references in one scalar', () => {
    const { config } = parseConfig(withDsn('"testdb://${env:DB_USER}:${env:DB_PASSWORD}@${env:DB_HOST}/shop"'), {
      env: { DB_USER: 'u', DB_PASSWORD: 'p', DB_HOST: 'h' },
    });
    expect(config.connections[0]!.dsn).toBe('testdb://u:p@h/shop');
  });

  it('reports an unset variable by name and YAML path, never as an empty string', () => {
    const error = rejected(withDsn('"testdb://app:${env:DB_PASSWORD}@db.internal/shop"'), {});
    expect(error.code).toBe(ErrorCode.ConfigMissingEnv);
    expect(error.issues).toEqual([
      {
        path: 'connections[0].dsn',
        message: 'environment variable DB_PASSWORD is not set',
        line: 4,
        column: 10,
        code: ErrorCode.ConfigMissingEnv,
      },
    ]);
    expect(error.message).toContain(
      'pipelines.yaml:4:10 connections[0].dsn: environment variable DB_PASSWORD is not set',
    );
  });

  it('reports every unset variable, each at its own path', () => {
    const text = withDsn('"testdb://${env:DB_USER}:${env:DB_PASSWORD}@db/shop"').replace(
      'topic: orders-cdc',
      'topic: ${env:TOPIC}',
    );
    const error = rejected(text, { DB_USER: 'u' });
    expect(error.issues.map((i) => [i.path, i.message])).toEqual([
      ['connections[0].dsn', 'environment variable DB_PASSWORD is not set'],
      ['pipelines[0].sink.properties.topic', 'environment variable TOPIC is not set'],
    ]);
  });

  it('refuses a variable that is set but empty', () => {
    const error = rejected(baseConfig.replace('topic: orders-cdc', 'topic: ${env:TOPIC}'), { TOPIC: '' });
    expect(error.issues[0]).toMatchObject({
      path: 'pipelines[0].sink.properties.topic',
      message: 'environment variable TOPIC is set but empty',
    });
  });

  it('treats $${env:X} as the literal text ${env:X}', () => {
    const { config } = parseConfig(
      baseConfig.replace('topic: orders-cdc', () => 'topic: "cost-$${env:TOPIC}-and-${env:TOPIC}"'),
      {
        env: { TOPIC: 'real' },
      },
    );
    expect(config.pipelines[0]!.sinks[0]!.properties.topic).toBe('cost-${env:TOPIC}-and-real');
  });

  it('substitutes at the scalar level: a value that looks like YAML stays one string', () => {
    const sneaky = 'x\n    topic_prefix: injected\n  - evil: true';
    const { config } = parseConfig(baseConfig.replace('topic: orders-cdc', 'topic: ${env:TOPIC}'), {
      env: { TOPIC: sneaky },
    });
    expect(config.pipelines[0]!.sinks[0]!.properties).toEqual({ topic: sneaky });
  });

  it('keeps the substituted value a string (no re-typing as a number or boolean)', () => {
    const { config } = parseConfig(
      baseConfig.replace('topic: orders-cdc', 'topic: ${env:TOPIC}\n        flag: ${env:FLAG}'),
      {
        env: { TOPIC: '42', FLAG: 'true' },
      },
    );
    expect(config.pipelines[0]!.sinks[0]!.properties).toEqual({ topic: '42', flag: 'true' });
  });

  it('accepts a substituted whole number for snapshot options', () => {
    const text = baseConfig.replace('    sink:\n', '    snapshot: { concurrency: "${env:WORKERS}" }\n    sink:\n');
    const { config } = parseConfig(text, { env: { WORKERS: '6' } });
    expect(config.pipelines[0]!.snapshot.concurrency).toBe(6);
  });

  it('does not substitute inside keys or non-string scalars', () => {
    const { config } = parseConfig(baseConfig.replace('topic: orders-cdc', '"${env:K}": 5'), { env: { K: 'x' } });
    expect(config.pipelines[0]!.sinks[0]!.properties).toEqual({ '${env:K}': 5 });
  });

  it.each([
    ['${env:}', /not a valid environment variable reference/],
    ['${env:1ABC}', /not a valid environment variable reference/],
    ['${env:ABC', /not closed/],
  ])('refuses the malformed reference %s', (reference, message) => {
    const result = substituteEnv(`x${reference}`, { ABC: 'v' });
    expect(result.problems.join(' ')).toMatch(message);
  });

  it('leaves other ${…} text alone', () => {
    expect(substituteEnv('${HOME} and $HOME', { HOME: '/root' })).toEqual({
      value: '${HOME} and $HOME',
      problems: [],
      variables: [],
    });
  });
});

describe('deferred ${env:…} (apply: the server resolves them)', () => {
  it('accepts a variable this process lacks and keeps its reference, in the config and as written', () => {
    const text = withDsn('"testdb://u:${env:SERVER_ONLY_PASSWORD}@db/shop"');
    expect(() => parseConfig(text, { env: {} })).toThrow(/SERVER_ONLY_PASSWORD is not set/);
    const loaded = parseConfig(text, { env: {}, deferEnv: true });
    expect(loaded.config.connections[0]?.dsn).toBe('testdb://u:${env:SERVER_ONLY_PASSWORD}@db/shop');
    expect(loaded.config.connections[0]!.written!.dsn).toContain('${env:SERVER_ONLY_PASSWORD}');
  });

  it('still refuses a malformed reference', () => {
    expect(() => parseConfig(withDsn('"testdb://u:${env:NOT-A-NAME}@db/shop"'), { env: {}, deferEnv: true })).toThrow(
      /not a valid environment variable reference/,
    );
  });
});
