/**
 * The bytes of an attachment a phone received, fetched from the mock's CDN 3 store and decrypted
 * here with node:crypto alone, independently of the engine: the pointer's 64-byte key is the AES-256
 * key then the HMAC-SHA256 key; the file is iv ‖ AES-256-CBC ciphertext ‖ MAC; the MAC and the
 * pointer's digest (SHA-256 of the whole file) are checked before decrypting, and the padded
 * plaintext (zero-padded, as Signal's apps pad) is cut to the pointer's size.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Sandbox } from './sandbox';

export interface ReceivedPointer {
  attachmentIdentifier?: { cdnKey?: string } | null;
  cdnNumber?: number | null;
  key?: Uint8Array | null;
  digest?: Uint8Array | null;
  size?: number | null;
  contentType?: string | null;
  fileName?: string | null;
  caption?: string | null;
  width?: number | null;
  height?: number | null;
  flags?: number | null;
}

/** The stored, encrypted file of `pointer` on the mock's CDN 3. */
export function cdnFile(sandbox: Sandbox, pointer: ReceivedPointer): Buffer {
  const cdnKey = pointer.attachmentIdentifier?.cdnKey;
  assert.ok(cdnKey, `a CDN key: ${JSON.stringify(pointer.attachmentIdentifier)}`);
  assert.equal(pointer.cdnNumber, 3, 'uploaded to CDN 3');
  return fs.readFileSync(path.join(sandbox.cdn3Path, 'attachments', cdnKey));
}

/** The plaintext of `pointer`, verified (MAC, digest) and cut to size. */
export function decryptReceived(sandbox: Sandbox, pointer: ReceivedPointer): Buffer {
  const file = cdnFile(sandbox, pointer);
  const key = Buffer.from(pointer.key ?? []);
  assert.equal(key.length, 64, 'a 64-byte attachment key');
  assert.ok(file.length >= 16 + 16 + 32, `a file of ${file.length} bytes`);
  const iv = file.subarray(0, 16);
  const ciphertext = file.subarray(16, file.length - 32);
  const mac = file.subarray(file.length - 32);
  const expected = crypto
    .createHmac('sha256', key.subarray(32))
    .update(file.subarray(0, file.length - 32))
    .digest();
  assert.ok(crypto.timingSafeEqual(mac, expected), 'the MAC verifies');
  assert.deepEqual(
    Buffer.from(pointer.digest ?? []),
    crypto.createHash('sha256').update(file).digest(),
    'the digest is SHA-256 of the whole file',
  );
  const decipher = crypto.createDecipheriv('aes-256-cbc', key.subarray(0, 32), iv);
  const padded = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  const size = Number(pointer.size);
  assert.ok(size > 0 && size <= padded.length, `size ${size} within ${padded.length}`);
  // Padded as Signal's apps pad: zeros after the content.
  assert.ok(
    padded.subarray(size).every((b) => b === 0),
    'zero padding',
  );
  return padded.subarray(0, size);
}
