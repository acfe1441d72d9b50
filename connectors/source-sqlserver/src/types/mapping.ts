/**
 * SQL Server column types → the event model, losslessly.
 *
 * Three steps per column, shared by the snapshot and the stream so that one row reads the
 * same from both:
 *  1. {@link selectExpression}: the T-SQL that reads the column. Everything tedious would
 *     turn into a lossy JavaScript value is converted to text on the server first:
 *     decimal/numeric/money (tedious returns doubles), every date/time type (tedious returns
 *     a `Date`, milliseconds only), CLR types (hierarchyid, geography, geometry: raw UDT bytes
 *     otherwise) and sql_variant (text tagged with its base type).
 *  2. {@link convertValue}: what tedious returns for that expression → the canonical value.
 *  3. {@link logicalType}: the logical type encoders map.
 * Key values travel back into SQL through {@link keyParameter}: bound as text or bytes and
 * converted on the server to the column's declared type (and collation), so a keyset
 * comparison runs in the column's own type — never as nvarchar against a varchar key.
 */
import type { LogicalType, Value } from '@nanosync/core';
import { quoteIdent } from '../errors.js';
import { guidFromBytes } from './guid.js';
import { canonicalDate, canonicalTime, canonicalTimestamp, canonicalTimestampUtc } from './temporal.js';

export interface MssqlColumn {
  name: string;
  /** Base system type name, lower case (`nvarchar`, `datetime2`, `geography`). */
  typeName: string;
  /** Bytes (`-1` for max); for n-types twice the characters. */
  maxLength: number;
  precision: number;
  scale: number;
  nullable: boolean;
  collation?: string | null;
}

export type TimePrecision = 'exact' | 'microseconds';

/** `nvarchar(50)`, `decimal(12,2)`, `datetime2(7)`, `varbinary(max)`: the declared type, for humans and CASTs. */
export function declaredType(c: MssqlColumn): string {
  const t = c.typeName;
  switch (t) {
    case 'char':
    case 'varchar':
    case 'binary':
    case 'varbinary':
      return `${t}(${c.maxLength === -1 ? 'max' : c.maxLength})`;
    case 'nchar':
    case 'nvarchar':
      return `${t}(${c.maxLength === -1 ? 'max' : c.maxLength / 2})`;
    case 'decimal':
    case 'numeric':
      return `${t}(${c.precision},${c.scale})`;
    case 'datetime2':
    case 'time':
    case 'datetimeoffset':
      return `${t}(${c.scale})`;
    default:
      return t;
  }
}

/** Whether values of this column can hold a 7th fractional second digit. */
function hasSeventhDigit(c: MssqlColumn): boolean {
  return (c.typeName === 'datetime2' || c.typeName === 'time' || c.typeName === 'datetimeoffset') && c.scale >= 7;
}

export function logicalType(c: MssqlColumn, precision: TimePrecision = 'exact'): LogicalType {
  const exactText = precision === 'exact' && hasSeventhDigit(c);
  switch (c.typeName) {
    case 'tinyint':
    case 'smallint':
      return { kind: 'int16' };
    case 'int':
      return { kind: 'int32' };
    case 'bigint':
      return { kind: 'int64' };
    case 'decimal':
    case 'numeric':
      return { kind: 'decimal', precision: c.precision, scale: c.scale };
    case 'money':
      return { kind: 'decimal', precision: 19, scale: 4 };
    case 'smallmoney':
      return { kind: 'decimal', precision: 10, scale: 4 };
    case 'real':
      return { kind: 'float32' };
    case 'float':
      return c.precision <= 24 ? { kind: 'float32' } : { kind: 'float64' };
    case 'bit':
      return { kind: 'bool' };
    case 'char':
    case 'varchar':
    case 'nchar':
    case 'nvarchar':
    case 'text':
    case 'ntext':
      return { kind: 'string' };
    case 'binary':
    case 'varbinary':
    case 'image':
    case 'timestamp': // rowversion
      return { kind: 'bytes' };
    case 'uniqueidentifier':
      return { kind: 'uuid' };
    case 'date':
      return { kind: 'date' };
    case 'time':
      return exactText ? { kind: 'other', sourceType: declaredType(c) } : { kind: 'time' };
    case 'datetime':
    case 'smalldatetime':
      return { kind: 'timestamp' };
    case 'datetime2':
      return exactText ? { kind: 'other', sourceType: declaredType(c) } : { kind: 'timestamp' };
    case 'datetimeoffset':
      return exactText ? { kind: 'other', sourceType: declaredType(c) } : { kind: 'timestamptz' };
    default:
      // xml, hierarchyid, geography, geometry, sql_variant and anything unknown: text.
      return { kind: 'other', sourceType: declaredType(c) };
  }
}

/**
 * The T-SQL reading column `ref` (an already quoted column reference, e.g. `[price]` or
 * `c.[price]`) so that tedious returns a value {@link convertValue} turns into the
 * canonical form without loss.
 */
