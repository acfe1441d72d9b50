/**
 * docs/nanosync.schema.json (also shipped as apps/cli/nanosync.schema.json) is the JSON
 * Schema of the pipelines YAML, for editors (yaml-language-server). It is generated: the
 * structure from the keys core's config reader accepts, the enums from core's constants,
 * and each connection's `properties` from its connector's property schema (zod).
 *   node --conditions=@nanosync/source --import tsx packages/core/scripts/config-schema.ts          write it
 *   node --conditions=@nanosync/source --import tsx packages/core/scripts/config-schema.ts --check  exit 1 when stale
 * packages/core/test/unit/config-schema.test.ts fails when the file is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CONNECTION_KEYS } from '../src/config/read-connections.js';
import {
  ON_ERROR_POLICIES,
  PIPELINE_KEYS,
  QUERY_KEYS,
  SINK_KEYS,
  SNAPSHOT_KEYS,
  SOURCE_KEYS,
} from '../src/config/read-pipelines.js';
import { FILTER_KEYS, MAPPING_KEYS } from '../src/config/read-target-mappings.js';
import {
  DEFAULT_WORKERS,
  FILTER_OPS,
  MAX_WORKERS,
  REPLICATION_TYPES,
  SCHEMA_CHANGE_POLICIES,
  SNAPSHOT_MODES,
} from '../src/config/types.js';
import { TOP_KEYS } from '../src/config/validate.js';
import { connectorPackages, REPO_ROOT } from './errors-doc.js';

export const SCHEMA_FILES = [
  join(REPO_ROOT, 'docs/nanosync.schema.json'),
  join(REPO_ROOT, 'apps/cli/nanosync.schema.json'),
];

type Json = Record<string, unknown>;

/** `${env:VAR}` is accepted wherever a value is: it is substituted before validation. */
const ENV_REF: Json = { type: 'string', pattern: '\\$\\{env:[A-Za-z_][A-Za-z0-9_]*\\}' };

function orEnv(schema: Json): Json {
  if (schema.type === 'string' || schema.type === undefined) return schema;
  return { anyOf: [schema, ENV_REF] };
}

interface ZodDef {
  typeName?: string;
  description?: string;
  [key: string]: unknown;
}

/** A zod (v3) schema as JSON Schema: the input side (what a user writes), refinements and transforms left out. */
export function zodToJsonSchema(schema: unknown): Json {
  const def = (schema as { _def?: ZodDef } | undefined)?._def;
  if (def === undefined) return {};
  const out = convert(schema as { _def: ZodDef });
  if (def.description) out.description = def.description;
  return out;
}

function convert(schema: { _def: ZodDef }): Json {
  const def = schema._def;
  switch (def.typeName) {
    case 'ZodObject': {
      const shape = (def.shape as () => Record<string, { _def: ZodDef; isOptional?: () => boolean }>)();
      const properties: Json = {};
      const required: string[] = [];
      for (const [key, value] of Object.entries(shape)) {
        properties[key] = zodToJsonSchema(value);
        if (!(value.isOptional?.() ?? false)) required.push(key);
      }
      const out: Json = { type: 'object', properties };
      if (required.length > 0) out.required = required;
      if (def.unknownKeys === 'strict') out.additionalProperties = false;
      return out;
    }
    case 'ZodString':
      return { type: 'string' };
    case 'ZodNumber': {
      const checks = (def.checks as { kind: string; value?: number; inclusive?: boolean }[] | undefined) ?? [];
      const out: Json = { type: checks.some((c) => c.kind === 'int') ? 'integer' : 'number' };
      for (const c of checks) {
        if (c.kind === 'min' && c.value !== undefined) out[c.inclusive ? 'minimum' : 'exclusiveMinimum'] = c.value;
        if (c.kind === 'max' && c.value !== undefined) out[c.inclusive ? 'maximum' : 'exclusiveMaximum'] = c.value;
      }
      return orEnv(out);
    }
    case 'ZodBoolean':
      return orEnv({ type: 'boolean' });
    case 'ZodEnum':
      return { type: 'string', enum: [...(def.values as string[])] };
    case 'ZodNativeEnum':
      return { enum: Object.values(def.values as Record<string, unknown>) };
    case 'ZodLiteral':
      return { const: def.value };
    case 'ZodOptional':
    case 'ZodNullable':
    case 'ZodReadonly':
    case 'ZodBranded':
    case 'ZodCatch':
      return zodToJsonSchema(def.innerType ?? def.type);
    case 'ZodDefault': {
      const inner = zodToJsonSchema(def.innerType);
      const value = (def.defaultValue as () => unknown)();
      return value === undefined ? inner : { ...inner, default: value };
    }
    case 'ZodEffects':
      return zodToJsonSchema(def.schema);
    case 'ZodPipeline':
      return zodToJsonSchema(def.in);
    case 'ZodLazy':
      return zodToJsonSchema((def.getter as () => unknown)());
    case 'ZodUnion':
    case 'ZodDiscriminatedUnion': {
      const options = [...((def.options as unknown[]) ?? [])].map(zodToJsonSchema);
      // Several spellings of one value (a number or its text): one entry per distinct schema.
      const unique = [...new Map(options.map((o) => [JSON.stringify(o), o])).values()];
      return unique.length === 1 ? unique[0]! : { anyOf: unique };
    }
    case 'ZodArray':
      return { type: 'array', items: zodToJsonSchema(def.type) };
    case 'ZodTuple':
      return { type: 'array', items: (def.items as unknown[]).map(zodToJsonSchema) };
    case 'ZodRecord':
      return { type: 'object', additionalProperties: zodToJsonSchema(def.valueType) };
    default:
      return {};
  }
}

