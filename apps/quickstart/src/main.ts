import { ErrorCode, NanosyncError } from '@nanosync/core';
import { processIo } from 'nanosync';
import { quickstart } from './quickstart.js';

const io = processIo();
quickstart(process.argv.slice(2), io).then(
  (code) => process.exit(code),
  (err: unknown) => {
    io.err(`quickstart: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(NanosyncError.is(err) && err.code === ErrorCode.CliUsage ? 2 : 1);
  },
);
