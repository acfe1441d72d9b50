import { ErrorCode, NanosyncError } from '@nanosync/core';
import { describe, expect, it } from 'vitest';
import { parseHostPort } from '../../src/args.js';
import { commands, main } from '../../src/cli.js';
import { ExitCode, exitCodeFor, UsageError } from '../../src/exit-codes.js';
import { captureIo } from './helpers.js';

describe('help', () => {
  it('prints the overview with every command and exits 0 for --help, 2 with no arguments', async () => {
    const io = captureIo();
    expect(await main(['--help'], io)).toBe(ExitCode.Ok);
    for (const name of ['serve', 'run', 'apply', 'validate', 'list', 'pipeline', 'metrics', 'monitor']) {
      expect(io.stdout.join('\n')).toMatch(new RegExp(`^  ${name}\\s`, 'm'));
    }
    expect(await main([], captureIo())).toBe(ExitCode.Usage);
  });

  it.each(commands.map((c) => c.name))(
    '%s --help prints its usage and exits 0 without doing anything',
    async (name) => {
      for (const flag of ['--help', '-h']) {
        const io = captureIo({ NANOSYNC_STATE: '/nonexistent/never/created/state.db' });
        expect(await main([name, flag], io)).toBe(ExitCode.Ok);
        expect(io.stdout.join('\n')).toContain(`Usage: nanosync ${name}`);
        expect(io.stderr).toEqual([]);
      }
    },
  );

  it('help COMMAND is the same as COMMAND --help', async () => {
    const a = captureIo();
    const b = captureIo();
    await main(['help', 'apply'], a);
    await main(['apply', '--help'], b);
    expect(a.stdout).toEqual(b.stdout);
  });

  it('prints the version', async () => {
    const io = captureIo();
    expect(await main(['--version'], io)).toBe(0);
    expect(io.stdout[0]).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('usage errors exit 2 with one line and a pointer to --help', () => {
  it.each([
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['apply', '--bogus'], /nanosync apply: unknown option '--bogus'/],
    [['apply'], /nanosync apply: --file is required/],
    [['run'], /nanosync run: --file is required/],
    [['validate'], /nanosync validate: --file is required/],
    [['list'], /nanosync list: say what to list/],
    [['list', 'tables'], /cannot list 'tables'/],
    [['pipeline'], /missing action/],
    [['pipeline', 'explode', 'x'], /unknown action 'explode'/],
    [['pipeline', 'pause'], /missing pipeline name/],
    [['pipeline', 'pause', 'a', 'b'], /unexpected argument 'b'/],
    [['serve', '--listen', 'nope'], /--listen must look like 127\.0\.0\.1:7654/],
    [['serve', '--log-level', 'loud'], /--log-level must be one of/],
    [['serve', '--state'], /option '--state <value>' argument missing/i],
  ])('%j', async (argv, message) => {
    const io = captureIo();
    expect(await main(argv as string[], io)).toBe(ExitCode.Usage);
    expect(io.stdout).toEqual([]);
    expect(io.stderr[0]).toMatch(message);
    expect(io.stderr.length).toBeLessThanOrEqual(2);
  });
});

describe('parseHostPort', () => {
  it.each([
    ['127.0.0.1:7654', { host: '127.0.0.1', port: 7654 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:8080', { host: '::1', port: 8080 }],
    ['9000', { host: '127.0.0.1', port: 9000 }],
  ])('%s', (text, expected) => {
    expect(parseHostPort(text, '--listen')).toEqual(expected);
  });

  it.each(['', 'host', 'host:', 'host:70000', ':12', 'a:b:c'])('rejects %j', (text) => {
    expect(() => parseHostPort(text, '--listen')).toThrow(UsageError);
  });
});

describe('exit codes', () => {
  it('maps config, token, port and state problems to 2 and the rest to 1', () => {
    expect(exitCodeFor(new UsageError('x'))).toBe(2);
    expect(exitCodeFor(new NanosyncError(ErrorCode.ConfigInvalid, 'x'))).toBe(2);
    expect(exitCodeFor(new NanosyncError(ErrorCode.ConnectorNotFound, 'x'))).toBe(2);
    expect(exitCodeFor(new NanosyncError(ErrorCode.ServerAuth, 'x'))).toBe(2);
    expect(exitCodeFor(new NanosyncError(ErrorCode.PortInUse, 'x'))).toBe(2);
    expect(exitCodeFor(new NanosyncError(ErrorCode.StateUnavailable, 'x'))).toBe(2);
    expect(exitCodeFor(new NanosyncError(ErrorCode.ServerUnavailable, 'x'))).toBe(1);
    expect(exitCodeFor(new NanosyncError(ErrorCode.PipelineNotFound, 'x'))).toBe(1);
    expect(exitCodeFor(new Error('boom'))).toBe(1);
  });
});
