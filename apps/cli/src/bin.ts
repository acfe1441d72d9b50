#!/usr/bin/env node
import { main } from './cli.js';
import { processIo } from './io.js';

const code = await main(process.argv.slice(2), processIo());
// Exit explicitly once output is flushed: a client command must not linger on idle
// sockets, and `serve` has already stopped everything it started when `main` returns.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
