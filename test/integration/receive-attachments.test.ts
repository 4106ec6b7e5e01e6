/**
 * Received attachments end to end (PROTOCOL.md §7): the phone encrypts and pads a file as Signal's
 * apps do, stores it on the mock's CDN 3 (`storeAttachmentOnCdn`, served at /cdn3/attachments/<key>)
 * and sends its AttachmentPointer; the client downloads, verifies (HMAC, digest), decrypts and cuts
 * it to `size`, and emits the message with it. A failed download marks the attachment, never drops
 * the message.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { EMPTY_DATA_MESSAGE } from '@signalapp/mock-server';
import { encryptAttachment } from '../../core/crypto/attachment';
import type { IncomingEvent, MessageEvent } from '../../core/types';
import { inspect, openClient, linkedWithBobPerTest } from './helpers';
import { sendAttachmentFrom, type MockDevice } from '../harness/mock-phone';
import type { PrimaryDevice, Sandbox } from '../harness/sandbox';
import { until } from '../harness/wait';

/** An image from the phone, with a hostile file name our saved file must not take. */
function sendAttachment(
  sandbox: Sandbox,
  phone: PrimaryDevice,
  target: MockDevice,
  plain: Uint8Array,
  fields: Record<string, unknown> = {},
  pointer: Record<string, unknown> = {},
): Promise<string> {
  return sendAttachmentFrom(sandbox, phone, target, plain, {
    pointer: {
      contentType: 'image/png',
      fileName: '../../etc/evil name.png',
      width: 4,
      height: 3,
      caption: 'a picture',
      ...pointer,
    },
    dataMessage: fields,
  });
}

function messages(world: { client: { on(e: 'event', f: (ev: IncomingEvent) => void): unknown } }) {
  const seen: MessageEvent[] = [];
  world.client.on('event', (ev) => {
    if (ev.type === 'message') seen.push(ev);
  });
  return seen;
}

