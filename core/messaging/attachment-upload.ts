/**
 * Sending attachments (PROTOCOL.md §7): an upload form (`GET /v4/attachments/form/upload`, for
 * the encrypted length) names the CDN; each checked attachment is encrypted streaming (padded,
 * AES-256-CBC + HMAC, digest; the incremental MAC for video/mp4: core/crypto/attachment-encrypt.ts)
 * into the upload and, at the same time, into a 0600 temp file in the account's attachment folder,
 * from which a resumed upload reads again from any offset (core/net/cdn-upload.ts). The temp file is removed whatever
 * happens. Neither a file nor a Buffer is ever copied whole: the plaintext goes through in chunks.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as api from '../api';
import type { Environment } from '../config';
import {
  AttachmentEncryptor,
  encryptedAttachmentSize,
  wantsIncrementalMac,
  type EncryptedAttachmentInfo,
} from '../crypto/attachment-encrypt';
import { ClosedError } from '../errors';
import type { Logger } from '../log';
import { uploadToCdn, type CdnUploadOptions } from '../net/cdn-upload';
import type { ChatRequester } from '../net/types';
import type { signalservice } from '../../proto';
import { attachmentPointer } from './compose';
import type { CheckedAttachment } from './outgoing-attachments';

/**
 * The plaintext goes into the cipher, and the encrypted file to the disk and the socket, in pieces
 * of this size: per-piece costs (stream callbacks, OpenSSL calls, buffers) then stay small beside
 * the crypto (bench/attachments.ts measures both). Memory holds a few pieces per stream.
 */
const PIECE = 1024 * 1024;

export interface AttachmentUploaderOptions {
  env: Environment;
  /** The authenticated socket (the upload form needs the account). */
  chat: () => ChatRequester;
  /** Where the temp files go (the account's attachment folder, 0700). */
  dir: () => string;
  logger: Logger;
  cdn?: CdnUploadOptions;
  now?: () => number;
}

/** The plaintext as a stream: a file read from disk, or a Buffer's slices (no copy). */
function plaintext(source: CheckedAttachment['source']): Readable {
  if ('path' in source) return fs.createReadStream(source.path, { highWaterMark: PIECE });
  const data = source.data;
  return Readable.from(
    (function* () {
      for (let at = 0; at < data.length; at += PIECE)
        yield Buffer.from(data.buffer, data.byteOffset + at, Math.min(PIECE, data.length - at));
    })(),
  );
}

/** Encrypts `a` into `file` (created 0600, never over an existing one). */
export async function encryptToFile(
  a: Pick<CheckedAttachment, 'source' | 'size' | 'contentType'>,
  file: string,
): Promise<EncryptedAttachmentInfo> {
  const encryptor = new AttachmentEncryptor(crypto.randomBytes(64), a.size, {
    incrementalMac: wantsIncrementalMac(a.contentType),
  });
  await pipeline(
    plaintext(a.source),
    encryptor,
    fs.createWriteStream(file, { flags: 'wx', mode: 0o600, highWaterMark: PIECE }),
  );
  return encryptor.info();
}

/** Temp files older than this are a crash's leftovers (an upload or download never lasts so long). */
const STALE_MS = 24 * 60 * 60 * 1000;

/** Removes leftover `.part-` temp files of an earlier run from `dir`. */
function sweepStale(dir: string, now: number): void {
  try {
    for (const name of fs.readdirSync(dir)) {
      if (!name.startsWith('.part-')) continue;
      const file = path.join(dir, name);
      if (now - fs.statSync(file).mtimeMs > STALE_MS) fs.rmSync(file, { force: true });
    }
  } catch {
    // Best effort: the next run tries again.
  }
}

export class AttachmentUploader {
  private readonly now: () => number;
  private swept = false;
  /** Aborted by close(): uploads in flight stop (their sockets, retries and back-off sleeps). */
  private readonly closing = new AbortController();

  constructor(private readonly opts: AttachmentUploaderOptions) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * Encrypts and uploads one attachment; resolves with its AttachmentPointer. The encryption
   * streams into the temp file and into the first upload at once (the upload form needs only the
   * encrypted length, known beforehand); a resumed upload reads the temp file, once it is whole.
   */
  /** The session closes: uploads in flight stop, and new ones are refused with CLOSED. */
  close(): void {
    this.closing.abort();
  }

