import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { ErrorCode, NanosyncError } from '../errors.js';

/**
 * Literal secrets at rest: AES-256-GCM with a random 96-bit IV per value, written as
 * `enc:v1:<base64 of iv (12 bytes) | auth tag (16 bytes) | ciphertext>`. The tag makes a
 * wrong key or a tampered value fail loudly instead of yielding garbage.
 */
export const ENCRYPTED_PREFIX = 'enc:v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

function checkKey(key: Buffer): void {
  if (key.length !== KEY_BYTES) {
    throw new NanosyncError(ErrorCode.SecretKey, `the secret key must be ${KEY_BYTES} bytes, got ${key.length}`);
  }
}

export function isEncryptedSecret(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(ENCRYPTED_PREFIX);
}

export function encryptSecret(plaintext: string, key: Buffer): string {
  checkKey(key);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ENCRYPTED_PREFIX + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
}

/** Decrypt an `enc:v1:` value. `where` names the field for the error (never the value). */
export function decryptSecret(value: string, key: Buffer, where = 'a stored secret'): string {
  checkKey(key);
  if (!isEncryptedSecret(value)) {
    throw new NanosyncError(
      ErrorCode.SecretKey,
      `${where} is not an encrypted value (expected the ${ENCRYPTED_PREFIX} prefix)`,
    );
  }
  const packed = Buffer.from(value.slice(ENCRYPTED_PREFIX.length), 'base64');
  if (packed.length < IV_BYTES + TAG_BYTES) {
    throw new NanosyncError(ErrorCode.SecretKey, `${where} is truncated or corrupt`);
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, packed.subarray(0, IV_BYTES));
    decipher.setAuthTag(packed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(packed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch (err) {
    throw new NanosyncError(
      ErrorCode.SecretKey,
      `cannot decrypt ${where}: the secret key differs from the one used when the pipeline was applied ` +
        '(check NANOSYNC_SECRET_KEY or the key file), or the stored value is corrupt; apply the config again with the right key',
      { cause: err },
    );
  }
}

/** Keyed digest (HMAC-SHA256, hex): a fingerprint that says nothing about secrets inside the input. */
export function keyedDigest(text: string, key: Buffer): string {
  return createHmac('sha256', key).update('nanosync definition hash v1\u0000').update(text).digest('hex');
}
