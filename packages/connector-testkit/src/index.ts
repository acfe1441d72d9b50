/**
 * @nanosync/connector-testkit — what every nanosync connector runs to prove it keeps the
 * connector contract: the source and sink conformance suites (vitest), the end-to-end
 * oracle of RELIABILITY.md, and a harness that runs a real `nanosync` process.
 */
export {
  type DriverChange,
  registerSourceTests,
  type SourceSuiteOptions,
  type SourceTestDriver,
  type SourceTestHarness,
} from './source-suite.js';
export {
  type ReadBack,
  type ReadBackRecord,
  registerSinkTests,
  type SinkSuiteOptions,
  type SinkTestHarness,
  type UnrepresentableValue,
} from './sink-suite.js';
export { KIT_COLUMNS, type KitRow, kitRow, kitTableSchema, seedRows } from './kit-table.js';
export {
  assertOracle,
  canonicalJson,
  checkHistoryOrder,
  checkNothingLost,
  checkPositionOrder,
  type ComparePositions,
  compareAsStrings,
  compareWithSnapshot,
  type CompareOptions,
  type ExpectedChange,
  keyId,
  OracleError,
  type OracleInput,
  type OracleRecord,
  type ReducedState,
  reduceByKey,
  runOracle,
} from './oracle.js';
export { describeEvents, StreamReader } from './stream-reader.js';
export {
  eventually,
  type ExitResult,
  NanosyncProcess,
  NanosyncServer,
  type NanosyncServerOptions,
  nanosyncCommand,
  runNanosync,
  sourceScriptCommand,
  TestProcess,
  type TestProcessOptions,
} from './process.js';
export { jsonRowsAsObjects } from './json-rows.js';
export { mulberry32 } from './random.js';
export { checkFlushSamples, type FlushSample, FlushSampler, type FlushSamplerOptions } from './flush-sampler.js';
