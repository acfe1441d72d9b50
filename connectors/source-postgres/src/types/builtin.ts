import type { PgCodec, PgTypeInfo } from './pg-type.js';

/**
 * Built-in types by OID. These OIDs are fixed in every PostgreSQL release, so the common
 * case (a table of built-in types) needs no catalog query at all.
 *
 * [oid, typname, codec, array oid]
 */
const SCALARS: ReadonlyArray<readonly [number, string, PgCodec, number]> = [
  [16, 'bool', 'bool', 1000],
  [17, 'bytea', 'bytes', 1001],
  [18, 'char', 'string', 1002],
  [19, 'name', 'string', 1003],
  [20, 'int8', 'int64', 1016],
  [21, 'int2', 'int16', 1005],
  [23, 'int4', 'int32', 1007],
  [25, 'text', 'string', 1009],
  [26, 'oid', 'int64', 1028],
  [114, 'json', 'json', 199],
  [142, 'xml', 'other', 143],
  [650, 'cidr', 'cidr', 651],
  [700, 'float4', 'float32', 1021],
  [701, 'float8', 'float64', 1022],
  [774, 'macaddr8', 'other', 775],
  [790, 'money', 'money', 791],
  [829, 'macaddr', 'macaddr', 1040],
  [869, 'inet', 'inet', 1041],
  [1042, 'bpchar', 'string', 1014],
  [1043, 'varchar', 'string', 1015],
  [1082, 'date', 'date', 1182],
  [1083, 'time', 'time', 1183],
  [1114, 'timestamp', 'timestamp', 1115],
  [1184, 'timestamptz', 'timestamptz', 1185],
  [1186, 'interval', 'interval', 1187],
  [1266, 'timetz', 'timetz', 1270],
  [1560, 'bit', 'other', 1561],
  [1562, 'varbit', 'other', 1563],
  [1700, 'numeric', 'decimal', 1231],
  [2950, 'uuid', 'uuid', 2951],
  [3220, 'pg_lsn', 'other', 3221],
  [3614, 'tsvector', 'other', 3643],
  [3802, 'jsonb', 'json', 3807],
  [4072, 'jsonpath', 'other', 4073],
  [28, 'xid', 'other', 1011],
  [5069, 'xid8', 'other', 271],
  [22, 'int2vector', 'other', 1006],
  [30, 'oidvector', 'other', 1013],
  [600, 'point', 'other', 1017],
  [628, 'line', 'other', 629],
  [601, 'lseg', 'other', 1018],
  [602, 'path', 'other', 1019],
  [604, 'polygon', 'other', 1027],
  [718, 'circle', 'other', 719],
  [3904, 'int4range', 'other', 3905],
  [3926, 'int8range', 'other', 3927],
  [3906, 'numrange', 'other', 3907],
  [3908, 'tsrange', 'other', 3909],
  [3910, 'tstzrange', 'other', 3911],
  [3912, 'daterange', 'other', 3913],
];

/** `box` is the one built-in whose array text form separates elements with `;`. */
const BOX: PgTypeInfo = { oid: 603, schema: 'pg_catalog', name: 'box', codec: 'other' };

export const BUILTIN_TYPES: ReadonlyMap<number, PgTypeInfo> = (() => {
  const map = new Map<number, PgTypeInfo>();
  for (const [oid, name, codec, arrayOid] of SCALARS) {
    const scalar: PgTypeInfo = { oid, schema: 'pg_catalog', name, codec };
    map.set(oid, scalar);
    map.set(arrayOid, {
      oid: arrayOid,
      schema: 'pg_catalog',
      name: `_${name}`,
      codec: 'array',
      element: scalar,
      delimiter: ',',
    });
  }
  map.set(BOX.oid, BOX);
  map.set(1020, { oid: 1020, schema: 'pg_catalog', name: '_box', codec: 'array', element: BOX, delimiter: ';' });
  return map;
})();

/** The built-in type for `oid`, or undefined when it must be looked up in the catalog. */
export function builtinType(oid: number): PgTypeInfo | undefined {
  return BUILTIN_TYPES.get(oid);
}
