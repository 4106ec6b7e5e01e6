/**
 * Streaming attachment crypto (PROTOCOL.md §7): iv ‖ AES-256-CBC ‖ HMAC-SHA256, digest = SHA-256 of
 * the whole file, plaintext padded by the sender and cut to `size` by the receiver.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { encryptAttachment } from '../../../core/crypto/attachment';
import {
  AttachmentDecryptor,
  AttachmentVerifier,
  attachmentDecipher,
  paddedAttachmentSize,
} from '../../../core/crypto/attachment-stream';

function verifyInChunks(file: Uint8Array, keys: Uint8Array, digest: Uint8Array, step = 7): number {
  const v = new AttachmentVerifier(keys, digest);
  for (let i = 0; i < file.length; i += step) v.update(Buffer.from(file.subarray(i, i + step)));
  return v.finish();
}

async function decipherAll(file: Uint8Array, keys: Uint8Array, size: number): Promise<Buffer> {
  const d = attachmentDecipher(keys, file.subarray(0, 16), size);
  const out: Buffer[] = [];
  d.on('data', (c: Buffer) => out.push(c));
  const done = new Promise<void>((resolve, reject) => {
    d.once('end', resolve);
    d.once('error', reject);
  });
  const ct = file.subarray(16, file.length - 32);
  for (let i = 0; i < ct.length; i += 1000) d.write(Buffer.from(ct.subarray(i, i + 1000)));
  d.end();
  await done;
  return Buffer.concat(out);
}

describe('core/crypto/attachment-stream', () => {
  it('pads as Signal does: at least 541 bytes, log-scaled buckets', () => {
    assert.equal(paddedAttachmentSize(0), 541);
    assert.equal(paddedAttachmentSize(1), 541);
    assert.equal(paddedAttachmentSize(541), 541);
    assert.ok(paddedAttachmentSize(10_000) >= 10_000);
    assert.ok(paddedAttachmentSize(10_000) < 10_000 * 1.06);
  });

  it('verifies a padded file in any chunking and cuts the plaintext to `size`', async () => {
    const plain = crypto.randomBytes(1234);
    const enc = encryptAttachment(plain, crypto.randomBytes(64), { pad: true });
    assert.ok(enc.file.length > 16 + 1234 + 32, 'padded');
    for (const step of [1, 7, 32, 33, 4096])
      assert.equal(verifyInChunks(enc.file, enc.keys, enc.digest, step), enc.file.length);
    assert.deepEqual(await decipherAll(enc.file, enc.keys, enc.size), plain);
  });

  it('names a MAC mismatch (a flipped byte) and a digest mismatch (a wrong digest)', () => {
    const enc = encryptAttachment(crypto.randomBytes(600), crypto.randomBytes(64), { pad: true });
    const bad = Buffer.from(enc.file);
    bad[20] = bad[20]! ^ 0x80;
    assert.throws(() => verifyInChunks(bad, enc.keys, enc.digest), /MAC mismatch/);
    const wrong = Buffer.from(enc.digest);
    wrong[0] = wrong[0]! ^ 1;
    assert.throws(() => verifyInChunks(enc.file, enc.keys, wrong), /digest mismatch/);
    assert.throws(() => verifyInChunks(enc.file, enc.keys, new Uint8Array(0)), /no digest/);
    assert.throws(
      () => verifyInChunks(enc.file.subarray(0, 40), enc.keys, enc.digest),
      /too short/,
    );
  });

  it('refuses a plaintext shorter than its declared size', async () => {
    const enc = encryptAttachment(crypto.randomBytes(100), crypto.randomBytes(64));
    await assert.rejects(decipherAll(enc.file, enc.keys, 5000), /shorter than its declared size/);
  });

  it('streams a 30 MiB file through verify and decrypt in bounded chunks, bytes equal', async function () {
    this.timeout(120_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-att-'));
    try {
      const size = 30 * 1024 * 1024;
      const keys = crypto.randomBytes(64);
      const iv = crypto.randomBytes(16);
      const src = path.join(dir, 'file');
      // Write the encrypted file chunk by chunk (a seeded plaintext we can regenerate to compare).
      const chunk = (i: number) => crypto.createHash('sha512').update(String(i)).digest();
      const cipher = crypto.createCipheriv('aes-256-cbc', keys.subarray(0, 32), iv);
      const mac = crypto.createHmac('sha256', keys.subarray(32));
      const digest = crypto.createHash('sha256');
      const fd = fs.openSync(src, 'w');
      const put = (b: Buffer) => {
        fs.writeSync(fd, b);
        digest.update(b);
      };
      put(iv);
      mac.update(iv);
      const expect = crypto.createHash('sha256');
      for (let i = 0; i < size / 64; i++) {
        const p = chunk(i);
        expect.update(p);
        const c = cipher.update(p);
        mac.update(c);
        put(c);
      }
      const last = cipher.final();
      mac.update(last);
      put(last);
      put(mac.digest());
      fs.closeSync(fd);
      const fileDigest = digest.digest();

      // Memory is the benchmark's to measure (rss depends on when the GC runs); what a test can
      // prove is the shape: plaintext leaves the decipher in bounded chunks as the file streams in,
      // never as one buffer of the whole file.
      let largest = 0;
      let chunks = 0;
      const v = new AttachmentVerifier(keys, fileDigest);
      await pipeline(
        fs.createReadStream(src),
        new Writable({
          write(c: Buffer, _e, cb) {
            v.update(c);
            cb();
          },
        }),
      );
      const length = v.finish();
      const got = crypto.createHash('sha256');
      let n = 0;
      await pipeline(
        fs.createReadStream(src, { start: 16, end: length - 33 }),
        attachmentDecipher(keys, iv, size),
        new Writable({
          write(c: Buffer, _e, cb) {
            got.update(c);
            n += c.length;
            largest = Math.max(largest, c.length);
            chunks++;
            cb();
          },
        }),
      );
      assert.equal(n, size);
      assert.deepEqual(got.digest(), expect.digest());
      assert.ok(largest <= 1024 * 1024, `a ${largest}-byte chunk left the decipher`);
      assert.ok(chunks >= size / (1024 * 1024), `${chunks} chunks for ${size} bytes`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('AttachmentDecryptor decrypts the whole file in one pass, in any chunking, cut to size', () => {
    const plain = crypto.randomBytes(10_007);
    const enc = encryptAttachment(plain, crypto.randomBytes(64), { pad: true });
    for (const step of [1, 15, 16, 33, 1000, enc.file.length]) {
      const d = new AttachmentDecryptor(enc.keys, plain.length);
      const out: Buffer[] = [];
      for (let i = 0; i < enc.file.length; i += step)
        out.push(d.update(Buffer.from(enc.file.subarray(i, i + step))));
      out.push(d.final());
      assert.deepEqual(Buffer.concat(out), plain, `step ${step}`);
    }
    const short = new AttachmentDecryptor(enc.keys, plain.length + 1000);
    short.update(Buffer.from(enc.file));
    assert.throws(() => short.final(), /shorter than its declared size/);
    assert.throws(() => new AttachmentDecryptor(enc.keys, 5).final(), /too short/);
  });
});