export function selectExpression(c: MssqlColumn, ref: string = quoteIdent(c.name)): string {
  switch (c.typeName) {
    case 'decimal':
    case 'numeric':
      return `CAST(${ref} AS varchar(48))`;
    case 'money':
    case 'smallmoney':
      return `CONVERT(varchar(32), ${ref}, 2)`;
    case 'date':
      return `CONVERT(char(10), ${ref}, 23)`;
    case 'time':
      return `CAST(${ref} AS varchar(16))`;
    case 'datetime2':
      return `CONVERT(varchar(27), ${ref}, 121)`;
    case 'datetime':
      return `CONVERT(varchar(27), CAST(${ref} AS datetime2(3)), 121)`;
    case 'smalldatetime':
      return `CONVERT(varchar(19), ${ref}, 120)`;
    case 'datetimeoffset':
      return `CAST(${ref} AS varchar(34))`;
    case 'hierarchyid':
      return `${ref}.ToString()`;
    case 'geography':
    case 'geometry':
      return `CASE WHEN ${ref} IS NULL THEN NULL ELSE CONCAT(N'SRID=', ${ref}.STSrid, N';', ${ref}.AsTextZM()) END`;
    case 'sql_variant':
      return sqlVariantExpression(ref);
    default:
      return ref;
  }
}

/**
 * sql_variant as `<base type>:<text>`, each base type printed in a lossless style:
 * date/time types in ISO form with every fractional digit, money with four decimals,
 * floats with 17 significant digits, binary as `0x…`.
 */
function sqlVariantExpression(ref: string): string {
  const base = `CAST(SQL_VARIANT_PROPERTY(${ref}, 'BaseType') AS nvarchar(128))`;
  return `CASE WHEN ${ref} IS NULL THEN NULL
    WHEN ${base} IN (N'date', N'time', N'datetime2', N'datetimeoffset') THEN CONCAT(${base}, N':', CONVERT(nvarchar(40), ${ref}, 121))
    WHEN ${base} IN (N'datetime', N'smalldatetime') THEN CONCAT(${base}, N':', CONVERT(nvarchar(40), CAST(${ref} AS datetime2(3)), 121))
    WHEN ${base} IN (N'money', N'smallmoney') THEN CONCAT(${base}, N':', CONVERT(nvarchar(40), CAST(${ref} AS money), 2))
    WHEN ${base} IN (N'float', N'real') THEN CONCAT(${base}, N':', CONVERT(nvarchar(40), CAST(${ref} AS float), 3))
    WHEN ${base} IN (N'binary', N'varbinary') THEN CONCAT(${base}, N':', CONVERT(nvarchar(max), CAST(${ref} AS varbinary(8000)), 1))
    ELSE CONCAT(${base}, N':', CAST(${ref} AS nvarchar(4000))) END`;
}

export class ValueShapeError extends Error {}

function expect(kind: string, ok: boolean, raw: unknown): void {
  if (!ok) throw new ValueShapeError(`expected ${kind} from the driver, got ${describeRaw(raw)}`);
}

function describeRaw(raw: unknown): string {
  if (raw instanceof Uint8Array) return `${raw.length} bytes`;
  if (raw instanceof Date) return `Date ${raw.toISOString()}`;
  return `${typeof raw} ${JSON.stringify(String(raw).slice(0, 40))}`;
}

const DECIMAL_TEXT = /^-?(\d+)?(\.\d+)?$/;

/** Plain-notation decimal text with a leading zero (`.5` → `0.5`, `-.5` → `-0.5`). */
export function canonicalDecimal(text: string): string {
  const t = text.trim();
  if (!DECIMAL_TEXT.test(t) || t === '' || t === '-') throw new ValueShapeError(`not a decimal: ${JSON.stringify(t)}`);
  if (t.startsWith('-.')) return `-0${t.slice(1)}`;
  if (t.startsWith('.')) return `0${t}`;
  return t;
}

/**
 * The value tedious returned for {@link selectExpression} of `c` → the canonical value of
 * {@link logicalType}. `null` stays `null`.
 */
