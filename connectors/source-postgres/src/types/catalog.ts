import { ErrorCode, NanosyncError } from '@nanosync/core';
import { builtinType } from './builtin.js';
import type { PgCodec, PgTypeInfo } from './pg-type.js';
import { PgErrorCode } from '../errors.js';

/** Anything that runs a parameterised query: a `pg` Client, Pool or PoolClient. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

interface PgTypeRow {
  oid: string;
  schema: string;
  name: string;
  typtype: string;
  category: string;
  elem: string;
  base: string;
  basetypmod: string;
  delim: string;
  labels: string | null;
}

/*
 * Every column is cast to text so the result does not depend on the connection's type
 * parsers (our snapshot connections return raw text for everything).
 */
const TYPE_SQL = `
SELECT t.oid::text AS oid, n.nspname::text AS schema, t.typname::text AS name, t.typtype::text AS typtype,
       t.typcategory::text AS category, t.typelem::text AS elem, t.typbasetype::text AS base,
       t.typtypmod::text AS basetypmod, t.typdelim::text AS delim,
       CASE WHEN t.typtype = 'e' THEN
         (SELECT coalesce(json_agg(e.enumlabel ORDER BY e.enumsortorder), '[]'::json)::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid)
       END AS labels
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE t.oid = ANY($1::oid[])`;

/**
 * Type information by OID, loaded from `pg_type` on first use and cached.
 *
 * Built-in OIDs are answered without a query. `resolve()` loads a set of OIDs and every
 * type they refer to (array elements, domain base types), so `get()` is synchronous
 * afterwards. Call `forget()` when the server announces a type changed (pgoutput Type
 * message, `ALTER TYPE … ADD VALUE`).
 */
export class TypeCatalog {
  readonly #raw = new Map<number, PgTypeRow>();
  readonly #resolved = new Map<number, PgTypeInfo>();

  /** Load `oids` (and what they depend on) that are not known yet. */
  async resolve(client: Queryable, oids: Iterable<number>): Promise<void> {
    let pending = [...new Set(oids)].filter((oid) => !this.has(oid));
    while (pending.length > 0) {
      const { rows } = await client.query(TYPE_SQL, [pending]);
      const next = new Set<number>();
      for (const row of rows as unknown as PgTypeRow[]) {
        const oid = Number(row.oid);
        this.#raw.set(oid, row);
        for (const ref of [Number(row.elem), Number(row.base)]) {
          if (ref !== 0 && !this.has(ref)) next.add(ref);
        }
      }
      for (const oid of pending) {
        if (!this.#raw.has(oid)) {
          throw new NanosyncError(
            PgErrorCode.PgProtocol,
            `type with OID ${oid} does not exist in pg_type (dropped while in use?)`,
          );
        }
      }
      pending = [...next];
    }
  }

  has(oid: number): boolean {
    return builtinType(oid) !== undefined || this.#raw.has(oid);
  }

  /** Type info for a loaded OID; throws when `resolve()` was not called for it. */
  get(oid: number): PgTypeInfo {
    const builtin = builtinType(oid);
    if (builtin) return builtin;
    const cached = this.#resolved.get(oid);
    if (cached) return cached;
    const row = this.#raw.get(oid);
    if (!row) throw new NanosyncError(ErrorCode.Internal, `type OID ${oid} used before TypeCatalog.resolve()`);
    const info = this.#build(row);
    this.#resolved.set(oid, info);
    return info;
  }

  /** Drop a cached type (and everything built from it) so the next `resolve` reloads it. */
  forget(oid: number): void {
    this.#raw.delete(oid);
    this.#resolved.clear();
  }

  #build(row: PgTypeRow): PgTypeInfo {
    const oid = Number(row.oid);
    const base: PgTypeInfo = { oid, schema: row.schema, name: row.name, codec: 'other' };
    switch (row.typtype) {
      case 'd': {
        const baseInfo = this.get(Number(row.base));
        const baseTypmod = Number(row.basetypmod);
        // A domain over a domain is resolved down to the first non-domain type.
        if (baseInfo.codec === 'domain' && baseInfo.base) {
          return {
            ...base,
            codec: 'domain',
            base: baseInfo.base,
            baseTypmod: baseTypmod >= 0 ? baseTypmod : (baseInfo.baseTypmod ?? -1),
          };
        }
        return { ...base, codec: 'domain', base: baseInfo, baseTypmod };
      }
      case 'e':
        return { ...base, codec: 'enum', enumLabels: row.labels ? (JSON.parse(row.labels) as string[]) : [] };
      case 'b':
        if (row.category === 'A' && Number(row.elem) !== 0) {
          return {
            ...base,
            codec: 'array',
            element: this.get(Number(row.elem)),
            delimiter: this.#delimiterOf(Number(row.elem)),
          };
        }
        return { ...base, codec: extensionCodec(row.name) };
      default:
        return base;
    }
  }

  #delimiterOf(elementOid: number): string {
    const builtinArray = builtinType(elementOid);
    if (builtinArray) return builtinArray.oid === 603 ? ';' : ',';
    return this.#raw.get(elementOid)?.delim ?? ',';
  }
}

/** Extension types we know by name: `citext` is text to everyone downstream. */
function extensionCodec(name: string): PgCodec {
  return name === 'citext' ? 'string' : 'other';
}

/** Convenience for one-off lookups: resolve `oids` into `catalog` and return their infos. */
export async function resolveTypes(
  client: Queryable,
  oids: number[],
  catalog = new TypeCatalog(),
): Promise<Map<number, PgTypeInfo>> {
  await catalog.resolve(client, oids);
  return new Map(oids.map((oid) => [oid, catalog.get(oid)]));
}
