import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError } from '../../src/index.js';
import {
  decryptSecret,
  encryptSecret,
  isEncryptedSecret,
  loadOrCreateSecretKey,
  parseSecretKey,
} from '../../src/host.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ns-secret-key-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function thrown(fn: () => unknown): NanosyncError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NanosyncError);
    return err as NanosyncError;
  }
  throw new Error('expected an error');
}

describe('secrets: AES-256-GCM values', () => {
  const key = randomBytes(32);

  it('round-trips a value, in the enc:v1: format', () => {
    const encrypted = encryptSecret('s3cr3t-pässword', key);
    expect(encrypted).toMatch(/^enc:v1:[A-Za-z0-9+/]+=*$/);
    expect(isEncryptedSecret(encrypted)).toBe(true);
    expect(encrypted).not.toContain('s3cr3t');
    expect(decryptSecret(encrypted, key)).toBe('s3cr3t-pässword');
  });

  it('uses a fresh IV each time', () => {
    expect(encryptSecret('same', key)).not.toBe(encryptSecret('same', key));
  });

  it('fails clearly with the wrong key, without printing the value', () => {
    const encrypted = encryptSecret('my-password', key);
    const err = thrown(() => decryptSecret(encrypted, randomBytes(32), 'connections.db.dsn'));
    expect(err.code).toBe(ErrorCode.SecretKey);
    expect(err.message).toContain('cannot decrypt connections.db.dsn');
    expect(err.message).toContain('NANOSYNC_SECRET_KEY');
    expect(err.message).not.toContain('my-password');
  });

  it('detects a tampered value', () => {
    const encrypted = encryptSecret('value', key);
    const bytes = Buffer.from(encrypted.slice('enc:v1:'.length), 'base64');
    bytes[bytes.length - 1]! ^= 1;
    expect(thrown(() => decryptSecret(`enc:v1:${bytes.toString('base64')}`, key)).code).toBe(ErrorCode.SecretKey);
    expect(thrown(() => decryptSecret('enc:v1:AAAA', key)).message).toMatch(/truncated/);
  });
});

describe('secrets: the key', () => {
  it('parses 32 bytes as hex or base64 (standard or URL-safe)', () => {
    const key = randomBytes(32);
    expect(parseSecretKey(key.toString('hex'), 'k').equals(key)).toBe(true);
    expect(parseSecretKey(key.toString('base64'), 'k').equals(key)).toBe(true);
    expect(parseSecretKey(`${key.toString('base64url')}\n`, 'k').equals(key)).toBe(true);
  });

  it.each(['short', randomBytes(16).toString('hex'), randomBytes(31).toString('base64'), `${'z'.repeat(64)}`])(
    'refuses the bad key %s without printing it',
    (text) => {
      const err = thrown(() => parseSecretKey(text, 'NANOSYNC_SECRET_KEY'));
      expect(err.code).toBe(ErrorCode.SecretKey);
      expect(err.message).toContain('NANOSYNC_SECRET_KEY is not a valid secret key');
      expect(err.message).not.toContain(text);
    },
  );

  it('takes NANOSYNC_SECRET_KEY from the environment and creates no file', async () => {
    const key = randomBytes(32);
    const keyFile = join(dir, 'secret.key');
    const loaded = await loadOrCreateSecretKey({ env: { NANOSYNC_SECRET_KEY: key.toString('base64') }, keyFile });
    expect(loaded.equals(key)).toBe(true);
    await expect(stat(keyFile)).rejects.toThrow();
  });

  it('rejects a bad NANOSYNC_SECRET_KEY clearly', async () => {
    await expect(
      loadOrCreateSecretKey({ env: { NANOSYNC_SECRET_KEY: 'not-a-key' }, keyFile: join(dir, 'k') }),
    ).rejects.toThrow(/NANOSYNC_SECRET_KEY is not a valid secret key/);
  });

  it('generates a key file with mode 0600 in a new folder, then reuses it', async () => {
    const keyFile = join(dir, 'state', 'secret.key');
    const first = await loadOrCreateSecretKey({ env: {}, keyFile });
    expect(first).toHaveLength(32);
    const info = await stat(keyFile);
    if (process.platform !== 'win32') expect(info.mode & 0o777).toBe(0o600);
    expect(parseSecretKey(await readFile(keyFile, 'utf8'), 'file').equals(first)).toBe(true);
    const second = await loadOrCreateSecretKey({ env: {}, keyFile });
    expect(second.equals(first)).toBe(true);
  });

  it('two processes racing to create the key file end up with the same key', async () => {
    const keyFile = join(dir, 'secret.key');
    const keys = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateSecretKey({ env: {}, keyFile })));
    for (const key of keys) expect(key.equals(keys[0]!)).toBe(true);
  });

  it('names the key file when its content is not a key, and warns when others can read it', async () => {
    const keyFile = join(dir, 'secret.key');
    await writeFile(keyFile, 'garbage\n');
    await expect(loadOrCreateSecretKey({ env: {}, keyFile })).rejects.toThrow(
      `the secret key file ${keyFile} is not a valid secret key`,
    );
    await writeFile(keyFile, randomBytes(32).toString('hex'));
    await chmod(keyFile, 0o644);
    const warnings: string[] = [];
    await loadOrCreateSecretKey({ env: {}, keyFile, warn: (m) => warnings.push(m) });
    if (process.platform !== 'win32') expect(warnings[0]).toMatch(/readable by other users.*chmod 600/);
  });
});
