import type { TableRef } from '../contract/connector.js';

/**
 * Table names in the config are `schema.table`.
 *
 * Each part is taken literally: no case folding, so `public.Orders` is the table
 * `Orders` (unlike unquoted SQL). A part may be wrapped in double quotes, and must be
 * when it contains a dot, a double quote, whitespace or a control character, or is
 * empty; inside quotes a double quote is written twice. So the table `order.items` in
 * schema `public` is `public."order.items"`, and `a"b` is `public."a""b"`.
 */
export type TableNameResult = { ok: true; ref: TableRef } | { ok: false; message: string };

const NEEDS_QUOTES = /[."\s\p{Cc}]/u;

export function parseTableName(text: string): TableNameResult {
  const parts: string[] = [];
  let i = 0;
  const expectation = 'write tables as schema.table, e.g. public.orders (quote a part with "" when it contains a dot)';
  while (true) {
    if (text[i] === '"') {
      let part = '';
      i++;
      while (true) {
        if (i >= text.length) return { ok: false, message: `unterminated quoted name in table "${text}"` };
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i];
        i++;
      }
      if (part === '') return { ok: false, message: `empty quoted name in table "${text}"` };
      parts.push(part);
    } else {
      let end = i;
      while (end < text.length && text[end] !== '.') end++;
      const part = text.slice(i, end);
      if (part === '') return { ok: false, message: `"${text}" has an empty name part; ${expectation}` };
      if (NEEDS_QUOTES.test(part)) {
        return {
          ok: false,
          message: `"${text}": the name part "${part}" contains a quote, whitespace or control character; wrap it in double quotes (double any " inside)`,
        };
      }
      parts.push(part);
      i = end;
    }
    if (i === text.length) break;
    if (text[i] !== '.')
      return { ok: false, message: `"${text}": unexpected text after a quoted name; ${expectation}` };
    i++;
  }
  if (parts.length !== 2) {
    const what = parts.length === 1 ? 'has no schema' : `has ${parts.length} parts`;
    return { ok: false, message: `table "${text}" ${what}; ${expectation}` };
  }
  return { ok: true, ref: { schema: parts[0]!, name: parts[1]! } };
}

function formatPart(part: string): string {
  return part === '' || NEEDS_QUOTES.test(part) ? `"${part.replaceAll('"', '""')}"` : part;
}

/** The canonical spelling: parts quoted only when they need it. `parseTableName(formatTableName(t))` gives `t` back. */
export function formatTableName(ref: TableRef): string {
  return `${formatPart(ref.schema)}.${formatPart(ref.name)}`;
}
