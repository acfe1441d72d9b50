import { defineSink } from '@nanosync/core';
import { type FileSinkConfig, fileSinkConfigSchema } from './config.js';
import { FileSink } from './writer.js';
import { fileSinkErrors } from './errors.js';

/**
 * The file sink: change events as JSON lines, one file per table (`path:`) or one file
 * for everything (`file:`). Each `write()` is fsynced before it resolves. It is the sink
 * the quickstart uses, and a handy way to see what a pipeline produces.
 */
export default defineSink<FileSinkConfig>({
  type: 'file',
  configSchema: fileSinkConfigSchema,
  errorCodes: fileSinkErrors,
  create(config) {
    return new FileSink(config);
  },
  // Lines can be encoded in worker threads by ./worker (src/worker.ts under tsx).
  workerModule: new URL('./worker.js', import.meta.url).href,
});

export { type FileSinkConfig, fileSinkConfigSchema } from './config.js';
export { type FileSinkRecord, type JsonValue, tableFileName, toJsonLine, toJsonValue, toRecord } from './encode.js';
export { iterateJsonLines, latestByKey, type ReadJsonLinesOptions, readJsonLines } from './read.js';
export { FileSink } from './writer.js';