describe('integration: receiving attachments', function () {
  this.timeout(90_000);
  const world = linkedWithBobPerTest();

  it('an attachment-only image is saved to a 0600 file in a 0700 folder, bytes equal', async () => {
    const dir = path.join(path.dirname(world.sandbox.cdn3Path), `sigflow-att-${Date.now()}`);
    world.client.setAttachments({ mode: 'files', dir, retryDelayMs: 50 });
    const seen = messages(world);
    const image = crypto.randomBytes(3000);
    await sendAttachment(world.sandbox, world.bob, world.device, image);
    await until(() => seen.length === 1, 20_000, 'the message');
    const [a] = seen[0]!.attachments ?? [];
    assert.ok(a?.path, JSON.stringify(a));
    assert.equal(seen[0]!.body, '');
    assert.deepEqual(fs.readFileSync(a.path), image);
    assert.equal(path.dirname(a.path), dir);
    assert.doesNotMatch(path.basename(a.path), /\.\.|\/| /);
    assert.equal(fs.statSync(a.path).mode & 0o777, 0o600);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.equal(a.contentType, 'image/png');
    assert.equal(a.size, 3000);
    assert.equal(a.caption, 'a picture');
    assert.equal(a.width, 4);
    assert.equal(a.height, 3);
    assert.equal((a as { pointer?: unknown }).pointer, undefined, 'keys never reach the flow');
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n.startsWith('.part-')),
      [],
      'no temp file left',
    );
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('as Buffers: the bytes on `data`, with the text', async () => {
    world.client.setAttachments({ mode: 'buffers', retryDelayMs: 50 });
    const seen = messages(world);
    const image = crypto.randomBytes(10_000);
    await sendAttachment(world.sandbox, world.bob, world.device, image, { body: 'look' });
    await until(() => seen.length === 1, 20_000, 'the message');
    const [a] = seen[0]!.attachments ?? [];
    assert.equal(seen[0]!.body, 'look');
    assert.ok(a?.data);
    assert.deepEqual(Buffer.from(a.data), image);
    assert.equal(a.path, undefined);
  });

  it('metadata only: nothing downloaded, the message still emitted', async () => {
    world.client.setAttachments({ mode: 'metadata' });
    const seen = messages(world);
    await sendAttachment(world.sandbox, world.bob, world.device, crypto.randomBytes(100));
    await until(() => seen.length === 1, 20_000, 'the message');
    const [a] = seen[0]!.attachments ?? [];
    assert.equal(a?.size, 100);
    assert.equal(a?.path, undefined);
    assert.equal(a?.data, undefined);
    assert.equal(a?.failed, undefined);
  });

  it('a tampered file is refused (MAC mismatch) and the message emitted, marked failed', async () => {
    world.client.setAttachments({ mode: 'buffers', retryDelayMs: 50 });
    const seen = messages(world);
    // Flip one byte of the stored file as the phone's message is on its way: store, tamper, send.
    const image = crypto.randomBytes(2000);
    const enc = encryptAttachment(image, crypto.randomBytes(64), { pad: true });
    const cdnKey = 'tampered';
    const file = Buffer.from(enc.file);
    file[40] = file[40]! ^ 1;
    await world.sandbox.server.storeAttachmentOnCdn(3, cdnKey, file);
    await world.bob.sendRaw(
      world.device,
      {
        content: {
          dataMessage: {
            ...EMPTY_DATA_MESSAGE,
            timestamp: BigInt(Date.now()),
            body: 'see attached',
            attachments: [
              {
                attachmentIdentifier: { cdnKey },
                cdnNumber: 3,
                key: enc.keys,
                digest: enc.digest,
                size: enc.size,
                contentType: 'image/jpeg',
              },
            ],
          },
        },
        pniSignatureMessage: null,
        senderKeyDistributionMessage: null,
      } as never,
      {} as never,
    );
    await until(() => seen.length === 1, 20_000, 'the message');
    const [a] = seen[0]!.attachments ?? [];
    assert.equal(a?.failed?.code, 'MAC_MISMATCH');
    assert.match(a.failed.message, /MAC mismatch/);
    assert.equal(a.data, undefined);
  });

  it('a download over the cap is refused before it is read whole, and marked TOO_LARGE', async () => {
    world.client.setAttachments({ mode: 'buffers', maxBytes: 1024, retryDelayMs: 50 });
    const seen = messages(world);
    await sendAttachment(world.sandbox, world.bob, world.device, crypto.randomBytes(200_000));
    await until(() => seen.length === 1, 20_000, 'the message');
    const [a] = seen[0]!.attachments ?? [];
    assert.equal(a?.failed?.code, 'TOO_LARGE');
    assert.match(a.failed.message, /larger than 1024 bytes/);
  });

  it('a missing file is retried, then the message is emitted with the attachment failed', async () => {
    world.client.setAttachments({ mode: 'buffers', tries: 3, retryDelayMs: 20 });
    const seen = messages(world);
    const key = await sendAttachment(
      world.sandbox,
      world.bob,
      world.device,
      crypto.randomBytes(10),
    );
    fs.rmSync(path.join(world.sandbox.cdn3Path, 'attachments', key), { force: true });
    await until(() => seen.length === 1, 20_000, 'the message');
    const [a] = seen[0]!.attachments ?? [];
    assert.ok(a?.failed, JSON.stringify(a));
  });

  it('a close mid-download loses nothing: the row stays pending and the next start emits it once', async () => {
    // The file is not there yet: the first try fails and the retry waits long, as the client closes.
    world.client.setAttachments({ mode: 'buffers', tries: 2, retryDelayMs: 60_000 });
    const seen = messages(world);
    const image = crypto.randomBytes(1500);
    const enc = encryptAttachment(image, crypto.randomBytes(64), { pad: true });
    const cdnKey = 'late';
    await world.bob.sendRaw(
      world.device,
      {
        content: {
          dataMessage: {
            ...EMPTY_DATA_MESSAGE,
            timestamp: BigInt(Date.now()),
            body: 'later',
            attachments: [
              {
                attachmentIdentifier: { cdnKey },
                cdnNumber: 3,
                key: enc.keys,
                digest: enc.digest,
                size: enc.size,
                contentType: 'image/png',
              },
            ],
          },
        },
        pniSignatureMessage: null,
        senderKeyDistributionMessage: null,
      } as never,
      {} as never,
    );
    const store = inspect(world.client).store();
    assert.ok(store);
    await until(() => store.received.listPending().length === 1, 20_000, 'the recorded row');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(seen.length, 0, 'not emitted while its download waits');
    const dataFile = world.client.options.dataFile;
    await world.client.close();
    await world.sandbox.server.storeAttachmentOnCdn(3, cdnKey, Buffer.from(enc.file));
    const again = await openClient(world.sandbox, dataFile, {
      attachments: { mode: 'buffers', retryDelayMs: 50 },
    });
    const after = messages({ client: again });
    await again.connect();
    await until(() => after.length === 1, 20_000, 'the replayed message');
    assert.equal(after[0]!.body, 'later');
    assert.deepEqual(Buffer.from(after[0]!.attachments![0]!.data!), image);
    await again.idle();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(after.length, 1, 'once');
    assert.equal(seen.length, 0);
  });
});
