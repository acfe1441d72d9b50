/**
 * What the `nanosync` binary runs once bin.ts has checked the Node version: the CLI with the
 * process's arguments, then an explicit exit once output is flushed (a client command must
 * not linger on idle sockets, and `serve` has already stopped everything it started when
 * `main` returns).
 */
import { main } from './cli.js';
import { processIo } from './io.js';

const code = await main(process.argv.slice(2), processIo());
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
