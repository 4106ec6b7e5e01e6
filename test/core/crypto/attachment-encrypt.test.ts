/**
 * Streaming attachment encryption (core/crypto/attachment-encrypt.ts): what it writes decrypts with
 * the receive side's checks and with the one-shot decryptAttachment, is padded as Signal pads,
 * carries a libsignal-valid incremental MAC for video/mp4, and goes out in bounded pieces.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ValidatingPassThrough,
  everyNthByte,
} from '@signalapp/libsignal-client/dist/incremental_mac.js';
import { decryptAttachment } from '../../../core/crypto/attachment';
import {
  AttachmentEncryptor,
  encryptedAttachmentSize,
  wantsIncrementalMac,
} from '../../../core/crypto/attachment-encrypt';
import { AttachmentVerifier, paddedAttachmentSize } from '../../../core/crypto/attachment-stream';
import { encryptToFile } from '../../../core/messaging/attachment-upload';

/** Feeds `plain` in `step`-byte pieces; returns the file and the largest piece that came out. */
async function encrypt(
  plain: Buffer,
  opts: { incrementalMac?: boolean; size?: number; step?: number } = {},
) {
  const keys = crypto.randomBytes(64);
  const enc = new AttachmentEncryptor(keys, opts.size ?? plain.length, opts);
  const out: Buffer[] = [];
  let largest = 0;
  const step = opts.step ?? 64 * 1024;
  await pipeline(
    Readable.from(
      (function* () {
        for (let i = 0; i < plain.length; i += step) yield plain.subarray(i, i + step);
      })(),
    ),
    enc,
    new Writable({
      write(c: Buffer, _e, cb) {
        largest = Math.max(largest, c.length);
        out.push(c);
        cb();
      },
    }),
  );
  return { file: Buffer.concat(out), info: enc.info(), keys, largest };
}

describe('core/crypto/attachment-encrypt', () => {
  it('writes iv ‖ CBC(padded) ‖ HMAC with the digest and size the receiver checks', async () => {
    for (const n of [1, 15, 16, 541, 542, 5000, 100_003]) {
      const plain = crypto.randomBytes(n);
      const { file, info, keys } = await encrypt(plain, { step: 977 });
      assert.equal(file.length, encryptedAttachmentSize(n), `length for ${n}`);
      assert.equal(info.encryptedSize, file.length);
      assert.equal(info.size, n);
      assert.deepEqual(Buffer.from(info.keys), keys);
      assert.deepEqual(Buffer.from(info.digest), crypto.createHash('sha256').update(file).digest());
      const v = new AttachmentVerifier(info.keys, info.digest);
      v.update(file);
      assert.equal(v.finish(), file.length);
      // Padded: the CBC plaintext is paddedAttachmentSize(n) long, zeros after the content.
      const d = crypto.createDecipheriv('aes-256-cbc', keys.subarray(0, 32), file.subarray(0, 16));
      const padded = Buffer.concat([d.update(file.subarray(16, file.length - 32)), d.final()]);
      assert.equal(padded.length, paddedAttachmentSize(n));
      assert.ok(padded.subarray(n).every((b) => b === 0));
      assert.deepEqual(Buffer.from(decryptAttachment(file, info.keys, info.digest, n)), plain);
      assert.equal(info.incrementalMac, undefined);
    }
  });

  it('streams: no piece it writes is much larger than the pieces it is fed', async () => {
    const { largest, file } = await encrypt(crypto.randomBytes(3 * 1024 * 1024), {
      step: 16 * 1024,
    });
    assert.ok(file.length > 3 * 1024 * 1024);
    assert.ok(largest <= 64 * 1024 + 32, `largest piece ${largest}`);
  });

  it('video/mp4 carries an incremental MAC that libsignal’s ValidatingPassThrough accepts, and refuses when tampered', async () => {
    assert.equal(wantsIncrementalMac('video/mp4'), true);
    assert.equal(wantsIncrementalMac('image/png'), false);
    const plain = crypto.randomBytes(700_000);
    const { file, info } = await encrypt(plain, { incrementalMac: true });
    assert.ok(info.incrementalMac && info.chunkSize, 'mac and chunk size');
    const macKey = new Uint8Array(info.keys.subarray(32)) as Uint8Array<ArrayBuffer>;
    const validate = (bytes: Buffer) =>
      pipeline(
        Readable.from([bytes]),
        new ValidatingPassThrough(
          macKey,
          everyNthByte(info.chunkSize!),
          info.incrementalMac as Uint8Array<ArrayBuffer>,
        ),
        new Writable({ write: (_c, _e, cb) => cb() }),
      );
    await validate(file);
    const tampered = Buffer.from(file);
    tampered.writeUInt8(tampered.readUInt8(300_000) ^ 1, 300_000);
    await assert.rejects(validate(tampered));
  });

  it('refuses a plaintext of another length than declared (a file that changed)', async () => {
    await assert.rejects(encrypt(crypto.randomBytes(100), { size: 101 }), /not the 101/);
    await assert.rejects(encrypt(crypto.randomBytes(100), { size: 99 }), /longer than its 99/);
  });

  it('encryptToFile writes a 0600 file, never over an existing one', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-enc-'));
    const file = path.join(dir, 'out');
    const data = crypto.randomBytes(10_000);
    const info = await encryptToFile(
      { source: { data }, size: data.length, contentType: 'application/pdf' },
      file,
    );
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const bytes = fs.readFileSync(file);
    assert.deepEqual(
      Buffer.from(decryptAttachment(bytes, info.keys, info.digest, info.size)),
      data,
    );
    await assert.rejects(
      encryptToFile({ source: { data }, size: data.length, contentType: 'x/y' }, file),
      /EEXIST/,
    );
  });
});
