import { ErrorCode, NanosyncError, redact } from '@nanosync/core';
import { literalSecretPaths, PreflightError } from '@nanosync/core/host';
import type { ApplyEntry, ApplyResult } from '../admin-engine.js';
import { errorResponse, type Route } from '../http.js';

const PIPELINE_NAME = /^[A-Za-z0-9_-]{1,40}$/;

/** Every string in a response goes through `redact`, a second line of defence after the engine's own. */
function redactDeep(value: unknown): unknown {
  if (typeof value === 'string') return redact(value);
  if (Array.isArray(value)) return value.map(redactDeep);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v)]));
  }
  return value;
}

function pipelineName(params: Record<string, string>): string {
  const name = params.name ?? '';
  if (!PIPELINE_NAME.test(name))
    throw new NanosyncError(ErrorCode.CliUsage, `invalid pipeline name '${name.slice(0, 60)}'`);
  return name;
}

function parseApplyBody(body: unknown): ApplyEntry[] {
  const definitions = (body as { definitions?: unknown } | undefined)?.definitions;
  if (!Array.isArray(definitions)) throw new NanosyncError(ErrorCode.CliUsage, 'body must be { "definitions": [...] }');
  return definitions.map((entry, index) => {
    const e = entry as Partial<ApplyEntry> | null;
    if (
      !e ||
      typeof e.name !== 'string' ||
      !PIPELINE_NAME.test(e.name) ||
      typeof e.hash !== 'string' ||
      typeof e.replicationType !== 'string' ||
      !e.definition ||
      typeof e.definition !== 'object'
    ) {
      throw new NanosyncError(
        ErrorCode.CliUsage,
        `definitions[${index}] must have name, definition, hash and replicationType`,
      );
    }
    // The client encrypts literal secrets with the server's key (`toStoredDefinitions`);
    // a definition that still carries one would be stored in clear text, so refuse it.
    const literal = literalSecretPaths(e.definition);
    if (literal.length > 0) {
      throw new NanosyncError(
        ErrorCode.CliUsage,
        `definitions[${index}] (pipeline "${e.name}") holds unencrypted secrets at ${literal.join(', ')}: ` +
          "encrypt them with the server's key (nanosync apply does) or use $" +
          '{env:…} references',
      );
    }
    return e as ApplyEntry;
  });
}

/** The pipeline endpoints of the admin API (`/v1/...`). */
export const pipelineRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/health',
    auth: false,
    handle: () => ({ json: { ok: true } }),
  },
  {
    method: 'GET',
    path: '/v1/pipelines',
    handle: async ({ engine }) => ({ json: { pipelines: redactDeep(await engine.list()) } }),
  },
  {
    method: 'GET',
    path: '/v1/pipelines/:name',
    handle: async ({ engine, params }) => ({
      json: { pipeline: redactDeep(await engine.status(pipelineName(params))) },
    }),
  },
  {
    method: 'POST',
    path: '/v1/apply',
    handle: async ({ engine, body }) => {
      const entries = parseApplyBody(body);
      const results: { name: string; result: ApplyResult }[] = [];
      for (const entry of entries) {
        try {
          const result = await engine.apply(entry.name, entry.definition, entry.hash, entry.replicationType);
          results.push({ name: entry.name, result });
        } catch (err) {
          // Report what was applied before the failure along with the error itself (a refused
          // preflight is 422 and also sends its failed checks one by one, for the client to show like `doctor`).
          const { status, json } = errorResponse(err);
          const failures = err instanceof PreflightError ? err.failures : undefined;
          return {
            status,
            json: {
              results,
              error: {
                ...json.error,
                pipeline: entry.name,
                ...(failures !== undefined ? { failures: redactDeep(failures) } : {}),
              },
            },
          };
        }
      }
      return { json: { results } };
    },
  },
  {
    method: 'POST',
    path: '/v1/pipelines/:name/pause',
    handle: async ({ engine, params }) => {
      const name = pipelineName(params);
      await engine.pause(name);
      return { json: { name, action: 'paused' } };
    },
  },
  {
    method: 'POST',
    path: '/v1/pipelines/:name/resume',
    handle: async ({ engine, params }) => {
      const name = pipelineName(params);
      await engine.resume(name);
      return { json: { name, action: 'resumed' } };
    },
  },
  {
    method: 'POST',
    path: '/v1/pipelines/:name/resnapshot',
    handle: async ({ engine, params, body }) => {
      const name = pipelineName(params);
      const requested = (body as { tables?: unknown } | undefined)?.tables;
      if (requested !== undefined && (!Array.isArray(requested) || requested.some((t) => typeof t !== 'string'))) {
        throw new NanosyncError(
          ErrorCode.CliUsage,
          'body must be { "tables": ["schema.table", …] }: the tables to read again, or no "tables" for all of the pipeline\'s tables',
        );
      }
      const tables = await engine.resnapshot(name, (requested as string[] | undefined) ?? []);
      return { json: { name, action: 'resnapshot', tables } };
    },
  },
  {
    method: 'DELETE',
    path: '/v1/pipelines/:name',
    handle: async ({ engine, params, query }) => {
      const name = pipelineName(params);
      const force = query.get('force') === 'true';
      const result = await engine.delete(name, force ? { force } : undefined);
      const leftBehind = (result as { leftBehind?: { error: string; steps: string[] } } | undefined)?.leftBehind;
      return { json: { name, action: 'deleted', ...(leftBehind ? { leftBehind: redactDeep(leftBehind) } : {}) } };
    },
  },
];
