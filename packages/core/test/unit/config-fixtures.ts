import { z } from 'zod';
import { defineSink, defineSource } from '../../src/index.js';
import { createConnectorResolver } from '../../src/host.js';

/**
 * Connector definitions written for the config tests: real definitions with zod schemas,
 * resolved through the real resolver's `builtins` map. They are never started.
 */
export const testSourceDefinition = defineSource({
  type: 'testdb',
  configSchema: z
    .object({
      // Echoes the input on purpose: core must scrub secrets from connector messages.
      dsn: z.string().refine(
        (dsn) => dsn.startsWith('testdb://'),
        (dsn) => ({ message: `dsn must start with testdb://, got ${dsn}` }),
      ),
      slot_prefix: z.string().optional(),
      tls_key_passphrase: z.string().optional(),
      password: z.string().optional(),
    })
    .strict(),
  secretProperties: ['tls_key_passphrase'],
  create() {
    throw new Error('test connectors are not started in unit tests');
  },
});

export const testSinkDefinition = defineSink({
  type: 'testq',
  configSchema: z
    .object({
      brokers: z.string(),
      topic: z.string().optional(),
      topic_prefix: z.string().optional(),
      sasl_username: z.string().optional(),
      sasl_password: z.string().optional(),
      client_cert_passphrase: z.string().optional(),
      compression: z.enum(['none', 'gzip', 'snappy']).optional(),
      num_partitions: z.number().int().optional(),
    })
    .strict()
    .superRefine((value, ctx) => {
      if (value.topic !== undefined && value.topic_prefix !== undefined) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['topic'],
          message: 'topic and topic_prefix are mutually exclusive',
        });
      }
    }),
  secretProperties: ['client_cert_passphrase'],
  create() {
    throw new Error('test connectors are not started in unit tests');
  },
});

export function testResolver() {
  return createConnectorResolver({
    builtins: {
      '@nanosync/source-testdb': async () => ({ default: testSourceDefinition }),
      '@nanosync/sink-testq': async () => ({ default: testSinkDefinition }),
    },
    fallbackDirs: [],
  });
}

/** Indent-safe YAML literal: strips the common leading indentation of a template. */
export function yaml(strings: TemplateStringsArray, ...values: unknown[]): string {
  const text = strings.reduce((acc, part, i) => acc + part + (i < values.length ? String(values[i]) : ''), '');
  const lines = text.replace(/^\n/, '').split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim() !== '').map((l) => l.match(/^ */)![0].length));
  return lines.map((l) => l.slice(indent)).join('\n');
}

/** A valid config most tests start from: one testdb source, one testq sink. */
export const baseConfig = yaml`
  connections:
    - name: db
      type: testdb
      dsn: testdb://app@db.internal/shop
    - name: queue
      type: testq
      properties:
        brokers: q1:9092
  pipelines:
    - name: orders
      source:
        connection: db
        tables: [public.orders]
      sink:
        connection: queue
        properties:
          topic: orders-cdc
`;
