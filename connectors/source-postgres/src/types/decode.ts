import { type LogicalType, NanosyncError, type Value } from '@nanosync/core';
import { parseArrayLiteral } from './array-literal.js';
import type { PgTypeInfo } from './pg-type.js';
import { decodeDate, decodeTime, decodeTimestamp, decodeTimestamptz, decodeTimetz } from './temporal.js';
import { PgErrorCode } from '../errors.js';

const VARHDRSZ = 4;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Text output of a value (as COPY, a SELECT in text format or pgoutput send it) → the
 * canonical value of its logical type. The connection must have the session settings of
 * `SESSION_SETTINGS` (connection.ts): they fix the text grammar this relies on.
 *
 * Throws a `NanosyncError` (PgValue) when the text does not fit the type; callers add the
 * table, column and key.
 */
export function decodeValue(type: PgTypeInfo, text: string | Uint8Array): Value {
  const s = typeof text === 'string' ? text : utf8.decode(text);
  try {
    return decodeText(type, s);
  } catch (err) {
    if (err instanceof NanosyncError) throw err;
    throw new NanosyncError(
      PgErrorCode.PgValue,
      `cannot decode a value of type ${type.schema}.${type.name}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

function decodeText(type: PgTypeInfo, s: string): Value {
  switch (type.codec) {
    case 'int16':
    case 'int32': {
      const n = Number(s);
      if (!Number.isInteger(n)) throw new Error(`not an integer: ${JSON.stringify(s.slice(0, 40))}`);
      return n;
    }
    case 'int64':
      if (!/^-?\d+$/.test(s)) throw new Error(`not an integer: ${JSON.stringify(s.slice(0, 40))}`);
      return s;
    case 'float32':
    case 'float64': {
      const n = Number(s);
      if (Number.isNaN(n) && s !== 'NaN') throw new Error(`not a number: ${JSON.stringify(s.slice(0, 40))}`);
      return n;
    }
    case 'decimal':
      return s;
    case 'bool':
      if (s === 't') return true;
      if (s === 'f') return false;
      throw new Error(`not a boolean: ${JSON.stringify(s.slice(0, 10))}`);
    case 'bytes':
      return decodeBytea(s);
    case 'date':
      return decodeDate(s);
    case 'time':
      return decodeTime(s);
    case 'timetz':
      return decodeTimetz(s);
    case 'timestamp':
      return decodeTimestamp(s);
    case 'timestamptz':
      return decodeTimestamptz(s);
    case 'uuid':
      return s.toLowerCase();
    case 'array': {
      const element = type.element;
      if (!element) throw new Error(`array type ${type.name} has no element type`);
      return parseArrayLiteral<Value>(s, type.delimiter ?? ',', (t) => decodeText(element, t)) as Value[];
    }
    case 'domain': {
      if (!type.base) throw new Error(`domain ${type.name} has no base type`);
      return decodeText(type.base, s);
    }
    case 'string':
    case 'interval':
    case 'json':
    case 'inet':
    case 'cidr':
    case 'macaddr':
    case 'money':
    case 'enum':
    case 'other':
      return s;
  }
}

/** `\x0a0b…` (bytea_output=hex) or the older escape form (`a\\b\001`). */
export function decodeBytea(s: string): Uint8Array {
  if (s.startsWith('\\x')) {
    const hexLength = s.length - 2;
    if (hexLength % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s.slice(2))) throw new Error('malformed bytea hex');
    const out = new Uint8Array(hexLength / 2);
    Buffer.from(out.buffer, out.byteOffset, out.byteLength).write(s.slice(2), 'hex');
    return out;
  }
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x5c) {
      bytes.push(c);
    } else if (s[i + 1] === '\\') {
      bytes.push(0x5c);
      i++;
    } else {
      bytes.push(Number.parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    }
  }
  return Uint8Array.from(bytes);
}

/** Precision and scale from a numeric typmod; undefined for unconstrained `numeric`. */
export function numericTypmod(typmod: number): { precision: number; scale: number } | undefined {
  if (typmod < VARHDRSZ) return undefined;
  const t = typmod - VARHDRSZ;
  // PostgreSQL 15+ allows a negative scale: the low 11 bits are a signed number.
  return { precision: (t >> 16) & 0xffff, scale: ((t & 0x7ff) ^ 1024) - 1024 };
}

/** The logical type of a column of `type` with modifier `typmod` (pg_attribute.atttypmod). */
export function logicalTypeOf(type: PgTypeInfo, typmod = -1): LogicalType {
  switch (type.codec) {
    case 'int16':
    case 'int32':
    case 'int64':
    case 'float32':
    case 'float64':
    case 'bool':
    case 'string':
    case 'bytes':
    case 'date':
    case 'time':
    case 'timetz':
    case 'timestamp':
    case 'timestamptz':
    case 'interval':
    case 'uuid':
    case 'json':
    case 'inet':
    case 'cidr':
    case 'macaddr':
    case 'money':
      return { kind: type.codec };
    case 'decimal': {
      const pm = numericTypmod(typmod);
      return pm ? { kind: 'decimal', precision: pm.precision, scale: pm.scale } : { kind: 'decimal' };
    }
    case 'enum':
      return { kind: 'enum', values: [...(type.enumLabels ?? [])] };
    case 'array':
      if (!type.element) return { kind: 'other', sourceType: type.name };
      return { kind: 'array', items: logicalTypeOf(type.element, typmod) };
    case 'domain':
      if (!type.base) return { kind: 'other', sourceType: type.name };
      return logicalTypeOf(type.base, type.baseTypmod !== undefined && type.baseTypmod >= 0 ? type.baseTypmod : typmod);
    case 'other':
      return { kind: 'other', sourceType: qualifiedTypeName(type) };
  }
}

function qualifiedTypeName(type: PgTypeInfo): string {
  return type.schema === 'pg_catalog' ? type.name : `${type.schema}.${type.name}`;
}

/**
 * A readable type name with its modifier (`numeric(12,2)`, `varchar(50)`, `int4[]`,
 * `public.mood`). Built from the same data for `describe()` and for the stream's Relation
 * messages, so both give identical column schemas.
 */
export function sourceTypeName(type: PgTypeInfo, typmod = -1): string {
  if (type.codec === 'array' && type.element) return `${sourceTypeName(type.element, typmod)}[]`;
  const name = qualifiedTypeName(type);
  if (typmod < 0) return name;
  switch (type.name) {
    case 'numeric': {
      const pm = numericTypmod(typmod);
      return pm ? `numeric(${pm.precision},${pm.scale})` : name;
    }
    case 'varchar':
    case 'bpchar':
      return typmod >= VARHDRSZ ? `${name}(${typmod - VARHDRSZ})` : name;
    case 'bit':
    case 'varbit':
    case 'time':
    case 'timetz':
    case 'timestamp':
    case 'timestamptz':
      return `${name}(${typmod})`;
    default:
      return name;
  }
}
