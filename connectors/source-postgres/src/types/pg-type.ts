/**
 * What we know about one PostgreSQL type: enough to turn its text output into the
 * canonical value of its logical type (see `LogicalType` in @nanosync/core).
 *
 * `codec` says which text grammar the server uses for the type. Domains point at their
 * base type, arrays at their element type, enums carry their labels in sort order.
 */
export type PgCodec =
  | 'int16'
  | 'int32'
  | 'int64'
  | 'float32'
  | 'float64'
  | 'decimal'
  | 'bool'
  | 'string'
  | 'bytes'
  | 'date'
  | 'time'
  | 'timetz'
  | 'timestamp'
  | 'timestamptz'
  | 'interval'
  | 'uuid'
  | 'json'
  | 'inet'
  | 'cidr'
  | 'macaddr'
  | 'money'
  | 'enum'
  | 'array'
  | 'domain'
  | 'other';

export interface PgTypeInfo {
  oid: number;
  /** Namespace of the type (`pg_catalog` for built-ins). */
  schema: string;
  /** `pg_type.typname`: `int4`, `_int4` (array of int4), `mood`. */
  name: string;
  codec: PgCodec;
  /** Arrays: the element type. */
  element?: PgTypeInfo;
  /** Arrays: the element separator in the text form (`,` for everything but `box`). */
  delimiter?: string;
  /** Domains: the type the domain is defined over (itself resolved: never a domain). */
  base?: PgTypeInfo;
  /** Domains: the base type's modifier (`numeric(10,2)` under the domain), -1 when none. */
  baseTypmod?: number;
  /** Enums: labels in `enumsortorder`. */
  enumLabels?: string[];
}
