import { ErrorCode } from '../errors.js';
import { type ConfigIssue, didYouMean, formatPath, type PathSegment } from './issues.js';
import type { Locator } from './yaml-document.js';

/**
 * The structural layer of config validation: reading plain YAML data into typed fields.
 * Each reader checks one shape (a mapping, a string, a whole number, the allowed keys) and
 * reports what is wrong through a {@link Collector}, which stamps every issue with its YAML
 * path and the line and column it was written at. The concerns built on it live next door:
 * `read-connections.ts`, `read-pipelines.ts`, `read-target-mappings.ts` (pipeline
 * semantics) and `connectors.ts` (each connector's own properties).
 */

export type YamlMap = Record<string, unknown>;

export class Collector {
  readonly issues: ConfigIssue[] = [];
  readonly warnings: ConfigIssue[] = [];
  /** Connections written in the file but rejected: references to them get no second issue. */
  readonly invalidConnections = new Set<string>();
  constructor(
    private readonly locate: Locator | undefined,
    private readonly document: unknown,
  ) {}

  /** The node at `path` in the document as written (before `${env:…}` resolution), when it is a mapping. */
  writtenAt(path: readonly PathSegment[]): Record<string, unknown> | undefined {
    let node: unknown = this.document;
    for (const segment of path) {
      if (typeof node !== 'object' || node === null) return undefined;
      node = (node as Record<PathSegment, unknown>)[segment];
    }
    return isPlainMap(node) ? structuredClone(node) : undefined;
  }

  private make(
    path: readonly PathSegment[],
    message: string,
    target: 'key' | 'value',
    code?: ErrorCode,
    at?: readonly PathSegment[],
  ): ConfigIssue {
    const position = this.locate?.(at ?? path, target);
    return {
      path: formatPath(path),
      message,
      ...(position === undefined ? {} : { line: position.line, column: position.column }),
      ...(code === undefined ? {} : { code }),
    };
  }

  /** `at` locates the issue somewhere else than `path` (a missing key is shown at its parent). */
  issue(
    path: readonly PathSegment[],
    message: string,
    options: { code?: ErrorCode; target?: 'key' | 'value'; at?: readonly PathSegment[] } = {},
  ) {
    this.issues.push(this.make(path, message, options.target ?? 'value', options.code, options.at));
  }

  /** A required key that is absent: reported under its own path, located at the parent mapping. */
  missing(parent: readonly PathSegment[], key: string, message: string) {
    const present = this.locate?.([...parent, key], 'key') !== undefined;
    this.issue([...parent, key], message, present ? { target: 'key' } : { at: parent });
  }

  warn(path: readonly PathSegment[], message: string) {
    this.warnings.push(this.make(path, message, 'key'));
  }
}

export function isPlainMap(value: unknown): value is YamlMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (isPlainMap(value)) return 'a mapping';
  return `a ${typeof value}`;
}

export function readMap(value: unknown, path: PathSegment[], what: string, out: Collector): YamlMap | undefined {
  if (isPlainMap(value)) return value;
  out.issue(path, `${what} must be a mapping, found ${describe(value)}`);
  return undefined;
}

export function checkKeys(
  map: YamlMap,
  allowed: readonly string[],
  path: PathSegment[],
  out: Collector,
  where: string,
) {
  for (const key of Object.keys(map)) {
    if (allowed.includes(key)) continue;
    out.issue(
      [...path, key],
      `unknown key "${key}" in ${where}${didYouMean(key, allowed)}; allowed: ${allowed.join(', ')}`,
      {
        code: ErrorCode.ConfigUnknownKey,
        target: 'key',
      },
    );
  }
}

export function readString(
  map: YamlMap,
  key: string,
  path: PathSegment[],
  out: Collector,
  required: boolean,
): string | undefined {
  const value = map[key];
  if (value === undefined || value === null) {
    if (required) out.missing(path, key, `${key} is required`);
    return undefined;
  }
  if (typeof value !== 'string') {
    const hint = typeof value === 'number' || typeof value === 'boolean' ? '; put it in quotes' : '';
    out.issue([...path, key], `${key} must be a string, found ${describe(value)}${hint}`);
    return undefined;
  }
  if (value.trim() === '') {
    out.issue([...path, key], `${key} must not be empty`);
    return undefined;
  }
  return value;
}

export function readProperties(map: YamlMap, path: PathSegment[], out: Collector): Record<string, unknown> {
  const value = map.properties;
  if (value === undefined || value === null) return {};
  return readMap(value, [...path, 'properties'], 'properties', out) ?? {};
}

export function readPositiveInteger(
  value: unknown,
  path: PathSegment[],
  out: Collector,
  max: number,
): number | undefined {
  let n: number | undefined;
  if (typeof value === 'number' && Number.isInteger(value)) n = value;
  else if (typeof value === 'string' && /^\d+$/.test(value.trim())) n = Number(value.trim());
  if (n === undefined || n < 1 || n > max) {
    out.issue(
      path,
      `must be a whole number from 1 to ${max}, found ${typeof value === 'string' ? JSON.stringify(value) : describe(value)}`,
    );
    return undefined;
  }
  return n;
}
