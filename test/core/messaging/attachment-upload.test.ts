/**
 * AttachmentUploader (core/messaging/attachment-upload.ts) against a test-side tus CDN: the upload
 * form asked for the encrypted length, the encryption streamed into the first upload and the temp
 * file at once, a cut first upload resumed from the temp file at the CDN's offset (bytes equal,
 * decryptable with the pointer's keys), a plaintext that changed refused, no temp file left.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decryptAttachment } from '../../../core/crypto/attachment';
import { encryptedAttachmentSize } from '../../../core/crypto/attachment-encrypt';
import { AttachmentUploader } from '../../../core/messaging/attachment-upload';
import type { ChatRequest, ChatRequester } from '../../../core/net/types';
import { captureLogger } from '../../integration/helpers';
import { envFor, tusServer } from '../net/fake-cdn';

function formChat(port: number, asked: string[]): ChatRequester {
  return {
    request: (req: ChatRequest) => {
      asked.push(req.path);
      const body = {
        cdn: 3,
        key: `key${asked.length}`,
        headers: { 'x-form': 'yes' },
        signedUploadLocation: `https://127.0.0.1:${port}/tus/files`,
      };
      return Promise.resolve({
        status: 200,
        message: 'OK',
        headers: {},
        body: new Uint8Array(Buffer.from(JSON.stringify(body))),
      });
    },
  };
}

describe('core/messaging/attachment-upload', () => {
  it('a cut first upload resumes from the temp file at the CDN’s offset; the pointer decrypts what the CDN holds', async () => {
    const cdn = await tusServer({ cutAt: 500_000, cuts: 1 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-up-'));
    const asked: string[] = [];
    const lines: string[] = [];
    // A crash's leftover from yesterday goes at the first upload; a fresh temp file stays.
    const stale = path.join(dir, '.part-up-old');
    fs.writeFileSync(stale, 'x');
    fs.utimesSync(
      stale,
      new Date(Date.now() - 2 * 86_400_000),
      new Date(Date.now() - 2 * 86_400_000),
    );
    const fresh = path.join(dir, '.part-downloading');
    fs.writeFileSync(fresh, 'x');
    try {
      const uploader = new AttachmentUploader({
        env: envFor(cdn.port),
        chat: () => formChat(cdn.port, asked),
        dir: () => dir,
        logger: captureLogger(lines),
        cdn: { retryDelayMs: 1 },
      });
      const data = crypto.randomBytes(1_500_000);
      const p = await uploader.upload({
        source: { data },
        size: data.length,
        contentType: 'application/pdf',
        fileName: 'a.pdf',
      });
      assert.deepEqual(asked, [
        `/v4/attachments/form/upload?uploadLength=${encryptedAttachmentSize(data.length)}`,
      ]);
      assert.deepEqual(
        cdn.seen.map((s) => s.method),
        ['POST', 'HEAD', 'PATCH'],
      );
      assert.ok(cdn.patchOffsets[0]! > 0 && cdn.patchOffsets[0]! <= 500_000);
      const file = cdn.stored.get('key1')!;
      assert.equal(file.length, encryptedAttachmentSize(data.length));
      assert.deepEqual(Buffer.from(decryptAttachment(file, p.key!, p.digest!, p.size)), data);
      assert.equal(p.cdnKey, 'key1');
      assert.equal(p.fileName, 'a.pdf');
      assert.ok(lines.some((l) => /resuming at \d+/.test(l)));
      assert.deepEqual(fs.readdirSync(dir), ['.part-downloading'], 'no temp file of ours left');
    } finally {
      await cdn.close();
    }
  });

  it('a file that changed after its check stops the upload with that reason, and leaves nothing', async () => {
    const cdn = await tusServer({ cutAt: 0, cuts: 0 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-up-'));
    try {
      const uploader = new AttachmentUploader({
        env: envFor(cdn.port),
        chat: () => formChat(cdn.port, []),
        dir: () => dir,
        logger: captureLogger(),
        cdn: { retryDelayMs: 1 },
      });
      const file = path.join(dir, '..', `${path.basename(dir)}-plain`);
      fs.writeFileSync(file, crypto.randomBytes(300_000));
      await assert.rejects(
        uploader.upload({ source: { path: file }, size: 400_000, contentType: 'x/y' }),
        /not the 400000 it had when checked/,
      );
      assert.deepEqual(fs.readdirSync(dir), []);
    } finally {
      await cdn.close();
    }
  });

  it('close() stops an upload waiting out its back-off: CLOSED, no temp file, and later uploads refused', async () => {
    // Every upload is cut, and the back-off is an hour: only close() can end this upload.
    const cdn = await tusServer({ cutAt: 1000, cuts: 1000 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-up-'));
    try {
      const uploader = new AttachmentUploader({
        env: envFor(cdn.port),
        chat: () => formChat(cdn.port, []),
        dir: () => dir,
        logger: captureLogger(),
        cdn: { retryDelayMs: 3_600_000 },
      });
      const data = crypto.randomBytes(200_000);
      const upload = uploader.upload({ source: { data }, size: data.length, contentType: 'x/y' });
      while (cdn.seen.length === 0) await new Promise((r) => setTimeout(r, 10));
      uploader.close();
      await assert.rejects(upload, (e: Error & { code?: string }) => e.code === 'CLOSED');
      assert.deepEqual(fs.readdirSync(dir), []);
      await assert.rejects(
        uploader.upload({ source: { data }, size: data.length, contentType: 'x/y' }),
        (e: Error & { code?: string }) => e.code === 'CLOSED',
      );
    } finally {
      await cdn.close();
    }
  });
});
