/**
 * Parser for the text form of PostgreSQL arrays.
 *
 * Grammar, as the server prints it:
 *   literal    := [ bounds '=' ] list
 *   bounds     := ( '[' int ':' int ']' )+        only when a lower bound is not 1
 *   list       := '{' [ item ( DELIM item )* ] '}'
 *   item       := list | '"' ( any char, with '\' escaping the next one )* '"' | bare
 *   bare       := chars up to DELIM or '}', '\' escaping the next one; `NULL` (any case) is null
 * DELIM is `,` for every built-in type except `box` (`;`). Blanks around items are ignored.
 *
 * Element text is handed to `decodeElement`; nesting gives nested JS arrays.
 */
export type ArrayItem<T> = T | null | ArrayItem<T>[];

export class ArrayLiteralError extends Error {}

const OPEN = 0x7b; // '{'
const CLOSE = 0x7d; // '}'
const QUOTE = 0x22; // '"'
const BACKSLASH = 0x5c; // '\'
const LBRACKET = 0x5b; // '['

function isBlank(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0b || c === 0x0c;
}

class ArrayParser<T> {
  pos = 0;
  readonly delimiter: number;

  constructor(
    readonly text: string,
    delimiter: string,
    readonly decodeElement: (text: string) => T,
  ) {
    this.delimiter = delimiter.charCodeAt(0);
  }

  skipBlanks(): void {
    const text = this.text;
    while (this.pos < text.length && isBlank(text.charCodeAt(this.pos))) this.pos++;
  }

  list(): ArrayItem<T>[] {
    const text = this.text;
    this.skipBlanks();
    if (text.charCodeAt(this.pos) !== OPEN) throw new ArrayLiteralError(`expected "{" at offset ${this.pos}`);
    this.pos++;
    const out: ArrayItem<T>[] = [];
    this.skipBlanks();
    if (text.charCodeAt(this.pos) === CLOSE) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipBlanks();
      const c = text.charCodeAt(this.pos);
      if (c === OPEN) out.push(this.list());
      else if (c === QUOTE) out.push(this.decodeElement(this.quoted()));
      else out.push(this.bare());
      this.skipBlanks();
      const sep = text.charCodeAt(this.pos);
      this.pos++;
      if (sep === this.delimiter) continue;
      if (sep === CLOSE) return out;
      throw new ArrayLiteralError(`expected "${String.fromCharCode(this.delimiter)}" or "}" at offset ${this.pos - 1}`);
    }
  }

  quoted(): string {
    const text = this.text;
    let i = this.pos + 1;
    let start = i;
    let s = '';
    for (;;) {
      if (i >= text.length) throw new ArrayLiteralError('unterminated quoted array element');
      const ch = text.charCodeAt(i);
      if (ch === BACKSLASH) {
        s += text.slice(start, i) + text.charAt(i + 1);
        i += 2;
        start = i;
      } else if (ch === QUOTE) {
        s += text.slice(start, i);
        this.pos = i + 1;
        return s;
      } else {
        i++;
      }
    }
  }

  bare(): T | null {
    const text = this.text;
    let i = this.pos;
    let start = i;
    let s = '';
    let escaped = false;
    while (i < text.length) {
      const ch = text.charCodeAt(i);
      if (ch === BACKSLASH) {
        s += text.slice(start, i) + text.charAt(i + 1);
        escaped = true;
        i += 2;
        start = i;
      } else if (ch === this.delimiter || ch === CLOSE) {
        break;
      } else {
        i++;
      }
    }
    s += text.slice(start, i);
    this.pos = i;
    const value = escaped ? s : s.trim();
    if (value === '') throw new ArrayLiteralError(`empty array element at offset ${i}`);
    if (!escaped && value.length === 4 && value.toUpperCase() === 'NULL') return null;
    return this.decodeElement(value);
  }
}

export function parseArrayLiteral<T>(
  text: string,
  delimiter: string,
  decodeElement: (text: string) => T,
): ArrayItem<T>[] {
  const parser = new ArrayParser(text, delimiter, decodeElement);
  if (text.charCodeAt(0) === LBRACKET) {
    const eq = text.indexOf('=');
    if (eq < 0) throw new ArrayLiteralError('array bounds without "="');
    parser.pos = eq + 1;
  }
  const result = parser.list();
  parser.skipBlanks();
  if (parser.pos !== text.length) throw new ArrayLiteralError(`unexpected text after array at offset ${parser.pos}`);
  return result;
}
