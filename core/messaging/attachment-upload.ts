/**
 * Sending attachments (PROTOCOL.md §7): each checked attachment is encrypted streaming (padded,
 * AES-256-CBC + HMAC, digest; the incremental MAC for video/mp4: core/crypto/attachment-encrypt.ts)
 * into a 0600 temp file in the account's attachment folder, so that a resumed upload can read it
 * again from any offset; then an upload form (`GET /v4/attachments/form/upload`) names the CDN and
 * the file goes there resumable (core/net/cdn-upload.ts). The temp file is removed whatever
 * happens. Neither a file nor a Buffer is ever copied whole: the plaintext goes through in chunks.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as api from '../api';
import type { Environment } from '../config';
import {
  AttachmentEncryptor,
  wantsIncrementalMac,
  type EncryptedAttachmentInfo,
} from '../crypto/attachment-encrypt';
import type { Logger } from '../log';
import { uploadToCdn, type CdnUploadOptions } from '../net/cdn-upload';
import type { ChatRequester } from '../net/types';
import type { signalservice } from '../../proto';
import { attachmentPointer } from './compose';
import type { CheckedAttachment } from './outgoing-attachments';

/** A Buffer goes into the cipher in pieces of this size. */
const PIECE = 64 * 1024;

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
    fs.createWriteStream(file, { flags: 'wx', mode: 0o600 }),
  );
  return encryptor.info();
}

export class AttachmentUploader {
  private readonly now: () => number;

  constructor(private readonly opts: AttachmentUploaderOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Encrypts and uploads one attachment; resolves with its AttachmentPointer. */
  async upload(a: CheckedAttachment): Promise<signalservice.IAttachmentPointer> {
    const dir = this.opts.dir();
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // `.part-` files are the folder's temp files: its quota pruning leaves them alone.
    const temp = path.join(dir, `.part-up-${crypto.randomBytes(8).toString('hex')}`);
    try {
      const info = await encryptToFile(a, temp);
      const form = await api.getAttachmentUploadForm(this.opts.chat(), info.encryptedSize);
      await uploadToCdn(
        this.opts.env,
        form,
        {
          size: info.encryptedSize,
          open: (start) => fs.createReadStream(temp, { start, highWaterMark: PIECE }),
        },
        {
          ...this.opts.cdn,
          onResume: (offset) =>
            this.opts.logger.info(
              `attachment upload interrupted; resuming at ${offset} of ${info.encryptedSize} bytes`,
            ),
        },
      );
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
    } finally {
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
