import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { compareGuids, guidFromBytes, guidToBytes } from '../../src/types/guid.js';
import {
  convertValue,
  declaredType,
  keyParameter,
  keyParameterValue,
  logicalType,
  type MssqlColumn,
  selectExpression,
} from '../../src/types/mapping.js';
import { canonicalTimestampUtc } from '../../src/types/temporal.js';

/**
 * tedious's own TDS value reader, so the fixtures are the values the driver really returns
 * for the wire bytes of each type (not values we imagine it returns).
 */
const requireFromMssql = createRequire(createRequire(import.meta.url).resolve('mssql'));
const { readValue } = requireFromMssql('tedious/lib/value-parser') as {
  readValue(
    buf: Buffer,
    offset: number,
    metadata: Record<string, unknown>,
    options: Record<string, unknown>,
  ): { value: unknown };
};
const tds = (typeName: string, bytes: number[] | Buffer, meta: Record<string, unknown> = {}) =>
  readValue(Buffer.from(bytes), 0, { type: { name: typeName }, ...meta }, { useUTC: true, lowerCaseGuids: false })
    .value;

const col = (typeName: string, extra: Partial<MssqlColumn> = {}): MssqlColumn => ({
  name: 'c',
  typeName,
  maxLength: 8,
  precision: 0,
  scale: 0,
  nullable: true,
  ...extra,
});

