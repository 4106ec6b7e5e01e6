/**
 * Streaming attachment encryption, the send side of attachment-stream.ts (PROTOCOL.md §7; Signal's
 * apps encrypt so): a random 64-byte key (AES-256 ‖ HMAC-SHA256), the plaintext zero-padded to
 * paddedAttachmentSize(), AES-256-CBC/PKCS7 under a fresh IV, the file iv ‖ ciphertext ‖
 * HMAC(iv ‖ ciphertext); the pointer's `digest` is SHA-256 of the file and `size` the unpadded
 * length. For `video/mp4` the file also gets libsignal's incremental MAC (DigestingPassThrough over
 * the whole file, chunk size inferred from its length), which lets a receiver verify as it streams.
 * Nothing here holds the file: every step sees chunks.
 */
import crypto from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import {
  DigestingPassThrough,
  chunkSizeInBytes,
  inferChunkSize,
} from '@signalapp/libsignal-client/dist/incremental_mac.js';
import { ProtocolError } from '../errors';
import { paddedAttachmentSize } from './attachment-stream';

const IV = 16;
const MAC = 32;
/** Padding goes out in pieces of this size, never as one buffer of the whole padding. */
const PAD_CHUNK = 1024 * 1024;
const PIECE_HWM = 1024 * 1024;

/** The length of the encrypted file of an `n`-byte plaintext: iv + CBC(padded) + mac. */
export function encryptedAttachmentSize(n: number): number {
  const padded = paddedAttachmentSize(n);
  return IV + 16 * (Math.floor(padded / 16) + 1) + MAC;
}

/** Content types whose files carry an incremental MAC (Signal-Desktop: `video/mp4` only). */
export function wantsIncrementalMac(contentType: string): boolean {
  return contentType.toLowerCase() === 'video/mp4';
}

/** What an encryption produced: everything the AttachmentPointer needs but the CDN location. */
export interface EncryptedAttachmentInfo {
  keys: Uint8Array;
  digest: Uint8Array;
  /** The unpadded plaintext length. */
  size: number;
  /** The encrypted file's length (what is uploaded). */
  encryptedSize: number;
  incrementalMac?: Uint8Array;
  chunkSize?: number;
}

/**
 * A Transform from the plaintext (exactly `size` bytes) to the encrypted file, computing the digest
 * (and, with `incrementalMac`, libsignal's incremental MAC) as the file's bytes go out. `info()`
 * after the stream ended. A plaintext of another length than `size` fails the stream (a file that
 * changed while it was read).
 */
export class AttachmentEncryptor extends Transform {
  private readonly cipher: crypto.Cipher;
  private readonly hmac: crypto.Hmac;
  private readonly hash = crypto.createHash('sha256');
  private readonly incremental: DigestingPassThrough | null;
  private readonly chunk: number | undefined;
  private seen = 0;
  private done: EncryptedAttachmentInfo | null = null;
  private started = false;

  constructor(
    private readonly keys: Uint8Array,
    private readonly size: number,
    opts: { incrementalMac?: boolean; iv?: Uint8Array } = {},
  ) {
    // A piece out for every piece in (1 MiB from the uploader): room for one without a stall.
    super({ highWaterMark: PIECE_HWM });
    if (keys.length !== 64) throw new ProtocolError('Attachment keys must be 64 bytes');
    if (!Number.isSafeInteger(size) || size < 0)
      throw new ProtocolError('Attachment size must be a non-negative integer');
    const iv = opts.iv ?? crypto.randomBytes(IV);
    this.cipher = crypto.createCipheriv('aes-256-cbc', keys.subarray(0, 32), iv);
    this.hmac = crypto.createHmac('sha256', keys.subarray(32, 64));
    if (opts.incrementalMac) {
      const choice = inferChunkSize(encryptedAttachmentSize(size));
      this.chunk = chunkSizeInBytes(choice);
      this.incremental = new DigestingPassThrough(
        new Uint8Array(keys.subarray(32, 64)) as Uint8Array<ArrayBuffer>,
        choice,
      );
      // Its output is not needed: only its digest. Drain it so it never blocks.
      this.incremental.on('data', () => undefined);
    } else {
      this.incremental = null;
      this.chunk = undefined;
    }
    this.ivBytes = Buffer.from(iv);
  }

  private readonly ivBytes: Buffer;

  /** Emits a piece of the file: it counts for the digest (and the MACs, `macked`). */
  private out(piece: Buffer, macked: boolean): void {
    if (piece.length === 0) return;
    if (macked) this.hmac.update(piece);
    this.hash.update(piece);
    this.incremental?.write(piece);
    this.push(piece);
  }

  private begin(): void {
    if (this.started) return;
    this.started = true;
    this.out(this.ivBytes, true);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.begin();
      this.seen += chunk.length;
      if (this.seen > this.size)
        throw new ProtocolError(`The attachment is longer than its ${this.size} bytes`);
      this.out(this.cipher.update(chunk), true);
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.begin();
      if (this.seen !== this.size)
        throw new ProtocolError(
          `The attachment has ${this.seen} bytes, not the ${this.size} it had when checked (did the file change?)`,
        );
      let pad = paddedAttachmentSize(this.size) - this.size;
      const zeros = Buffer.alloc(Math.min(pad, PAD_CHUNK));
      while (pad > 0) {
        const n = Math.min(pad, zeros.length);
        this.out(this.cipher.update(zeros.subarray(0, n)), true);
        pad -= n;
      }
      this.out(this.cipher.final(), true);
      this.out(this.hmac.digest(), false);
    } catch (e) {
      return cb(e as Error);
    }
    const finish = (incrementalMac?: Uint8Array) => {
      this.done = {
        keys: new Uint8Array(this.keys),
        digest: new Uint8Array(this.hash.digest()),
        size: this.size,
        encryptedSize: encryptedAttachmentSize(this.size),
        ...(incrementalMac && this.chunk !== undefined
          ? { incrementalMac, chunkSize: this.chunk }
          : {}),
      };
      cb();
    };
    const inc = this.incremental;
    if (!inc) return finish();
    inc.once('error', (e) => cb(e));
    inc.end(() => finish(new Uint8Array(inc.getFinalDigest())));
  }

  /** The encryption's result; only after the stream ended. */
  info(): EncryptedAttachmentInfo {
    if (!this.done) throw new ProtocolError('The attachment is not encrypted yet');
    return this.done;
  }
}