interface LoadedConnector {
  kind: 'source' | 'sink';
  type: string;
  pkg: string;
  properties: Json;
}

async function loadConnectors(): Promise<LoadedConnector[]> {
  const found: LoadedConnector[] = [];
  // The connectors users install; the ones under examples/ only show how to write one.
  for (const pkg of connectorPackages().filter((p) => !p.dir.startsWith(join(REPO_ROOT, 'examples')))) {
    const loaded = (await import(pathToFileURL(join(pkg.dir, 'src/index.ts')).href)) as {
      default?: { kind?: string; type?: string; configSchema?: unknown };
    };
    const def = loaded.default;
    if (!def || (def.kind !== 'source' && def.kind !== 'sink') || typeof def.type !== 'string') continue;
    found.push({ kind: def.kind, type: def.type, pkg: pkg.name, properties: zodToJsonSchema(def.configSchema) });
  }
  return found;
}

function only(keys: readonly string[], properties: Json, required: string[] = []): Json {
  const missing = keys.filter((k) => !(k in properties));
  const extra = Object.keys(properties).filter((k) => !keys.includes(k));
  if (missing.length > 0 || extra.length > 0)
    throw new Error(
      `the schema and core's config reader disagree: missing ${missing.join(', ') || '-'}, extra ${extra.join(', ') || '-'}`,
    );
  return { type: 'object', properties, additionalProperties: false, ...(required.length > 0 ? { required } : {}) };
}

const NAME: Json = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,40}$' };

