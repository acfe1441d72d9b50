import { type Document, isAlias, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { ErrorCode } from '../errors.js';
import type { ConfigIssue, PathSegment } from './issues.js';

/** Finds where a path points in the source text; undefined when it cannot (plain objects, defaults). */
export type Locator = (
  path: readonly PathSegment[],
  target?: 'key' | 'value',
) => { line: number; column: number } | undefined;

export interface ParsedYaml {
  /** The document as plain data, `${env:…}` untouched. */
  value: unknown;
  locate: Locator;
  issues: ConfigIssue[];
}

/**
 * Parse one YAML document, keeping node positions so that later issues can say
 * line:column. Syntax errors (and duplicate keys, several documents in one file) become
 * issues; aliases are expanded with yaml's default limit, which stops alias bombs.
 */
export function parseYaml(text: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const issues: ConfigIssue[] = [];
  for (const error of doc.errors) {
    const position = error.linePos?.[0];
    const text = error.message.includes('multiple documents')
      ? 'the file holds several YAML documents (---); put all connections and pipelines in one'
      : firstLine(error.message);
    issues.push({
      path: '',
      message: `YAML syntax: ${text}`,
      code: ErrorCode.ConfigYaml,
      ...(position === undefined ? {} : { line: position.line, column: position.col }),
    });
  }
  let value: unknown;
  if (issues.length === 0) {
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      issues.push({ path: '', message: `YAML: ${firstLine((err as Error).message)}`, code: ErrorCode.ConfigYaml });
    }
  }
  const locate: Locator = (path, target = 'value') => {
    const offset = findOffset(doc, path, target);
    if (offset === undefined) return undefined;
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  return { value, locate, issues };
}

function firstLine(message: string): string {
  return message
    .split('\n')[0]!
    .replace(/ at line \d+, column \d+:?$/, '')
    .trim();
}

function findOffset(doc: Document, path: readonly PathSegment[], target: 'key' | 'value'): number | undefined {
  let node: unknown = doc.contents;
  let keyNode: unknown;
  for (const segment of path) {
    node = deref(doc, node);
    keyNode = undefined;
    if (isMap(node) && typeof segment === 'string') {
      const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === segment);
      if (pair === undefined) return undefined;
      keyNode = pair.key;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number') {
      node = node.items[segment];
    } else {
      return undefined;
    }
  }
  const chosen = (target === 'key' && keyNode !== undefined ? keyNode : (node ?? keyNode)) as Node | undefined;
  return chosen?.range?.[0];
}

function deref(doc: Document, node: unknown): unknown {
  for (let depth = 0; isAlias(node) && depth < 16; depth++) node = node.resolve(doc);
  return node;
}