export function convertValue(c: MssqlColumn, raw: unknown, precision: TimePrecision = 'exact'): Value {
  if (raw === null || raw === undefined) return null;
  const digits: 6 | 7 = precision === 'exact' && hasSeventhDigit(c) ? 7 : 6;
  switch (c.typeName) {
    case 'tinyint':
    case 'smallint':
    case 'int':
      expect('a number', typeof raw === 'number', raw);
      return raw as number;
    case 'bigint':
      // tedious returns bigint as a string (exact); accept a bigint or a safe number too.
      if (typeof raw === 'bigint') return raw.toString();
      if (typeof raw === 'number' && Number.isSafeInteger(raw)) return String(raw);
      expect('a bigint string', typeof raw === 'string' && /^-?\d+$/.test(raw), raw);
      return raw as string;
    case 'decimal':
    case 'numeric':
    case 'money':
    case 'smallmoney':
      expect('decimal text', typeof raw === 'string', raw);
      return canonicalDecimal(raw as string);
    case 'real':
    case 'float':
      expect('a number', typeof raw === 'number', raw);
      return raw as number;
    case 'bit':
      if (typeof raw === 'number') return raw !== 0;
      expect('a boolean', typeof raw === 'boolean', raw);
      return raw as boolean;
    case 'char':
    case 'varchar':
    case 'nchar':
    case 'nvarchar':
    case 'text':
    case 'ntext':
    case 'xml':
    case 'hierarchyid':
    case 'geography':
    case 'geometry':
    case 'sql_variant':
      expect('a string', typeof raw === 'string', raw);
      return raw as string;
    case 'binary':
    case 'varbinary':
    case 'image':
    case 'timestamp':
      expect('bytes', raw instanceof Uint8Array, raw);
      return raw as Uint8Array;
    case 'uniqueidentifier':
      // tedious already turns the wire bytes (mixed-endian) into the display form.
      if (raw instanceof Uint8Array) return guidFromBytes(raw);
      expect('a GUID string', typeof raw === 'string' && /^[0-9A-Fa-f-]{36}$/.test(raw), raw);
      return (raw as string).toLowerCase();
    case 'date':
      expect('date text', typeof raw === 'string', raw);
      return canonicalDate(raw as string);
    case 'time':
      expect('time text', typeof raw === 'string', raw);
      return canonicalTime(raw as string, digits);
    case 'datetime':
    case 'smalldatetime':
    case 'datetime2':
      expect('datetime text', typeof raw === 'string', raw);
      return canonicalTimestamp(raw as string, digits);
    case 'datetimeoffset':
      expect('datetimeoffset text', typeof raw === 'string', raw);
      return canonicalTimestampUtc(raw as string, digits);
    default:
      if (typeof raw === 'string') return raw;
      if (raw instanceof Uint8Array) return raw;
      return String(raw);
  }
}

/** Types that can be part of a key compared with `<`/`>` (and ordered) on the server. */
export function isOrderableKeyType(c: MssqlColumn): boolean {
  return (
    !['text', 'ntext', 'image', 'xml', 'geography', 'geometry', 'sql_variant'].includes(c.typeName) &&
    !(['varchar', 'nvarchar', 'varbinary'].includes(c.typeName) && c.maxLength === -1)
  );
}

/**
 * A key value bound back into SQL: the parameter carries text (or bytes for binary types)
 * and the returned expression converts it on the server to the column's declared type, in
 * the column's collation for character types. The parse styles match the canonical forms
 * {@link convertValue} produces, so a value read from a column binds back to itself.
 */
export function keyParameter(c: MssqlColumn, param: string): { expression: string; binary: boolean } {
  const p = `@${param}`;
  const type = declaredType(c);
  switch (c.typeName) {
    case 'binary':
    case 'varbinary':
    case 'timestamp':
      return {
        expression: c.typeName === 'timestamp' ? `CAST(${p} AS binary(8))` : `CAST(${p} AS ${type})`,
        binary: true,
      };
    case 'char':
    case 'varchar':
      // Convert in the column's collation: its code page, and a varchar comparison — an
      // nvarchar parameter would compare under Unicode rules and page past rows.
      return {
        expression: c.collation ? `CAST(${p} COLLATE ${c.collation} AS ${type})` : `CAST(${p} AS ${type})`,
        binary: false,
      };
    case 'nchar':
    case 'nvarchar':
      return {
        expression: c.collation ? `CAST(${p} AS ${type}) COLLATE ${c.collation}` : `CAST(${p} AS ${type})`,
        binary: false,
      };
    case 'date':
      return { expression: `CONVERT(date, ${p}, 23)`, binary: false };
    case 'datetime2':
      return { expression: `CONVERT(${type}, ${p}, 126)`, binary: false };
    case 'datetime':
    case 'smalldatetime':
      return { expression: `CAST(CONVERT(datetime2(7), ${p}, 126) AS ${type})`, binary: false };
    case 'datetimeoffset':
      return { expression: `CONVERT(${type}, ${p}, 127)`, binary: false };
    case 'time':
      return { expression: `CAST(${p} AS ${type})`, binary: false };
    case 'hierarchyid':
      return { expression: `hierarchyid::Parse(${p})`, binary: false };
    default:
      return { expression: `CAST(${p} AS ${type})`, binary: false };
  }
}

/** The parameter value for {@link keyParameter}: text, or bytes for binary types. */
export function keyParameterValue(c: MssqlColumn, value: Value): string | Uint8Array | null {
  if (value === null) return null;
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'boolean') return value ? '1' : '0';
  if (Array.isArray(value)) throw new ValueShapeError(`column ${c.name}: an array is not a key value`);
  if (c.typeName === 'uniqueidentifier' && typeof value === 'string') return value;
  return String(value);
}
