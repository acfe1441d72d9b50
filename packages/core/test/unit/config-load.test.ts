// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${env:…}` is the config syntax under test
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatTableName, parseTableName } from '../../src/index.js';
import { ConfigError, loadConfigFile, parseConfig, parseSchedule, resolveWorkerCount } from '../../src/host.js';
import { defaultSnapshotConcurrency } from '../../src/config/read-pipelines.js';
import { baseConfig, yaml } from './config-fixtures.js';

const specExample = yaml`
  connections:
    - name: prod-postgres
      type: postgres
      dsn: "postgres://nanosync:\${env:PG_PASSWORD}@db.prod.internal:5432/mydb?sslmode=require"
    - name: prod-bigquery
      type: bigquery
      properties:
        project_id: my-project
        dataset_id: replication
        credentials_file: /etc/nanosync/bq-sa.json
  pipelines:
    - name: orders-pipeline
      replication_type: cdc_backfill
      source:
        connection: prod-postgres
        tables:
          - public.orders
          - public.order_items
      sink:
        connection: prod-bigquery
        properties:
          table_id: orders
`;

describe('config: loading', () => {
  it('reads connections and pipelines, resolving ${env:…} only in the validated config', () => {
    const { config } = parseConfig(specExample, { env: { PG_PASSWORD: 'pw-from-env' } });
    expect(config.connections.map((c) => [c.name, c.type])).toEqual([
      ['prod-postgres', 'postgres'],
      ['prod-bigquery', 'bigquery'],
    ]);
    expect(config.connections[0]!.dsn).toBe(
      'postgres://nanosync:pw-from-env@db.prod.internal:5432/mydb?sslmode=require',
    );
    expect(config.connections[1]!.properties).toEqual({
      project_id: 'my-project',
      dataset_id: 'replication',
      credentials_file: '/etc/nanosync/bq-sa.json',
    });
    const pipeline = config.pipelines[0]!;
    expect(pipeline.source).toEqual({
      connection: 'prod-postgres',
      tables: ['public.orders', 'public.order_items'],
      tableRefs: [
        { schema: 'public', name: 'orders' },
        { schema: 'public', name: 'order_items' },
      ],
      properties: {},
    });
    expect(pipeline.sinks).toEqual([
      {
        name: '0:prod-bigquery',
        connection: 'prod-bigquery',
        properties: { table_id: 'orders' },
        target_mappings: [],
        on_error: 'fail',
        max_spill_bytes: 4 * 1024 ** 3,
      },
    ]);
    expect(config.connections[0]!.written!.dsn).toContain('${env:PG_PASSWORD}');
  });

  it('fills in defaults: cdc_backfill, snapshot concurrency one per core within 2–4, 100000 rows per partition', () => {
    const { config } = parseConfig(baseConfig, { env: {} });
    const pipeline = config.pipelines[0]!;
    expect(pipeline.replication_type).toBe('cdc_backfill');
    expect(pipeline.snapshot).toEqual({
      concurrency: Math.min(4, Math.max(2, availableParallelism())),
      target_rows_per_partition: 100_000,
    });
    expect(pipeline.query).toBeUndefined();
  });

  it('snapshot concurrency defaults to one reader per core, at least 2 and at most 4', () => {
    expect([1, 2, 3, 4, 16].map((cores) => defaultSnapshotConcurrency(cores))).toEqual([2, 2, 3, 4, 4]);
  });

  it('takes snapshot options as written', () => {
    const text = baseConfig.replace(
      '    sink:\n',
      '    snapshot:\n      concurrency: 8\n      target_rows_per_partition: 5000\n    sink:\n',
    );
    const { config } = parseConfig(text, { env: {} });
    expect(config.pipelines[0]!.snapshot).toEqual({ concurrency: 8, target_rows_per_partition: 5000 });
  });

  it('reads workers: auto, a count, 0, a count from an env reference; absent means 0 (inline)', () => {
    const workersOf = (value: string | undefined, env: NodeJS.ProcessEnv = {}) => {
      const text =
        value === undefined ? baseConfig : baseConfig.replace('    sink:\n', `    workers: ${value}\n    sink:\n`);
      return parseConfig(text, { env }).config.pipelines[0]!.workers;
    };
    expect(workersOf(undefined)).toBeUndefined();
    expect(resolveWorkerCount(workersOf(undefined))).toBe(0);
    expect(workersOf('auto')).toBe('auto');
    expect(workersOf('3')).toBe(3);
    expect(workersOf('0')).toBe(0);
    expect(workersOf('"${env:NS_WORKERS}"', { NS_WORKERS: '2' })).toBe(2);
  });

  it('resolves workers to threads: auto is one less than the CPUs (none on one CPU), a count as written', () => {
    expect(resolveWorkerCount('auto', 1)).toBe(0);
    expect(resolveWorkerCount('auto', 2)).toBe(1);
    expect(resolveWorkerCount('auto', 8)).toBe(7);
    expect(resolveWorkerCount(3, 2)).toBe(3);
    expect(resolveWorkerCount(0, 8)).toBe(0);
    expect(resolveWorkerCount(undefined, 8)).toBe(0);
  });

  it('uses sinks and ignores sink when both are present, with a warning naming the pipeline', () => {
    const text = yaml`
      connections:
        - { name: db, type: testdb }
        - { name: q1, type: testq }
        - { name: q2, type: testq }
      pipelines:
        - name: fan-out
          source: { connection: db, tables: [public.orders] }
          sink: { connection: q1, properties: { topic: ignored } }
          sinks:
            - connection: q1
              properties: { topic: a }
            - connection: q2
    `;
    const { config, warnings } = parseConfig(text, { env: {}, file: 'fan.yaml' });
    expect(config.pipelines[0]!.sinks.map((s) => [s.name, s.connection, s.properties])).toEqual([
      ['0:q1', 'q1', { topic: 'a' }],
      ['1:q2', 'q2', {}],
    ]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^fan\.yaml:8:\d+ pipelines\[0\]\.sink: .*"fan-out".*sink is ignored/);
  });

  it('warns about connections no pipeline uses', () => {
    const text = baseConfig.replace('pipelines:', '  - name: spare\n    type: testq\npipelines:');
    const { warnings } = parseConfig(text, { env: {} });
    expect(warnings.some((w) => w.includes('connections[2]') && w.includes('"spare" is not used'))).toBe(true);
  });

  it('reads query pipelines with their SQL and schedule', () => {
    const text = yaml`
      connections:
        - { name: db, type: testdb }
        - { name: q, type: testq }
      pipelines:
        - name: nightly
          replication_type: query
          source: { connection: db }
          query:
            sql: select * from public.orders where created_at > now() - interval '1 day'
            schedule: 1d
          sink: { connection: q }
    `;
    const { config } = parseConfig(text, { env: {} });
    expect(config.pipelines[0]!.replication_type).toBe('query');
    expect(config.pipelines[0]!.query).toEqual({
      sql: "select * from public.orders where created_at > now() - interval '1 day'",
      interval_seconds: 86_400,
    });
  });

  it.each([
    ['30s', 30],
    ['5m', 300],
    ['1h', 3600],
    ['1d', 86_400],
    ['90m', 5400],
  ])('schedule %s is %i seconds', (text, seconds) => {
    expect(parseSchedule(text)).toBe(seconds);
  });

  it.each(['5 minutes', '0s', '1w', '', '10'])('schedule "%s" is refused', (text) => {
    expect(typeof parseSchedule(text)).toBe('string');
  });

  it('normalises target mappings to the canonical table spelling', () => {
    const text = baseConfig.replace(
      '        topic: orders-cdc\n',
      '        topic: orders-cdc\n      target_mappings:\n        - table: \'"public"."orders"\'\n          columns: [id, total]\n          filter:\n            - { column: status, op: in, value: [paid, shipped] }\n            - { column: deleted_at, op: is_null }\n',
    );
    const { config } = parseConfig(text, { env: {} });
    expect(config.pipelines[0]!.sinks[0]!.target_mappings).toEqual([
      {
        table: 'public.orders',
        tableRef: { schema: 'public', name: 'orders' },
        columns: ['id', 'total'],
        filter: [
          { column: 'status', op: 'in', value: ['paid', 'shipped'] },
          { column: 'deleted_at', op: 'is_null' },
        ],
      },
    ]);
  });

  it('loads a file and resolves connectors from its folder', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ns-config-'));
    try {
      const file = join(dir, 'pipelines.yaml');
      await writeFile(file, baseConfig);
      const { config } = await loadConfigFile(file, { env: {} });
      expect(config.configDir).toBe(dir);
      expect(config.file).toBe(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says which file is missing', async () => {
    const file = join(tmpdir(), 'ns-does-not-exist', 'pipelines.yaml');
    const error = await loadConfigFile(file).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(file);
    expect((error as ConfigError).message).toContain('does not exist');
  });
});

describe('config: table names', () => {
  it.each([
    ['public.orders', 'public', 'orders', 'public.orders'],
    ['public.Orders', 'public', 'Orders', 'public.Orders'],
    ['"public"."orders"', 'public', 'orders', 'public.orders'],
    ['public."order.items"', 'public', 'order.items', 'public."order.items"'],
    ['public."Mixed.Case"', 'public', 'Mixed.Case', 'public."Mixed.Case"'],
    ['public."say ""hi"""', 'public', 'say "hi"', 'public."say ""hi"""'],
    ['public."with space"', 'public', 'with space', 'public."with space"'],
    ['"my.schema".t', 'my.schema', 't', '"my.schema".t'],
    ['dbo.Commandes_été', 'dbo', 'Commandes_été', 'dbo.Commandes_été'],
    ['public."x; drop table y"', 'public', 'x; drop table y', 'public."x; drop table y"'],
  ])('%s → schema %s, table %s (canonical %s)', (text, schema, name, canonical) => {
    const parsed = parseTableName(text);
    expect(parsed).toEqual({ ok: true, ref: { schema, name } });
    expect(formatTableName({ schema, name })).toBe(canonical);
    expect(parseTableName(canonical)).toEqual(parsed);
  });

  it.each([
    ['orders', /no schema/],
    ['a.b.c', /3 parts/],
    ['public."unterminated', /unterminated/],
    ['public.', /empty name part/],
    ['public.""', /empty quoted name/],
    ['public.order items', /wrap it in double quotes/],
    ['public."a"b', /unexpected text/],
  ])('%s is refused', (text, message) => {
    const parsed = parseTableName(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toMatch(message);
  });
});
