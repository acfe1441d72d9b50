/**
 * Internal entry (`@nanosync/source-postgres/internal`): pieces of the connector that
 * nanosync's own bench drives without a database (the S0 in-process ceiling decodes COPY
 * text as a snapshot read does). Not a public API: it changes without notice.
 */
export { parseCopyTextRow } from './snapshot/copy-out.js';
export { rowDecoder } from './snapshot/read-partition.js';
export { jsonRowWriter } from './snapshot/json-rows.js';
export { createJsonChangeWriter } from './stream/json-changes.js';
export { builtinType, logicalTypeOf, sourceTypeName } from './types/index.js';
export type { PgColumn } from './describe.js';
export { decodePgOutput } from './stream/pgoutput.js';
export { insertEvent } from './stream/change-events.js';
export type { StreamRelation } from './stream/relations.js';
