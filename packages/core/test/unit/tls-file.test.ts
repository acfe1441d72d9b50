import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode, NanosyncError, readTlsFile } from '../../src/index.js';

describe('readTlsFile: TLS files named by connector properties', () => {
  it('returns the file, and reports a missing or unreadable one as a config problem naming property and file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ns-tls-'));
    try {
      const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
      await writeFile(join(dir, 'ca.pem'), pem);
      expect(readTlsFile('tls_ca_cert', join(dir, 'ca.pem')).toString('utf8')).toBe(pem);

      const missing = join(dir, 'nope.pem');
      const err = (() => {
        try {
          readTlsFile('sslrootcert', missing);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(NanosyncError);
      expect((err as NanosyncError).code).toBe(ErrorCode.ConfigInvalid);
      expect((err as NanosyncError).message).toBe(`sslrootcert file "${missing}" does not exist`);
      expect(() => readTlsFile('ca_file', dir)).toThrow(`ca_file file "${dir}" cannot be read`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
