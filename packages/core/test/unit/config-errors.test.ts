// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${env:…}` is the config syntax under test
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/index.js';
import { ConfigError, type ConfigIssue, parseConfig } from '../../src/host.js';
import { baseConfig, yaml } from './config-fixtures.js';

function issuesOf(text: string, env: NodeJS.ProcessEnv = {}): ConfigIssue[] {
  try {
    parseConfig(text, { env, file: 'pipelines.yaml' });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected the config to be rejected');
}

/** A config with one pipeline whose body is `pipeline` (indented under `- `). */
function withPipeline(pipeline: string): string {
  return yaml`
    connections:
      - name: db
        type: testdb
      - name: queue
        type: testq
    pipelines:
      - ${pipeline.trim().split('\n').join('\n        ')}
  `;
}

const source = 'source: { connection: db, tables: [public.orders] }';
const sink = 'sink: { connection: queue }';

interface Case {
  name: string;
  text: string;
  path: string;
  message: RegExp;
  line?: number;
  code?: ErrorCode;
  env?: NodeJS.ProcessEnv;
}

const cases: Case[] = [
  {
    name: 'unknown top-level key, with a suggestion',
    text: `${baseConfig}pipeline: []\n`,
    path: 'pipeline',
    message: /unknown key "pipeline".*did you mean "pipelines"/,
    line: 18,
    code: ErrorCode.ConfigUnknownKey,
  },
  {
    name: 'unknown key in a connection',
    text: baseConfig.replace('    dsn: testdb', '    dns: testdb'),
    path: 'connections[0].dns',
    message: /unknown key "dns".*did you mean "dsn"/,
    line: 4,
    code: ErrorCode.ConfigUnknownKey,
  },
  {
    name: 'unknown key in a sink',
    text: withPipeline(`name: p\n${source}\nsink:\n  connection: queue\n  propertes: { topic: t }`),
    path: 'pipelines[0].sink.propertes',
    message: /did you mean "properties"/,
    line: 11,
  },
  {
    name: 'unknown key in a pipeline',
    text: withPipeline(`name: p\n${source}\n${sink}\nreplication: cdc`),
    path: 'pipelines[0].replication',
    message: /did you mean "replication_type"/,
  },
  {
    name: 'unknown key in snapshot',
    text: withPipeline(`name: p\n${source}\n${sink}\nsnapshot: { workers: 3 }`),
    path: 'pipelines[0].snapshot.workers',
    message: /unknown key "workers"/,
  },
  {
    name: 'connection without type',
    text: yaml`
      connections:
        - name: db
      pipelines: []
    `,
    path: 'connections[0].type',
    message: /type is required/,
    line: 2,
  },
  {
    name: 'connection type in capitals',
    text: baseConfig.replace('type: testdb', 'type: TestDB'),
    path: 'connections[0].type',
    message: /lowercase.*did you mean "testdb"/,
  },
  {
    name: 'duplicate connection names',
    text: baseConfig.replace('name: queue', 'name: db'),
    path: 'connections[1].name',
    message: /"db" is used more than once/,
  },
  {
    name: 'connection properties that are not a mapping',
    text: baseConfig.replace('    properties:\n      brokers: q1:9092', '    properties: [brokers]'),
    path: 'connections[1].properties',
    message: /must be a mapping, found a list/,
  },
  {
    name: 'missing pipelines',
    text: 'connections: []\n',
    path: 'pipelines',
    message: /pipelines is required/,
  },
  {
    name: 'empty pipelines',
    text: 'connections: []\npipelines: []\n',
    path: 'pipelines',
    message: /pipelines is empty/,
  },
  { name: 'empty file', text: '# nothing\n', path: '', message: /config is empty/ },
  {
    name: 'pipeline name with a space',
    text: withPipeline(`name: orders pipeline\n${source}\n${sink}`),
    path: 'pipelines[0].name',
    message: /must be 1-40 letters, digits/,
    line: 7,
  },
  {
    name: 'pipeline name longer than 40 characters',
    text: withPipeline(`name: ${'a'.repeat(41)}\n${source}\n${sink}`),
    path: 'pipelines[0].name',
    message: /1-40/,
  },
  {
    name: 'pipeline name that YAML reads as a number',
    text: withPipeline(`name: 2024\n${source}\n${sink}`),
    path: 'pipelines[0].name',
    message: /must be a string, found a number; put it in quotes/,
  },
  {
    name: 'pipeline name missing',
    text: withPipeline(`${source}\n${sink}`),
    path: 'pipelines[0].name',
    message: /name is required/,
  },
  {
    name: 'duplicate pipeline names',
    text: `${withPipeline(`name: p\n${source}\n${sink}`)}  - name: p\n    ${source}\n    ${sink}\n`,
    path: 'pipelines[1].name',
    message: /"p" is used more than once/,
  },
  {
    name: 'pipeline names that would share a replication slot',
    text: `${withPipeline(`name: Orders-A\n${source}\n${sink}`)}  - name: orders_a\n    ${source}\n    ${sink}\n`,
    path: 'pipelines[1].name',
    message: /clashes with "Orders-A".*slot/,
  },
  {
    name: 'unknown replication_type',
    text: withPipeline(`name: p\nreplication_type: cdc_backfil\n${source}\n${sink}`),
    path: 'pipelines[0].replication_type',
    message: /must be one of cdc_backfill, cdc, snapshot, query.*did you mean "cdc_backfill"/,
  },
  {
    name: 'missing source',
    text: withPipeline(`name: p\n${sink}`),
    path: 'pipelines[0].source',
    message: /source is required/,
  },
  {
    name: 'source connection that does not exist',
    text: withPipeline(`name: p\nsource: { connection: dbb, tables: [public.orders] }\n${sink}`),
    path: 'pipelines[0].source.connection',
    message: /"dbb" is not defined.*did you mean "db"/,
  },
  {
    name: 'missing tables',
    text: withPipeline(`name: p\nsource: { connection: db }\n${sink}`),
    path: 'pipelines[0].source.tables',
    message: /tables is required/,
  },
  {
    name: 'empty table list',
    text: withPipeline(`name: p\nsource: { connection: db, tables: [] }\n${sink}`),
    path: 'pipelines[0].source.tables',
    message: /tables is empty/,
  },
  {
    name: 'table without schema',
    text: withPipeline(`name: p\nsource: { connection: db, tables: [public.a, orders] }\n${sink}`),
    path: 'pipelines[0].source.tables[1]',
    message: /no schema.*schema\.table/,
  },
  {
    name: 'table name with an unquoted dot',
    text: withPipeline(`name: p\nsource: { connection: db, tables: [public.order.items] }\n${sink}`),
    path: 'pipelines[0].source.tables[0]',
    message: /3 parts.*quote/,
  },
  {
    name: 'table listed twice',
    text: withPipeline(`name: p\nsource: { connection: db, tables: [public.a, '"public"."a"'] }\n${sink}`),
    path: 'pipelines[0].source.tables[1]',
    message: /listed more than once/,
  },
  { name: 'no sink at all', text: withPipeline(`name: p\n${source}`), path: 'pipelines[0]', message: /needs sink/ },
  {
    name: 'sink connection that does not exist',
    text: withPipeline(`name: p\n${source}\nsink: { connection: kafak }`),
    path: 'pipelines[0].sink.connection',
    message: /"kafak" is not defined/,
  },
  {
    name: 'empty sinks',
    text: withPipeline(`name: p\n${source}\nsinks: []`),
    path: 'pipelines[0].sinks',
    message: /sinks is empty/,
  },
  {
    name: 'sink without connection',
    text: withPipeline(`name: p\n${source}\nsinks:\n  - properties: { topic: t }`),
    path: 'pipelines[0].sinks[0].connection',
    message: /connection is required/,
  },
  {
    name: 'snapshot concurrency of zero',
    text: withPipeline(`name: p\n${source}\n${sink}\nsnapshot: { concurrency: 0 }`),
    path: 'pipelines[0].snapshot.concurrency',
    message: /whole number from 1/,
  },
  {
    name: 'snapshot rows per partition that is not a number',
    text: withPipeline(`name: p\n${source}\n${sink}\nsnapshot: { target_rows_per_partition: lots }`),
    path: 'pipelines[0].snapshot.target_rows_per_partition',
    message: /whole number/,
  },
  {
    name: 'query pipeline without query',
    text: withPipeline(`name: p\nreplication_type: query\nsource: { connection: db }\n${sink}`),
    path: 'pipelines[0].query',
    message: /needs query: \{ sql, schedule \}/,
  },
  {
    name: 'query pipeline without schedule',
    text: withPipeline(
      `name: p\nreplication_type: query\nsource: { connection: db }\nquery: { sql: select 1 }\n${sink}`,
    ),
    path: 'pipelines[0].query.schedule',
    message: /schedule is required/,
  },
  {
    name: 'query schedule in words',
    text: withPipeline(
      `name: p\nreplication_type: query\nsource: { connection: db }\nquery: { sql: select 1, schedule: every 5 minutes }\n${sink}`,
    ),
    path: 'pipelines[0].query.schedule',
    message: /"30s", "5m".*found "every 5 minutes"/,
  },
  {
    name: 'query schedule as a bare number',
    text: withPipeline(
      `name: p\nreplication_type: query\nsource: { connection: db }\nquery: { sql: select 1, schedule: 30 }\n${sink}`,
    ),
    path: 'pipelines[0].query.schedule',
    message: /found the number 30/,
  },
  {
    name: 'query on a cdc pipeline',
    text: withPipeline(`name: p\nreplication_type: cdc\n${source}\nquery: { sql: select 1, schedule: 5m }\n${sink}`),
    path: 'pipelines[0].query',
    message: /only allowed when replication_type is query/,
  },
  {
    name: 'target mapping for a table the pipeline does not read',
    text: withPipeline(
      `name: p\n${source}\nsink:\n  connection: queue\n  target_mappings:\n    - table: public.ordres`,
    ),
    path: 'pipelines[0].sink.target_mappings[0].table',
    message: /not one of the pipeline's source tables.*did you mean "public.orders"/,
  },
  {
    name: 'target mapping with an empty column list',
    text: withPipeline(
      `name: p\n${source}\nsink:\n  connection: queue\n  target_mappings:\n    - { table: public.orders, columns: [] }`,
    ),
    path: 'pipelines[0].sink.target_mappings[0].columns',
    message: /non-empty list/,
  },
  {
    name: 'filter with an unknown op',
    text: withPipeline(
      `name: p\n${source}\nsink:\n  connection: queue\n  target_mappings:\n    - table: public.orders\n      filter: [{ column: id, op: greater, value: 1 }]`,
    ),
    path: 'pipelines[0].sink.target_mappings[0].filter[0].op',
    message: /op must be one of eq, ne/,
  },
  {
    name: 'filter "in" without a list',
    text: withPipeline(
      `name: p\n${source}\nsink:\n  connection: queue\n  target_mappings:\n    - table: public.orders\n      filter: [{ column: id, op: in, value: 1 }]`,
    ),
    path: 'pipelines[0].sink.target_mappings[0].filter[0].value',
    message: /needs a list value/,
  },
  {
    name: 'filter "is_null" with a value',
    text: withPipeline(
      `name: p\n${source}\nsink:\n  connection: queue\n  target_mappings:\n    - table: public.orders\n      filter: [{ column: id, op: is_null, value: 1 }]`,
    ),
    path: 'pipelines[0].sink.target_mappings[0].filter[0].value',
    message: /takes no value/,
  },
  {
    name: 'filter "eq" without a value',
    text: withPipeline(
      `name: p\n${source}\nsink:\n  connection: queue\n  target_mappings:\n    - table: public.orders\n      filter: [{ column: id, op: eq }]`,
    ),
    path: 'pipelines[0].sink.target_mappings[0].filter[0]',
    message: /needs a value/,
  },
  {
    name: 'unset environment variable',
    text: baseConfig.replace('testdb://app@db.internal/shop', 'testdb://app:${env:SHOP_DB_PASSWORD}@db.internal/shop'),
    path: 'connections[0].dsn',
    message: /environment variable SHOP_DB_PASSWORD is not set/,
    line: 4,
    code: ErrorCode.ConfigMissingEnv,
  },
  {
    name: 'environment reference in a name',
    text: baseConfig.replace('name: orders', 'name: ${env:PIPELINE}'),
    path: 'pipelines[0].name',
    message: /environment references are not allowed here/,
    env: { PIPELINE: 'orders' },
  },
  {
    name: 'YAML syntax error',
    text: 'connections:\n  - name: db\n    type: [testdb\npipelines: []\n',
    path: '',
    message: /YAML syntax/,
    code: ErrorCode.ConfigYaml,
  },
  {
    name: 'duplicate YAML key',
    text: baseConfig.replace('    type: testdb\n', '    type: testdb\n    type: testq\n'),
    path: '',
    message: /unique/,
    line: 4,
    code: ErrorCode.ConfigYaml,
  },
  {
    name: 'an unknown on_error policy, with a suggestion',
    text: withPipeline(`name: p\n${source}\nsink:\n  connection: queue\n  on_error: deadletter`),
    path: 'pipelines[0].sink.on_error',
    message: /on_error must be one of fail, dead_letter, skip, found "deadletter".*did you mean "dead_letter"/,
  },
  {
    name: 'a max_spill_bytes that is not a size',
    text: withPipeline(`name: p\n${source}\nsink:\n  connection: queue\n  max_spill_bytes: lots`),
    path: 'pipelines[0].sink.max_spill_bytes',
    message: /max_spill_bytes must be a number of bytes.*such as 512MB or 4GiB, found "lots"/,
  },
  {
    name: 'a snapshot.chunk_bytes below 1024 bytes',
    text: withPipeline(`name: p\n${source}\nsink:\n  connection: queue\nsnapshot:\n  chunk_bytes: 100B`),
    path: 'pipelines[0].snapshot.chunk_bytes',
    message: /chunk_bytes must be a number of bytes \(1024 or more\).*found "100B"/,
  },
  {
    name: 'workers that is neither auto nor a count',
    text: withPipeline(`name: orders\n${source}\n${sink}\nworkers: many`),
    path: 'pipelines[0].workers',
    message: /pipeline "orders": workers must be auto, 0 .*up to 64, found "many"/,
  },
  {
    name: 'workers misspelt auto',
    text: withPipeline(`name: orders\n${source}\n${sink}\nworkers: atuo`),
    path: 'pipelines[0].workers',
    message: /found "atuo" \(did you mean "auto"\?\)/,
  },
  {
    name: 'a negative workers',
    text: withPipeline(`name: orders\n${source}\n${sink}\nworkers: -1`),
    path: 'pipelines[0].workers',
    message: /pipeline "orders": workers must be .*found -1/,
  },
  {
    name: 'more workers than allowed',
    text: withPipeline(`name: orders\n${source}\n${sink}\nworkers: 65`),
    path: 'pipelines[0].workers',
    message: /workers must be .*up to 64, found 65/,
  },
];

describe('config: every problem is reported with its YAML path', () => {
  it.each(cases)('$name → $path', ({ text, path, message, line, code, env }) => {
    const issues = issuesOf(text, env);
    const issue = issues.find((i) => i.path === path && message.test(i.message));
    expect(issue, `no issue at ${path} matching ${message}; got ${JSON.stringify(issues, null, 1)}`).toBeDefined();
    if (line !== undefined) expect(issue!.line).toBe(line);
    if (code !== undefined) expect(issue!.code).toBe(code);
  });

  it('collects every issue instead of stopping at the first, and the message lists them all with the file name', () => {
    const text = yaml`
      connections:
        - name: db
          type: testdb
          colour: blue
      pipelines:
        - name: bad name
          source: { connection: nowhere, tables: [orders] }
          sink: { connection: db }
          snapshot: { concurrency: -1 }
    `;
    let error: ConfigError | undefined;
    try {
      parseConfig(text, { env: {}, file: 'pipelines.yaml' });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const paths = error!.issues.map((i) => i.path);
    expect(paths).toEqual([
      'connections[0].colour',
      'pipelines[0].name',
      'pipelines[0].source.connection',
      'pipelines[0].source.tables[0]',
      'pipelines[0].snapshot.concurrency',
    ]);
    expect(error!.code).toBe(ErrorCode.ConfigInvalid);
    expect(error!.message).toContain('pipelines.yaml: 5 problems');
    for (const issue of error!.issues) {
      expect(error!.message).toContain(`pipelines.yaml:${issue.line}:${issue.column} ${issue.path}: ${issue.message}`);
    }
  });

  it('does not call a connection that is defined but invalid "not defined"', () => {
    const issues = issuesOf(yaml`
      connections:
        - name: db
          dsn: testdb://app@db/shop
      pipelines:
        - name: orders
          source: { connection: db, tables: [public.orders] }
          sink: { connection: db }
    `);
    expect(issues.map((i) => i.path)).toEqual(['connections[0].type']);
  });

  it('never substitutes an empty string for an unset variable', () => {
    const text = baseConfig.replace('topic: orders-cdc', 'topic: "${env:TOPIC}"');
    const issues = issuesOf(text, { TOPIC: undefined });
    expect(issues).toEqual([
      expect.objectContaining({
        path: 'pipelines[0].sink.properties.topic',
        message: 'environment variable TOPIC is not set',
      }),
    ]);
  });
});

describe('sink error policy and spill budget', () => {
  it('reads on_error, dead_letter_path and max_spill_bytes with units', () => {
    const { config } = parseConfig(
      withPipeline(
        `name: p\n${source}\nsinks:\n  - connection: queue\n    on_error: dead_letter\n    dead_letter_path: dlq/p.jsonl\n    max_spill_bytes: 512MB\n  - connection: queue\n    max_spill_bytes: 0`,
      ),
      { env: {}, file: 'pipelines.yaml' },
    );
    const [first, second] = config.pipelines[0]!.sinks;
    expect(first).toMatchObject({ on_error: 'dead_letter', dead_letter_path: 'dlq/p.jsonl', max_spill_bytes: 512e6 });
    expect(second).toMatchObject({ on_error: 'fail', max_spill_bytes: 0 });
  });
});
