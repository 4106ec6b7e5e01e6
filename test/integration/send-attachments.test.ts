/**
 * Sending attachments end to end (PROTOCOL.md §7): client.send() encrypts and uploads each file to
 * the mock's CDN 3 (tus, through the sandbox's REST upload form) and Bob's phone receives the
 * pointer; the test fetches the file from the mock's CDN and decrypts it with its own
 * implementation (node:crypto, written here: HMAC, digest, AES-256-CBC, cut to size), bytes
 * equal. Also: the sync transcript, 30 MiB both ways, long text both ways, refused input.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { EMPTY_DATA_MESSAGE } from '@signalapp/mock-server';
import {
  ValidatingPassThrough,
  everyNthByte,
} from '@signalapp/libsignal-client/dist/incremental_mac.js';
import { encryptAttachment } from '../../core/crypto/attachment';
import { sendAttachmentFrom } from '../harness/mock-phone';
import { cdnFile, decryptReceived, type ReceivedPointer } from '../harness/cdn-attachment';
import { InvalidInputError } from '../../core/errors';
import type { MessageEvent } from '../../core/types';
import { linkedWithBobPerTest, withTimeout } from './helpers';
import { until } from '../harness/wait';

type Pointer = ReceivedPointer & { uploadTimestamp?: unknown };

const cdnKeyOf = (p: Pointer) => p.attachmentIdentifier?.cdnKey ?? undefined;

function tempFile(bytes: Buffer | number, name = 'file.bin'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-send-'));
  const file = path.join(dir, name);
  if (typeof bytes === 'number') {
    // Written in pieces: the test does not hold it whole either.
    const fd = fs.openSync(file, 'w');
    const piece = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < bytes / piece.length; i++) {
      piece.fill(i % 251);
      piece.writeUInt32BE(i, 0);
      fs.writeSync(fd, piece);
    }
    fs.closeSync(fd);
  } else fs.writeFileSync(file, bytes);
  return file;
}

function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(1024 * 1024);
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    h.update(buf.subarray(0, n));
  }
  fs.closeSync(fd);
  return h.digest('hex');
}

describe('integration: sending attachments', function () {
  this.timeout(180_000);
  const world = linkedWithBobPerTest();

  it('an image and a PDF reach Bob: bytes equal by an independent decryption, pointer fields as Signal sends them', async () => {
    const { client, bob, alice, sandbox } = world;
    const image = crypto.randomBytes(5000);
    const pdf = crypto.randomBytes(3333);
    const sent = await client.send(bob.device.aci, {
      text: 'the snapshot',
      attachments: [
        {
          data: image,
          contentType: 'image/png',
          fileName: 'snapshot.png',
          caption: 'front door',
          width: 640,
          height: 480,
        },
        {
          path: tempFile(pdf, 'report.pdf'),
          contentType: 'application/pdf',
          fileName: 'report.pdf',
        },
      ],
    });
    const got = await withTimeout(bob.waitForMessage(), 20_000, 'the message');
    assert.equal(got.body, 'the snapshot');
    const [img, doc] = (got.dataMessage.attachments ?? []) as Pointer[];
    assert.ok(img && doc);
    assert.ok(decryptReceived(sandbox, img).equals(image));
    assert.ok(decryptReceived(sandbox, doc).equals(pdf));
    assert.equal(img.contentType, 'image/png');
    assert.ok(!img.fileName, 'no file name for an image');
    assert.equal(img.caption, 'front door');
    assert.equal(img.width, 640);
    assert.equal(img.height, 480);
    assert.ok(Number(img.uploadTimestamp) > 0);
    assert.equal(doc.contentType, 'application/pdf');
    assert.equal(doc.fileName, 'report.pdf');
    // The transcript to the phone carries the same pointers.
    const sync = await withTimeout(
      alice.waitForSyncMessage((e) =>
        Boolean(e.syncMessage.content?.sent?.message?.attachments?.length),
      ),
      20_000,
      'the transcript',
    );
    const sentMsg = sync.syncMessage.content?.sent;
    assert.equal(Number(sentMsg?.timestamp), sent.timestamp);
    const synced = (sentMsg?.message?.attachments ?? []) as Pointer[];
    assert.deepEqual(synced.map(cdnKeyOf), [cdnKeyOf(img), cdnKeyOf(doc)]);
    assert.deepEqual(Buffer.from(synced[0]!.key!), Buffer.from(img.key!));
  });

  it('a voice note without text, application/octet-stream by default', async () => {
    const { client, bob, sandbox } = world;
    const audio = crypto.randomBytes(1200);
    await client.send(bob.device.aci, { attachments: [{ data: audio, voiceNote: true }] });
    const got = await withTimeout(bob.waitForMessage(), 20_000, 'the voice note');
    assert.ok(!got.dataMessage.body);
    const p = got.dataMessage.attachments?.[0] as Pointer;
    assert.equal(p.flags, 1);
    assert.equal(p.contentType, 'application/octet-stream');
    assert.ok(decryptReceived(sandbox, p).equals(audio));
  });

  it('a video/mp4 carries an incremental MAC libsignal validates over the CDN file, and no file name', async () => {
    const { client, bob, sandbox } = world;
    const video = crypto.randomBytes(400_000);
    await client.send(bob.device.aci, {
      attachments: [{ data: video, contentType: 'video/mp4', fileName: 'clip.mp4' }],
    });
    const got = await withTimeout(bob.waitForMessage(), 20_000, 'the video');
    const p = got.dataMessage.attachments?.[0] as Pointer & {
      incrementalMac?: Uint8Array | null;
      chunkSize?: number | null;
    };
    assert.ok(!p.fileName);
    assert.ok(p.incrementalMac && p.chunkSize, 'incremental MAC and chunk size');
    const file = cdnFile(sandbox, p);
    await pipeline(
      Readable.from([file]),
      new ValidatingPassThrough(
        new Uint8Array(Buffer.from(p.key!).subarray(32)) as Uint8Array<ArrayBuffer>,
        everyNthByte(p.chunkSize),
        new Uint8Array(p.incrementalMac) as Uint8Array<ArrayBuffer>,
      ),
      new Writable({ write: (_c, _e, cb) => cb() }),
    );
    assert.ok(decryptReceived(sandbox, p).equals(video));
  });

  it('a 30 MiB file (a path) is sent, bytes equal', async () => {
    const { client, bob, sandbox } = world;
    const file = tempFile(30 * 1024 * 1024, 'big.bin');
    await client.send(bob.device.aci, {
      attachments: [{ path: file, contentType: 'application/zip', fileName: 'big.zip' }],
    });
    const got = await withTimeout(bob.waitForMessage(), 120_000, 'the big file');
    const p = got.dataMessage.attachments?.[0] as Pointer;
    assert.equal(p.size, 30 * 1024 * 1024);
    const plain = decryptReceived(sandbox, p);
    assert.equal(crypto.createHash('sha256').update(plain).digest('hex'), sha256File(file));
  });

  it('a 30 MiB file received from the phone is saved, bytes equal', async () => {
    const { client, alice, device, sandbox } = world;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-recv-'));
    client.setAttachments({ mode: 'files', dir, retryDelayMs: 50 });
    const seen: MessageEvent[] = [];
    client.on('event', (ev) => void (ev.type === 'message' && seen.push(ev)));
    const plain = fs.readFileSync(tempFile(30 * 1024 * 1024));
    await sendAttachmentFrom(sandbox, alice, device, plain);
    await until(() => seen.length > 0, 120_000, 'the big attachment');
    const saved = seen[0]!.attachments?.[0]?.path;
    assert.ok(saved, JSON.stringify(seen[0]!.attachments?.[0]?.failed));
    assert.equal(sha256File(saved), crypto.createHash('sha256').update(plain).digest('hex'));
  });

  it('long text: sent cut to 2,000 bytes inline with the whole as text/x-signal-plain', async () => {
    const { client, bob, sandbox } = world;
    // Multi-byte characters so that the cut must fall on a code point: "é" is 2 bytes, "😀" 4.
    const text = 'é😀abc'.repeat(600);
    await client.send(bob.device.aci, { text });
    const got = await withTimeout(bob.waitForMessage(), 20_000, 'the long message');
    const inline = got.dataMessage.body ?? '';
    assert.ok(Buffer.byteLength(inline) <= 2000 && Buffer.byteLength(inline) > 1990);
    assert.ok(text.startsWith(inline), 'a prefix cut at a code point');
    const p = got.dataMessage.attachments?.[0] as Pointer;
    assert.equal(p.contentType, 'text/x-signal-plain');
    assert.equal(decryptReceived(sandbox, p).toString('utf8'), text);
  });

  it('long text received: the body is the attachment’s whole text, which is not listed', async () => {
    const { client, alice, device, sandbox } = world;
    client.setAttachments({ mode: 'metadata', retryDelayMs: 50 });
    const seen: MessageEvent[] = [];
    client.on('event', (ev) => void (ev.type === 'message' && seen.push(ev)));
    const text = 'ü long story '.repeat(400);
    const enc = encryptAttachment(Buffer.from(text), crypto.randomBytes(64), { pad: true });
    const cdnKey = `k${crypto.randomBytes(8).toString('hex')}`;
    await sandbox.server.storeAttachmentOnCdn(3, cdnKey, Buffer.from(enc.file));
    await alice.sendRaw(
      device,
      {
        content: {
          dataMessage: {
            ...EMPTY_DATA_MESSAGE,
            body: text.slice(0, 1000),
            timestamp: BigInt(Date.now()),
            attachments: [
              {
                attachmentIdentifier: { cdnKey },
                cdnNumber: 3,
                key: enc.keys,
                digest: enc.digest,
                size: enc.size,
                contentType: 'text/x-signal-plain',
              },
            ],
          },
        },
        pniSignatureMessage: null,
        senderKeyDistributionMessage: null,
      } as never,
      {} as never,
    );
    await until(() => seen.length > 0, 30_000, 'the long message');
    assert.equal(seen[0]!.body, text);
    assert.equal(seen[0]!.attachments, undefined);
  });

  it('bad input is refused naming the attachment, and nothing is sent', async () => {
    const { client, bob } = world;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-bad-'));
    const huge = path.join(dir, 'huge.bin');
    // A sparse file: over the limit by stat, never written (nor read).
    fs.closeSync(fs.openSync(huge, 'w'));
    fs.truncateSync(huge, 100 * 1024 * 1024 + 1);
    const one = { data: Buffer.from('x') };
    const cases: Array<[unknown, RegExp]> = [
      [
        { attachments: [{ path: path.join(dir, 'missing.png') }] },
        /attachments\[0\]\.path: no such file/,
      ],
      [{ attachments: [one, { path: dir }] }, /attachments\[1\]\.path: .* is a directory/],
      [{ attachments: [{ data: Buffer.alloc(0) }] }, /attachments\[0\]\.data is empty/],
      [{ attachments: Array.from({ length: 33 }, () => one) }, /attachments: 33 is more than/],
      [
        { attachments: [one, one, { path: huge }] },
        /attachments\[2\]\.path: 104857601 bytes is over/,
      ],
      [
        { attachments: [{ data: Buffer.from('x'), path: huge }] },
        /attachments\[0\] needs exactly one.*not both/,
      ],
      [{ attachments: [{}] }, /attachments\[0\] needs exactly one.*neither/],
      [{ attachments: 'x' }, /attachments must be an array/],
      [{}, /neither text nor attachments/],
      [{ text: 'x'.repeat(64 * 1024 + 1) }, /^text: 65537 UTF-8 bytes is over/],
    ];
    for (const [message, why] of cases) {
      await assert.rejects(
        client.send(bob.device.aci, message as never),
        (e: unknown) => e instanceof InvalidInputError && why.test(e.message),
        String(why),
      );
    }
    assert.equal(bob.getMessageQueueSize(), 0);
    // The CDN holds nothing either: the checks come before any upload.
    const uploads = path.join(world.sandbox.cdn3Path, 'attachments');
    assert.deepEqual(fs.existsSync(uploads) ? fs.readdirSync(uploads) : [], []);
  });
});