describe('uniqueidentifier byte order', () => {
  // Display 00112233-4455-6677-8899-AABBCCDDEEFF travels as 33 22 11 00 55 44 77 66 88 99 AA … FF.
  const wire = [0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

  it('agrees with tedious on the wire layout, and ends lowercase', () => {
    const fromDriver = tds('UniqueIdentifier', [16, ...wire]);
    expect(fromDriver).toBe('00112233-4455-6677-8899-AABBCCDDEEFF');
    expect(convertValue(col('uniqueidentifier'), fromDriver)).toBe('00112233-4455-6677-8899-aabbccddeeff');
    expect(guidFromBytes(Uint8Array.from(wire))).toBe('00112233-4455-6677-8899-aabbccddeeff');
    expect(convertValue(col('uniqueidentifier'), Buffer.from(wire))).toBe('00112233-4455-6677-8899-aabbccddeeff');
    expect(Array.from(guidToBytes('00112233-4455-6677-8899-AABBCCDDEEFF'))).toEqual(wire);
  });
  it('sorts the way SQL Server does: the last group first, the first group last', () => {
    const values = [
      'ffffffff-ffff-ffff-ffff-000000000000',
      '00000000-0000-0000-0000-000000000001',
      '00000000-0000-0000-0001-000000000000',
      '00000000-0000-0001-0000-000000000000',
      '00000000-0001-0000-0000-000000000000',
      '00000001-0000-0000-0000-000000000000',
      // group 3 is stored little-endian: 0100 (stored 00 01) sorts before 0001 (stored 01 00)
      '00000000-0000-0100-0000-000000000000',
    ];
    const sorted = [...values].sort(compareGuids);
    expect(sorted).toEqual([
      '00000001-0000-0000-0000-000000000000',
      '00000000-0001-0000-0000-000000000000',
      '00000000-0000-0100-0000-000000000000',
      '00000000-0000-0001-0000-000000000000',
      '00000000-0000-0000-0001-000000000000',
      'ffffffff-ffff-ffff-ffff-000000000000',
      '00000000-0000-0000-0000-000000000001',
    ]);
  });
});

describe('values tedious returns → canonical values', () => {
  it('bigint arrives as an exact string', () => {
    const max = tds('BigInt', Buffer.from('ffffffffffffff7f', 'hex'));
    expect(max).toBe('9223372036854775807');
    expect(convertValue(col('bigint'), max)).toBe('9223372036854775807');
    expect(convertValue(col('bigint'), tds('BigInt', Buffer.from('0000000000000080', 'hex')))).toBe(
      '-9223372036854775808',
    );
  });

  it('decimal(38) would lose digits as a driver number, so it is read as text', () => {
    // 10^38 - 1 = 38 nines, DECIMALN: length 17, sign 1, 16 bytes little-endian.
    const n = 10n ** 38n - 1n;
    const le = Buffer.alloc(16);
    for (let i = 0, v = n; i < 16; i++, v >>= 8n) le[i] = Number(v & 0xffn);
    const driverNumber = tds('DecimalN', [17, 1, ...le], { precision: 38, scale: 0 });
    expect(typeof driverNumber).toBe('number');
    expect(String(driverNumber)).not.toBe(n.toString());
    const decimal = col('decimal', { precision: 38, scale: 4 });
    expect(selectExpression(decimal)).toBe('CAST([c] AS varchar(48))');
    expect(convertValue(decimal, '9999999999999999999999999999999999.9999')).toBe(
      '9999999999999999999999999999999999.9999',
    );
    expect(convertValue(decimal, '-.5000')).toBe('-0.5000');
    expect(logicalType(decimal)).toEqual({ kind: 'decimal', precision: 38, scale: 4 });
  });

  it('money is read with four decimals (style 2), never as a double', () => {
    const money = col('money');
    expect(selectExpression(money, 't.[m]')).toBe('CONVERT(varchar(32), t.[m], 2)');
    expect(convertValue(money, '922337203685477.5807')).toBe('922337203685477.5807');
    expect(logicalType(money)).toEqual({ kind: 'decimal', precision: 19, scale: 4 });
  });

  it('datetime2(7) keeps all seven digits (the driver Date keeps three)', () => {
    // 9999-12-31 23:59:59.9999999: time = 863999999999 units of 100 ns (5 bytes), days since 0001-01-01 = 3652058.
    const time = 863_999_999_999n;
    const bytes = [8];
    for (let i = 0, v = time; i < 5; i++, v >>= 8n) bytes.push(Number(v & 0xffn));
    const days = 3_652_058;
    bytes.push(days & 0xff, (days >> 8) & 0xff, (days >> 16) & 0xff);
    const driverDate = tds('DateTime2', bytes, { scale: 7 }) as Date;
    expect(driverDate.toISOString()).toBe('9999-12-31T23:59:59.999Z');

    const dt2 = col('datetime2', { scale: 7 });
    expect(selectExpression(dt2)).toBe('CONVERT(varchar(27), [c], 121)');
    expect(convertValue(dt2, '9999-12-31 23:59:59.9999999')).toBe('9999-12-31T23:59:59.9999999');
    expect(logicalType(dt2)).toEqual({ kind: 'other', sourceType: 'datetime2(7)' });
    expect(convertValue(dt2, '9999-12-31 23:59:59.9999999', 'microseconds')).toBe('9999-12-31T23:59:59.999999');
    expect(logicalType(dt2, 'microseconds')).toEqual({ kind: 'timestamp' });

    const dt2s3 = col('datetime2', { scale: 3 });
    expect(logicalType(dt2s3)).toEqual({ kind: 'timestamp' });
    expect(convertValue(dt2s3, '2024-02-29 01:02:03.004')).toBe('2024-02-29T01:02:03.004000');
    expect(convertValue(col('datetime2', { scale: 0 }), '0001-01-01 00:00:00')).toBe('0001-01-01T00:00:00.000000');
  });

  it('datetime, smalldatetime, date and time', () => {
    expect(selectExpression(col('datetime'))).toContain('AS datetime2(3)), 121)');
    expect(convertValue(col('datetime'), '1753-01-01 00:00:00.003')).toBe('1753-01-01T00:00:00.003000');
    expect(convertValue(col('smalldatetime'), '2079-06-06 23:59:00')).toBe('2079-06-06T23:59:00.000000');
    expect(convertValue(col('date'), '0001-01-01')).toBe('0001-01-01');
    expect(convertValue(col('time', { scale: 7 }), '23:59:59.9999999')).toBe('23:59:59.9999999');
    expect(convertValue(col('time', { scale: 3 }), '12:00:00.125')).toBe('12:00:00.125000');
    expect(logicalType(col('time', { scale: 3 }))).toEqual({ kind: 'time' });
  });

  it('datetimeoffset becomes the same instant in UTC, across day and year boundaries', () => {
    const dto = col('datetimeoffset', { scale: 7 });
    expect(convertValue(dto, '2024-01-01 01:30:00.1234567 +05:30')).toBe('2023-12-31T20:00:00.1234567Z');
    expect(convertValue(dto, '2023-12-31 22:00:00.0000000 -14:00')).toBe('2024-01-01T12:00:00.0000000Z');
    expect(canonicalTimestampUtc('2024-03-01 00:15:00 +00:30', 6)).toBe('2024-02-29T23:45:00.000000Z');
    expect(logicalType(col('datetimeoffset', { scale: 3 }))).toEqual({ kind: 'timestamptz' });
    expect(() => convertValue(dto, 'Jan  1 2024 12:00AM')).toThrow(/unexpected datetimeoffset text/);
  });

  it('bytes, bit, floats, strings and CLR types', () => {
    const rowversion = Buffer.from('00000000000007d1', 'hex');
    expect(convertValue(col('timestamp'), rowversion)).toBe(rowversion);
    expect(logicalType(col('timestamp'))).toEqual({ kind: 'bytes' });
    expect(convertValue(col('bit'), tds('BitN', [1, 1]))).toBe(true);
    expect(convertValue(col('real'), tds('Real', Buffer.from(new Float32Array([0.1]).buffer)))).toBe(Math.fround(0.1));
    expect(logicalType(col('float', { precision: 53 }))).toEqual({ kind: 'float64' });
    expect(convertValue(col('nvarchar', { maxLength: -1 }), 'ünïcødé\u0000')).toBe('ünïcødé\u0000');
    expect(selectExpression(col('hierarchyid'))).toBe('[c].ToString()');
    expect(selectExpression(col('geography'))).toContain('AsTextZM()');
    expect(selectExpression(col('sql_variant'))).toContain("SQL_VARIANT_PROPERTY([c], 'BaseType')");
    expect(logicalType(col('xml'))).toEqual({ kind: 'other', sourceType: 'xml' });
    expect(convertValue(col('xml'), '<a/>')).toBe('<a/>');
  });

  it('names the shape it expected when the driver returns something else', () => {
    expect(() => convertValue(col('decimal', { precision: 10, scale: 2 }), 12.5)).toThrow(/expected decimal text/);
    expect(convertValue(col('int'), null)).toBeNull();
  });
});

describe('declared types and key parameters', () => {
  it('prints declared types', () => {
    expect(declaredType(col('nvarchar', { maxLength: 100 }))).toBe('nvarchar(50)');
    expect(declaredType(col('varchar', { maxLength: -1 }))).toBe('varchar(max)');
    expect(declaredType(col('decimal', { precision: 12, scale: 2 }))).toBe('decimal(12,2)');
  });
  it('binds a varchar key in the column type and collation, never as nvarchar', () => {
    const key = col('varchar', { maxLength: 20, collation: 'SQL_Latin1_General_CP1_CI_AS' });
    expect(keyParameter(key, 'k0')).toEqual({
      expression: 'CAST(@k0 COLLATE SQL_Latin1_General_CP1_CI_AS AS varchar(20))',
      binary: false,
    });
  });
  it('binds temporal, decimal and guid keys from their canonical text', () => {
    expect(keyParameter(col('datetime2', { scale: 7 }), 'k1').expression).toBe('CONVERT(datetime2(7), @k1, 126)');
    expect(keyParameter(col('datetimeoffset', { scale: 7 }), 'k1').expression).toBe(
      'CONVERT(datetimeoffset(7), @k1, 127)',
    );
    expect(keyParameter(col('decimal', { precision: 38, scale: 0 }), 'k2').expression).toBe(
      'CAST(@k2 AS decimal(38,0))',
    );
    expect(keyParameter(col('uniqueidentifier'), 'k3').expression).toBe('CAST(@k3 AS uniqueidentifier)');
    expect(keyParameter(col('binary', { maxLength: 16 }), 'k4')).toEqual({
      expression: 'CAST(@k4 AS binary(16))',
      binary: true,
    });
    expect(keyParameterValue(col('bit'), true)).toBe('1');
    expect(keyParameterValue(col('bigint'), '9223372036854775807')).toBe('9223372036854775807');
  });
});
