import { invalidName } from '../errors.js';

/** PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes. */
export const MAX_IDENTIFIER_BYTES = 63;

/** Lowercase, and every character outside [a-z0-9_] becomes `_` (slot names allow nothing else). */
export function sanitizeName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

function checked(kind: string, name: string): string {
  if (Buffer.byteLength(name, 'utf8') > MAX_IDENTIFIER_BYTES) {
    throw invalidName(kind, name, `longer than ${MAX_IDENTIFIER_BYTES} bytes; use a shorter pipeline name`);
  }
  if (!/^[a-z0-9_]+$/.test(name)) throw invalidName(kind, name, 'only lowercase letters, digits and "_" are allowed');
  return name;
}

/** `nanosync_slot_<pipeline>`, sanitised and length-checked. */
export function slotNameFor(pipeline: string): string {
  return checked('slot', `nanosync_slot_${sanitizeName(pipeline)}`);
}

/** `nanosync_pub_<pipeline>`, sanitised and length-checked. */
export function publicationNameFor(pipeline: string): string {
  return checked('publication', `nanosync_pub_${sanitizeName(pipeline)}`);
}
