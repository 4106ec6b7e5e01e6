/**
 * Attachment crypto (PROTOCOL.md §7): keys = AES-256 key (32) ‖ HMAC-SHA256 key (32);
 * file = iv(16) ‖ AES-256-CBC/PKCS7 ciphertext ‖ HMAC(iv ‖ ciphertext)(32). The HMAC is checked first
 * (constant time), then the SHA-256 digest of the whole file, then the plaintext is cut to `size`
 * (senders pad attachments).
 */
import crypto from 'node:crypto';
import { ProtocolError } from '../errors';
import { paddedAttachmentSize } from './attachment-stream';

export function decryptAttachment(
  file: Uint8Array,
  keys: Uint8Array,
  digest: Uint8Array | null | undefined,
  size?: number | null,
): Uint8Array {
  if (keys.length !== 64) throw new ProtocolError('Attachment keys must be 64 bytes');
  const data = Buffer.from(file);
  if (data.length < 16 + 16 + 32) throw new ProtocolError('Attachment is too short');
  const aesKey = keys.subarray(0, 32);
  const macKey = keys.subarray(32, 64);
  const body = data.subarray(0, data.length - 32);
  const mac = data.subarray(data.length - 32);
  const expected = crypto.createHmac('sha256', macKey).update(body).digest();
  if (!crypto.timingSafeEqual(mac, expected)) throw new ProtocolError('Attachment MAC mismatch');
  if (!digest || digest.length === 0) throw new ProtocolError('Attachment has no digest to verify');
  const actual = crypto.createHash('sha256').update(data).digest();
  if (actual.length !== digest.length || !crypto.timingSafeEqual(actual, Buffer.from(digest))) {
    throw new ProtocolError('Attachment digest mismatch');
  }
  let plain: Buffer;
  try {
    const decipher = crypto.createDecipheriv('aes-256-cbc', aesKey, body.subarray(0, 16));
    plain = Buffer.concat([decipher.update(body.subarray(16)), decipher.final()]);
  } catch (e) {
    throw new ProtocolError('Attachment could not be decrypted', { cause: e });
  }
  if (size !== undefined && size !== null && size > 0) {
    if (size > plain.length)
      throw new ProtocolError('Attachment is shorter than its declared size');
    plain = plain.subarray(0, size);
  }
  return new Uint8Array(plain);
}

/**
 * Encrypts an attachment as Signal's clients do. With `pad`, the plaintext is first zero-padded to
 * paddedAttachmentSize() (what Signal's apps send); `size` stays the unpadded length.
 */
export function encryptAttachment(
  plaintext: Uint8Array,
  keys: Uint8Array = crypto.randomBytes(64),
  opts: { pad?: boolean } = {},
): { file: Uint8Array; keys: Uint8Array; digest: Uint8Array; size: number } {
  const iv = crypto.randomBytes(16);
  const cipher = crypto.createCipheriv('aes-256-cbc', keys.subarray(0, 32), iv);
  const padded = opts.pad
    ? Buffer.concat([
        plaintext,
        Buffer.alloc(paddedAttachmentSize(plaintext.length) - plaintext.length),
      ])
    : plaintext;
  const body = Buffer.concat([iv, cipher.update(padded), cipher.final()]);
  const mac = crypto.createHmac('sha256', keys.subarray(32, 64)).update(body).digest();
  const file = Buffer.concat([body, mac]);
  return {
    file: new Uint8Array(file),
    keys: new Uint8Array(keys),
    digest: new Uint8Array(crypto.createHash('sha256').update(file).digest()),
    size: plaintext.length,
  };
}