  async upload(a: CheckedAttachment): Promise<signalservice.IAttachmentPointer> {
    if (this.closing.signal.aborted) throw new ClosedError('The account');
    const dir = this.opts.dir();
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!this.swept) {
      this.swept = true;
      sweepStale(dir, Date.now());
    }
    // `.part-` files are the folder's temp files: its quota pruning leaves them alone.
    const temp = path.join(dir, `.part-up-${crypto.randomBytes(8).toString('hex')}`);
    const encryptedSize = encryptedAttachmentSize(a.size);
    const form = await api.getAttachmentUploadForm(this.opts.chat(), encryptedSize);
    const encryptor = new AttachmentEncryptor(crypto.randomBytes(64), a.size, {
      incrementalMac: wantsIncrementalMac(a.contentType),
    });
    const source = plaintext(a.source);
    const live = new PassThrough({ highWaterMark: PIECE });
    const abort = new AbortController();
    const encrypting = pipeline(
      source,
      encryptor,
      fs.createWriteStream(temp, { flags: 'wx', mode: 0o600, highWaterMark: PIECE }),
    );
    // The same bytes to the first upload; when it drops, the file still gets all of them.
    encryptor.pipe(live);
    const encrypted = encrypting.then(
      () => encryptor.info(),
      (e: unknown) => {
        // The plaintext could not be read (or changed): the upload stops, for that reason.
        abort.abort();
        live.destroy();
        throw e;
      },
    );
    encrypted.catch(() => undefined);
    let fresh = true;
    try {
      await uploadToCdn(
        this.opts.env,
        form,
        {
          size: encryptedSize,
          open: (start) => {
            if (fresh && start === 0) {
              fresh = false;
              return live;
            }
            return Readable.from(
              (async function* () {
                await encrypted;
                yield* fs.createReadStream(temp, { start, highWaterMark: PIECE });
              })(),
            );
          },
        },
        {
          ...this.opts.cdn,
          signal: AbortSignal.any([abort.signal, this.closing.signal]),
          onResume: (offset) =>
            this.opts.logger.info(
              `attachment upload interrupted; resuming at ${offset} of ${encryptedSize} bytes`,
            ),
        },
      );
      const info = await encrypted;
      return attachmentPointer({
        cdnNumber: form.cdn,
        cdnKey: form.key,
        keys: info.keys,
        digest: info.digest,
        size: info.size,
        ...(info.incrementalMac && info.chunkSize
          ? { incrementalMac: info.incrementalMac, chunkSize: info.chunkSize }
          : {}),
        uploadTimestamp: this.now(),
        contentType: a.contentType,
        ...(a.fileName ? { fileName: a.fileName } : {}),
        ...(a.caption ? { caption: a.caption } : {}),
        ...(a.width ? { width: a.width } : {}),
        ...(a.height ? { height: a.height } : {}),
        ...(a.voiceNote ? { voiceNote: true } : {}),
      });
    } catch (e) {
      // When the encryption failed, that is why the upload stopped: say so.
      if (this.closing.signal.aborted) throw new ClosedError('The account');
      if (abort.signal.aborted)
        throw await encrypted.then(
          () => e,
          (why: unknown) => why,
        );
      throw e;
    } finally {
      source.destroy();
      live.destroy();
      await encrypting.catch(() => undefined);
      await fs.promises.rm(temp, { force: true });
    }
  }

  /**
   * The pointers a message carries: its long text first (as Signal-Desktop puts the
   * `text/x-signal-plain` attachment), then its files, uploaded one after another.
   */
  async uploadAll(
    attachments: CheckedAttachment[],
    longText?: Uint8Array,
  ): Promise<signalservice.IAttachmentPointer[]> {
    const all: CheckedAttachment[] = [];
    if (longText)
      all.push({
        source: { data: longText },
        size: longText.length,
        contentType: 'text/x-signal-plain',
      });
    all.push(...attachments);
    const pointers: signalservice.IAttachmentPointer[] = [];
    for (const a of all) pointers.push(await this.upload(a));
    return pointers;
  }
}
