/**
 * Streaming attachment crypto (PROTOCOL.md §7): a downloaded file is iv(16) ‖ AES-256-CBC/PKCS7
 * ciphertext ‖ HMAC-SHA256(macKey, iv ‖ ciphertext)(32), and the pointer's `digest` is SHA-256 of
 * the whole file. Keys = AES-256 key (32) ‖ HMAC-SHA256 key (32). Signal pads the plaintext before
 * encrypting (zeros up to a log-scaled size) and the pointer's `size` is the unpadded length: the
 * receiver cuts the plaintext to `size`. Nothing here holds a whole file: each step sees chunks.
 */
import crypto from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { ProtocolError } from '../errors';

const IV = 16;
const MAC = 32;

/**
 * Verifies a file as its bytes arrive: the HMAC over everything but the last 32 bytes (the MAC
 * itself, kept back as a rolling tail) and the SHA-256 digest over all of it. `finish()` throws a
 * ProtocolError naming what failed ("MAC mismatch", "digest mismatch") and returns the file length.
 */
export class AttachmentVerifier {
  private readonly hmac: crypto.Hmac;
  private readonly hash = crypto.createHash('sha256');
  private tail = Buffer.alloc(0);
  private length = 0;

  constructor(
    keys: Uint8Array,
    private readonly digest: Uint8Array | null | undefined,
  ) {
    if (keys.length !== 64) throw new ProtocolError('Attachment keys must be 64 bytes');
    this.hmac = crypto.createHmac('sha256', keys.subarray(32, 64));
  }

  update(chunk: Buffer): void {
    this.length += chunk.length;
    this.hash.update(chunk);
    if (chunk.length >= MAC) {
      // The held-back tail is not the MAC after all: it and all but this chunk's last 32 bytes are
      // MACed content. No copy of the chunk is made.
      if (this.tail.length > 0) this.hmac.update(this.tail);
      this.hmac.update(chunk.subarray(0, chunk.length - MAC));
      this.tail = Buffer.from(chunk.subarray(chunk.length - MAC));
      return;
    }
    const all = Buffer.concat([this.tail, chunk]);
    if (all.length > MAC) this.hmac.update(all.subarray(0, all.length - MAC));
    this.tail = all.length > MAC ? all.subarray(all.length - MAC) : all;
  }

  finish(): number {
    if (this.length < IV + 16 + MAC) throw new ProtocolError('Attachment is too short');
    const expected = this.hmac.digest();
    // Constant time (Signal's clients compare MACs so): the HMAC first, then the digest.
    if (!crypto.timingSafeEqual(this.tail, expected))
      throw new ProtocolError('Attachment MAC mismatch');
    if (!this.digest || this.digest.length === 0)
      throw new ProtocolError('Attachment has no digest to verify');
    const actual = this.hash.digest();
    if (actual.length !== this.digest.length || !crypto.timingSafeEqual(actual, this.digest))
      throw new ProtocolError('Attachment digest mismatch');
    return this.length;
  }
}

/**
 * A Transform from the file's ciphertext (the bytes after the 16-byte IV and before the 32-byte
 * MAC) to the plaintext, cut to `size` (the unpadded length; padding is stripped by it). Run it
 * only over a file AttachmentVerifier accepted.
 */
export function attachmentDecipher(keys: Uint8Array, iv: Uint8Array, size: number): Transform {
  const decipher = crypto.createDecipheriv('aes-256-cbc', keys.subarray(0, 32), iv);
  let out = 0;
  const take = (t: Transform, data: Buffer) => {
    const room = size - out;
    if (room <= 0 || data.length === 0) return;
    const part = data.length > room ? data.subarray(0, room) : data;
    out += part.length;
    t.push(part);
  };
  return new Transform({
    transform(this: Transform, chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      try {
        take(this, decipher.update(chunk));
        cb();
      } catch (e) {
        cb(new ProtocolError('Attachment could not be decrypted', { cause: e }));
      }
    },
    flush(this: Transform, cb: TransformCallback) {
      try {
        take(this, decipher.final());
      } catch (e) {
        return cb(new ProtocolError('Attachment could not be decrypted', { cause: e }));
      }
      if (out < size) return cb(new ProtocolError('Attachment is shorter than its declared size'));
      cb();
    },
  });
}

/**
 * Signal's padded size for an attachment of `n` bytes: max(541, floor(1.05^ceil(log_1.05 n))),
 * the log-scaled buckets Signal's clients pad to (zeros after the content) before encrypting.
 */
export function paddedAttachmentSize(n: number): number {
  return Math.max(541, Math.floor(Math.pow(1.05, Math.ceil(Math.log(n) / Math.log(1.05)))));
}

const NOTHING = Buffer.alloc(0);

/**
 * Decrypts a file as its bytes arrive, in one pass with AttachmentVerifier over the same bytes:
 * the first 16 are the IV, the last 32 (held back, as the verifier holds them) the MAC, the rest
 * the ciphertext, whose plaintext comes out cut to `size`. What `update()` returns is unverified:
 * keep it aside (a temp file) and release it only once the verifier's finish() accepted the file,
 * then call final() (which also refuses a file shorter than `size`).
 */
export class AttachmentDecryptor {
  private head: Buffer = NOTHING;
  private decipher: crypto.Decipher | null = null;
  private tail: Buffer = NOTHING;
  private out = 0;

  constructor(
    private readonly keys: Uint8Array,
    private readonly size: number,
  ) {
    if (keys.length !== 64) throw new ProtocolError('Attachment keys must be 64 bytes');
  }

  private cut(data: Buffer): Buffer {
    const room = this.size - this.out;
    if (room <= 0 || data.length === 0) return NOTHING;
    const part = data.length > room ? data.subarray(0, room) : data;
    this.out += part.length;
    return part;
  }

  update(chunk: Buffer): Buffer {
    let data = chunk;
    if (!this.decipher) {
      const all = this.head.length ? Buffer.concat([this.head, data]) : data;
      if (all.length < IV) {
        this.head = Buffer.from(all);
        return NOTHING;
      }
      this.decipher = crypto.createDecipheriv(
        'aes-256-cbc',
        this.keys.subarray(0, 32),
        all.subarray(0, IV),
      );
      this.head = NOTHING;
      data = all.subarray(IV);
    }
    const all = this.tail.length ? Buffer.concat([this.tail, data]) : data;
    if (all.length <= MAC) {
      this.tail = Buffer.from(all);
      return NOTHING;
    }
    this.tail = Buffer.from(all.subarray(all.length - MAC));
    return this.cut(this.decipher.update(all.subarray(0, all.length - MAC)));
  }

  /** The last of the plaintext; only after the verifier accepted the file. */
  final(): Buffer {
    if (!this.decipher) throw new ProtocolError('Attachment is too short');
    let last: Buffer;
    try {
      last = this.decipher.final();
    } catch (e) {
      throw new ProtocolError('Attachment could not be decrypted', { cause: e });
    }
    const part = this.cut(last);
    if (this.out < this.size)
      throw new ProtocolError('Attachment is shorter than its declared size');
    return part;
  }
}
