import { isPackageType, isPathType } from '../discovery/candidates.js';
import type { PathSegment } from './issues.js';
import { type Collector, checkKeys, describe, readMap, readProperties, readString, type YamlMap } from './structure.js';
import type { ConnectionConfig } from './types.js';

/** The `connections:` list: names unique and well formed, a `type` a connector can be found by. */

export const CONNECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const SHORT_TYPE = /^[a-z0-9][a-z0-9._-]*$/;
export const CONNECTION_KEYS = ['name', 'type', 'dsn', 'properties'];

export interface ReadConnection {
  config: ConnectionConfig;
  path: PathSegment[];
}

export function readConnections(top: YamlMap, out: Collector): ReadConnection[] {
  const list = top.connections;
  if (list === undefined || list === null) {
    out.missing([], 'connections', 'connections is required: a list of { name, type, dsn or properties }');
    return [];
  }
  if (!Array.isArray(list)) {
    out.issue(['connections'], `connections must be a list, found ${describe(list)}`);
    return [];
  }
  const result: ReadConnection[] = [];
  const seen = new Set<string>();
  list.forEach((item, i) => {
    const path: PathSegment[] = ['connections', i];
    const map = readMap(item, path, 'a connection', out);
    if (map === undefined) return;
    checkKeys(map, CONNECTION_KEYS, path, out, 'a connection');
    const name = readString(map, 'name', path, out, true);
    const type = readString(map, 'type', path, out, true);
    const dsn = readString(map, 'dsn', path, out, false);
    const properties = readProperties(map, path, out);
    let ok = name !== undefined && type !== undefined;
    if (name !== undefined && !CONNECTION_NAME.test(name)) {
      out.issue(
        [...path, 'name'],
        `connection name "${name}" must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`,
      );
      ok = false;
    }
    if (name !== undefined && seen.has(name)) {
      out.issue([...path, 'name'], `connection name "${name}" is used more than once`);
      ok = false;
    }
    if (name !== undefined) seen.add(name);
    if (type !== undefined && !isPackageType(type) && !isPathType(type) && !SHORT_TYPE.test(type)) {
      const hint = SHORT_TYPE.test(type.toLowerCase()) ? ` (did you mean "${type.toLowerCase()}"?)` : '';
      out.issue(
        [...path, 'type'],
        `connector type "${type}" must be lowercase letters, digits, ".", "_" or "-", a package name or a ./path${hint}`,
      );
      ok = false;
    }
    if (!ok && name !== undefined) out.invalidConnections.add(name);
    if (ok) {
      result.push({
        config: {
          name: name!,
          type: type!,
          ...(dsn === undefined ? {} : { dsn }),
          properties,
          ...writtenField(out.writtenAt(path)),
        },
        path,
      });
    }
  });
  return result;
}

function writtenField(node: Record<string, unknown> | undefined): { written?: Record<string, unknown> } {
  return node === undefined ? {} : { written: node };
}
