import { registerSinkTests, registerSourceTests } from '../../src/index.js';
import {
  inMemoryLogSinkHarness,
  inMemorySourceHarness,
  inMemoryTableSinkHarness,
  UNREPRESENTABLE,
} from '../in-memory.js';

// The suites pass on correct connectors (broken ones fail them: broken-connectors.test.ts).
registerSourceTests(async () => inMemorySourceHarness(), {
  name: 'InMemorySource',
  exportsSnapshot: true,
  truncate: true,
  streamWaitMs: 5_000,
});
registerSinkTests(async () => inMemoryLogSinkHarness(), { name: 'InMemoryLogSink', unrepresentable: UNREPRESENTABLE });
registerSinkTests(async () => inMemoryTableSinkHarness(), {
  name: 'InMemoryTableSink',
  unrepresentable: UNREPRESENTABLE,
});
registerSourceTests(async () => inMemorySourceHarness(), {
  name: 'NeedsAServer',
  skip: 'needs a server that is not here (a named skip)',
  exportsSnapshot: true,
  truncate: true,
});
