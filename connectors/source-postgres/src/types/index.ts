/**
 * PostgreSQL type catalog and value decoding, shared by the snapshot reader and the
 * change stream so both produce identical values for the same row.
 *
 * Exported API (stable for the stream code in ../stream):
 *
 * ```ts
 * interface PgTypeInfo { oid; schema; name; codec; element?; delimiter?; base?; baseTypmod?; enumLabels? }
 *
 * // Text output of one value → canonical value (see LogicalType in @nanosync/core).
 * // Requires the session settings pinned by connection.ts (TimeZone=UTC, DateStyle=ISO,
 * // IntervalStyle=iso_8601, extra_float_digits=3, bytea_output=hex, lc_monetary=C).
 * // Throws NanosyncError(PgValue) on text that does not fit the type.
 * function decodeValue(type: PgTypeInfo, text: string | Uint8Array): Value;
 *
 * // Column type for a TableSchema: pg_attribute.atttypid + atttypmod → LogicalType / readable name.
 * function logicalTypeOf(type: PgTypeInfo, typmod?: number): LogicalType;
 * function sourceTypeName(type: PgTypeInfo, typmod?: number): string;
 *
 * // Built-in OIDs need no query; other OIDs (enums, domains, arrays of them, extension types)
 * // are loaded with resolve() and then read synchronously with get().
 * class TypeCatalog {
 *   resolve(client: Queryable, oids: Iterable<number>): Promise<void>;
 *   has(oid: number): boolean;
 *   get(oid: number): PgTypeInfo;           // throws if neither built-in nor resolved
 *   forget(oid: number): void;              // after a pgoutput Type message / ALTER TYPE
 * }
 * function resolveTypes(client: Queryable, oids: number[], catalog?: TypeCatalog): Promise<Map<number, PgTypeInfo>>;
 * function builtinType(oid: number): PgTypeInfo | undefined;
 * ```
 */

export { ArrayLiteralError, parseArrayLiteral } from './array-literal.js';
export { BUILTIN_TYPES, builtinType } from './builtin.js';
export { type Queryable, resolveTypes, TypeCatalog } from './catalog.js';
export { decodeBytea, decodeValue, logicalTypeOf, numericTypmod, sourceTypeName } from './decode.js';
export type { PgCodec, PgTypeInfo } from './pg-type.js';
export { formatYear } from '@nanosync/core';