export async function renderConfigSchema(): Promise<string> {
  const connectors = await loadConnectors();
  const types = [...new Set(connectors.flatMap((c) => [c.type, c.pkg]))].sort();
  // A connection's `properties`: its connector's schema without `dsn` (written next to it).
  const byType = connectors.map((c) => {
    const props = structuredClone(c.properties);
    const properties = (props.properties ?? {}) as Json;
    delete properties.dsn;
    if (Array.isArray(props.required)) props.required = (props.required as string[]).filter((r) => r !== 'dsn');
    return {
      if: { properties: { type: { enum: [c.type, c.pkg] } }, required: ['type'] },
      // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword, not a thenable.
      then: { properties: { properties: { ...props, description: `${c.pkg} (${c.kind}) properties` } } },
    };
  });
  const sink = only(
    SINK_KEYS,
    {
      connection: { type: 'string', description: 'name of a connection' },
      properties: { type: 'object', description: "the sink connector's properties, over the connection's" },
      on_error: {
        type: 'string',
        enum: [...ON_ERROR_POLICIES],
        description:
          'an event the sink can never write: stop (fail, default), record it (dead_letter) or drop it (skip)',
      },
      dead_letter_path: {
        type: 'string',
        description: 'JSON-lines file for dead letters (sinks without their own target)',
      },
      max_spill_bytes: {
        anyOf: [
          { type: 'integer', minimum: 0 },
          { type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*([KMGT]i?B|B)?\\s*$' },
        ],
        description: 'spill budget of a sink that falls behind (default 4GiB; 0: no spilling)',
      },
      target_mappings: {
        type: 'array',
        items: only(
          MAPPING_KEYS,
          {
            table: { type: 'string' },
            columns: { type: 'array', items: { type: 'string' } },
            filter: {
              type: 'array',
              items: only(
                FILTER_KEYS,
                { column: { type: 'string' }, op: { type: 'string', enum: [...FILTER_OPS] }, value: {} },
                ['column', 'op'],
              ),
            },
          },
          ['table'],
        ),
      },
    },
    ['connection'],
  );
  const schema: Json = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://nanosync.dev/schema/pipelines.json',
    title: 'nanosync pipelines file',
    description:
      'Generated by packages/core/scripts/config-schema.ts from core’s config reader and the connectors’ property schemas; do not edit.',
    ...only(TOP_KEYS, {
      connections: {
        type: 'array',
        items: {
          ...only(
            CONNECTION_KEYS,
            {
              name: NAME,
              type: {
                description: 'connector: a short name, a package name or a ./path to a connector',
                anyOf: [{ enum: types }, { type: 'string' }],
              },
              dsn: { type: 'string', description: 'connection string; may hold $' + '{env:VAR} references' },
              properties: { type: 'object' },
            },
            ['name', 'type'],
          ),
          allOf: byType,
        },
      },
      pipelines: {
        type: 'array',
        items: only(
          PIPELINE_KEYS,
          {
            name: NAME,
            replication_type: { type: 'string', enum: [...REPLICATION_TYPES], default: 'cdc_backfill' },
            source: only(
              SOURCE_KEYS,
              {
                connection: { type: 'string', description: 'name of a connection' },
                tables: { type: 'array', items: { type: 'string' }, description: 'schema.table' },
                properties: { type: 'object', description: "the source connector's properties, over the connection's" },
              },
              ['connection'],
            ),
            sink,
            sinks: { type: 'array', items: sink },
            snapshot: only(SNAPSHOT_KEYS, {
              concurrency: orEnv({ type: 'integer', minimum: 1 }),
              target_rows_per_partition: orEnv({ type: 'integer', minimum: 1 }),
              mode: { type: 'string', enum: [...SNAPSHOT_MODES], default: 'concurrent' },
              chunk_rows: orEnv({ type: 'integer', minimum: 1 }),
              chunk_bytes: {
                anyOf: [
                  { type: 'integer', minimum: 1024 },
                  { type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*([KMGT]i?B|B)?\\s*$' },
                ],
                description:
                  'concurrent mode: bytes of rows read between two watermarks, per worker (default 1MiB); with chunk_rows the bound on buffered rows. Blocking mode (a source that reads bounded chunks): bytes per chunk of a partition',
              },
            }),
            query: only(
              QUERY_KEYS,
              {
                sql: { type: 'string' },
                schedule: { type: 'string', description: 'e.g. "30s", "5m", "1h", "1d"' },
              },
              ['sql', 'schedule'],
            ),
            schema_changes: { type: 'string', enum: [...SCHEMA_CHANGE_POLICIES], default: 'propagate' },
            workers: {
              anyOf: [{ type: 'string', enum: ['auto'] }, orEnv({ type: 'integer', minimum: 0, maximum: MAX_WORKERS })],
              default: DEFAULT_WORKERS,
              description:
                'worker threads that decode snapshot rows and stream changes and encode sink records off the main thread: auto (CPUs - 1), a count, or 0 (none, the default: see Worker threads in docs/configuration.md)',
            },
          },
          ['name', 'source'],
        ),
      },
    }),
  };
  return `${JSON.stringify(schema, null, 2)}\n`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const text = await renderConfigSchema();
  if (process.argv.includes('--check')) {
    const stale = SCHEMA_FILES.filter((file) => {
      try {
        return readFileSync(file, 'utf8') !== text;
      } catch {
        return true;
      }
    });
    if (stale.length > 0) {
      console.error(`stale: ${stale.join(', ')}; run pnpm --filter @nanosync/core run config-schema`);
      process.exit(1);
    }
  } else {
    for (const file of SCHEMA_FILES) writeFileSync(file, text);
  }
}
