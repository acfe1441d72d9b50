import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { renderConfigSchema, SCHEMA_FILES, zodToJsonSchema } from '../../scripts/config-schema.js';

describe('the JSON Schema of the pipelines file', () => {
  it('is up to date (regenerate: pnpm --filter @nanosync/core run config-schema)', async () => {
    const text = await renderConfigSchema();
    for (const file of SCHEMA_FILES) expect(readFileSync(file, 'utf8'), file).toBe(text);
  });

  it("holds each connector's properties under its connection type, and core's enums", async () => {
    const schema = JSON.parse(await renderConfigSchema());
    const connection = schema.properties.connections.items;
    const kafka = connection.allOf.find((a: { if: { properties: { type: { enum: string[] } } } }) =>
      a.if.properties.type.enum.includes('kafka'),
    );
    const props = kafka.then.properties.properties;
    expect(props.properties.message_format.enum).toContain('avro');
    expect(props.properties.topic_prefix).toEqual({ type: 'string' });
    expect(props.additionalProperties).toBe(false);
    const pipeline = schema.properties.pipelines.items;
    expect(pipeline.additionalProperties).toBe(false);
    expect(pipeline.properties.replication_type.enum).toEqual(['cdc_backfill', 'cdc', 'snapshot', 'query']);
    expect(pipeline.required).toEqual(['name', 'source']);
  });

  it('turns zod into JSON Schema from the input side: defaults, strictness, numbers that may be env references', () => {
    const schema = z
      .object({
        port: z.coerce.number().int().min(1),
        mode: z.enum(['a', 'b']).default('a'),
        name: z.string().optional(),
      })
      .strict()
      .transform((v) => v);
    expect(zodToJsonSchema(schema)).toEqual({
      type: 'object',
      properties: {
        port: {
          anyOf: [
            { type: 'integer', minimum: 1 },
            { type: 'string', pattern: '\\$\\{env:[A-Za-z_][A-Za-z0-9_]*\\}' },
          ],
        },
        mode: { type: 'string', enum: ['a', 'b'], default: 'a' },
        name: { type: 'string' },
      },
      required: ['port'],
      additionalProperties: false,
    });
  });
});
