/**
 * signal-out's attachments against the sandbox: a Buffer msg.payload, a file path (relative to
 * Node-RED's file working directory) and the object form of msg.attachments each reach Bob's phone
 * as AttachmentPointers whose files, fetched from the mock's CDN and decrypted independently
 * (cdn-attachment.ts), equal what the flow sent, with the content type sniffed and an image's size
 * read when the flow gave none; text over 2,000 bytes goes as a long-text attachment. Then the
 * bad-input table: each bad msg is INVALID_INPUT naming its property, nothing is uploaded or sent,
 * and the node still sends.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import accountNode = require('../../nodes/signal-account');
import outNode = require('../../nodes/signal-out');
import type { NodeMessage } from '../../nodes/lib/red';
import { withTimeout } from '../harness/sandbox';
import { decryptReceived, type ReceivedPointer } from '../harness/cdn-attachment';
import {
  accountConfig,
  helper,
  linkThroughAdminRoutes,
  nextError,
  nextInput,
  phonesPerSuite,
  statusesOf,
  type TestNode,
} from './support';

/** A decodable RGB PNG of the given size (zlib-deflated rows, real CRCs). */
export function makePng(width: number, height: number): Buffer {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    return Buffer.concat([u32(data.length), body, u32(zlib.crc32(body))]);
  };
  const rows = crypto.randomBytes((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) rows[y * (width * 3 + 1)] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', Buffer.concat([u32(width), u32(height), Buffer.from([8, 2, 0, 0, 0])])),
    chunk('IDAT', zlib.deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

interface Sent {
  timestamp?: number;
  results: Array<{ to: string; status: string; error?: { code: string; message: string } }>;
}

describe('nodes: signal-out attachments (Buffer payload, file paths, the object form, long text)', function () {
  this.timeout(90_000);
  const world = phonesPerSuite();
  // One account linked for the suite; its flow unloads (this inner after) before the sandbox closes.
  describe('one linked account', () => {
    let dataDir = '';
    let workDir = '';
    let sends = 0;
    let good = 0;
    const node = (id: string) => helper.getNode(id) as TestNode;

    before(async () => {
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-out-att-'));
      workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-out-att-files-'));
      helper.settings({ signalAccountDataDir: dataDir, fileWorkingDirectory: workDir });
      await helper.load(
        [accountNode, outNode],
        [
          accountConfig(world.sandbox, 'acct1', 'Alice'),
          { id: 'out1', type: 'signal-out', account: 'acct1', to: '', wires: [['sink']] },
          { id: 'sink', type: 'helper' },
        ],
      );
      await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    });
    after(async () => {
      await helper.unload();
      helper.settings({});
      fs.rmSync(dataDir, { recursive: true, force: true });
      fs.rmSync(workDir, { recursive: true, force: true });
    });

    /** msg into out1; its output msg.signal once sent to Bob. */
    async function send(msg: NodeMessage): Promise<Sent> {
      const topic = `att ${++sends}`;
      const out = nextInput(node('sink'), (m) => m.topic === topic, 60_000);
      const err = nextError(node('out1'), 60_000).catch(() => undefined);
      node('out1').receive({ to: world.bob.device.aci, ...msg, topic });
      const signal = (await Promise.race([
        out,
        err.then((e) => {
          if (e) throw e;
          return new Promise<never>(() => undefined);
        }),
      ])) as NodeMessage;
      const s = signal.signal as Sent;
      assert.deepEqual(
        s.results.map((r) => r.status),
        ['sent'],
        JSON.stringify(s.results),
      );
      return s;
    }

    const bobMessage = () => withTimeout(world.bob.waitForMessage(), 30_000, 'bob message');
    const pointersOf = (m: { dataMessage: unknown }) =>
      ((m.dataMessage as { attachments?: ReceivedPointer[] }).attachments ??
        []) as ReceivedPointer[];
    const cdnFiles = () => {
      const dir = path.join(world.sandbox.cdn3Path, 'attachments');
      return fs.existsSync(dir) ? fs.readdirSync(dir).length : 0;
    };

    it('a Buffer msg.payload goes as one image, msg.caption as its text; type and size read from the bytes', async () => {
      const png = makePng(37, 21);
      await send({ payload: png, caption: 'Motion at the front door' });
      const m = await bobMessage();
      assert.equal(m.body, 'Motion at the front door');
      const [p, ...rest] = pointersOf(m);
      assert.ok(p);
      assert.equal(rest.length, 0);
      assert.equal(p.contentType, 'image/png');
      assert.equal(p.width, 37);
      assert.equal(p.height, 21);
      assert.ok(!p.fileName, 'no file name for an image, as Signal sends');
      assert.deepEqual(decryptReceived(world.sandbox, p), png);
      assert.deepEqual(statusesOf('out1').at(-1), {
        fill: 'green',
        shape: 'dot',
        text: 'sent to 1',
      });
    });

    it('a file path, relative to the file working directory: its name and the sniffed type go with it', async () => {
      const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), crypto.randomBytes(300_000)]);
      fs.writeFileSync(path.join(workDir, 'weekly report.pdf'), pdf);
      await send({ payload: 'the report', attachments: ['weekly report.pdf'] });
      const m = await bobMessage();
      assert.equal(m.body, 'the report');
      const [p] = pointersOf(m);
      assert.ok(p);
      assert.equal(p.contentType, 'application/pdf');
      assert.equal(p.fileName, 'weekly report.pdf');
      assert.equal(Number(p.size), pdf.length);
      assert.deepEqual(decryptReceived(world.sandbox, p), pdf);
    });

    it('the object form: caption, given size and type, a voice note, several in order, no text', async () => {
      const png = makePng(8, 8);
      const voice = Buffer.concat([Buffer.from('OggS\0\x02'), crypto.randomBytes(4000)]);
      const voicePath = path.join(workDir, 'note.ogg');
      fs.writeFileSync(voicePath, voice);
      const csv = Buffer.from('time,temp\n10:00,21.5\n');
      await send({
        attachments: [
          { data: png, caption: 'the left one', width: 800, height: 600 },
          { path: voicePath, voiceNote: true },
          // size is signal-in's field: a received entry can be forwarded as it is.
          { data: csv, fileName: 'temps.csv', size: csv.length },
          { data: csv, contentType: 'text/plain', fileName: 'temps.txt' },
        ],
      });
      const m = await bobMessage();
      assert.equal(m.body, '');
      const [a, b, c, d] = pointersOf(m);
      assert.ok(a && b && c && d);
      assert.equal(a.caption, 'the left one');
      assert.equal(a.width, 800, 'the flow’s size wins over the sniffed one');
      assert.equal(a.height, 600);
      assert.deepEqual(decryptReceived(world.sandbox, a), png);
      assert.equal(b.contentType, 'audio/ogg');
      assert.equal((b.flags ?? 0) & 1, 1, 'VOICE_MESSAGE');
      assert.deepEqual(decryptReceived(world.sandbox, b), voice);
      assert.equal(c.contentType, 'text/csv', 'text is typed by its name');
      assert.equal(c.fileName, 'temps.csv');
      assert.deepEqual(decryptReceived(world.sandbox, c), csv);
      assert.equal(d.contentType, 'text/plain', 'a given type is kept');
    });

    it('text over 2,000 bytes: the start inline, the whole text as a long-text attachment', async () => {
      const text = `${'Status report. '.repeat(400)}end ✓`;
      assert.ok(Buffer.byteLength(text) > 2000);
      await send({ payload: text });
      const m = await bobMessage();
      assert.ok(Buffer.byteLength(m.body) <= 2000, `${Buffer.byteLength(m.body)} bytes inline`);
      assert.ok(text.startsWith(m.body));
      const long = pointersOf(m).find((p) => p.contentType === 'text/x-signal-plain');
      assert.ok(long, 'a text/x-signal-plain attachment');
      assert.equal(decryptReceived(world.sandbox, long).toString('utf8'), text);
    });

    describe('bad input: INVALID_INPUT naming it, nothing uploaded or sent', () => {
      const rows: Array<{ name: string; msg: () => NodeMessage; message: RegExp }> = [
        {
          name: 'a missing file',
          msg: () => ({ attachments: ['no-such-snapshot.jpg'] }),
          message: /^msg\.attachments\[0\]: no such file .*no-such-snapshot\.jpg$/,
        },
        {
          name: 'a directory',
          msg: () => ({ attachments: [{ path: os.tmpdir() }] }),
          message: /^msg\.attachments\[0\]\.path: .* is a directory, not a file$/,
        },
        {
          name: 'an empty Buffer payload',
          msg: () => ({ payload: Buffer.alloc(0) }),
          message: /^msg\.payload is an empty Buffer: nothing to send$/,
        },
        {
          name: 'an empty Buffer in the object form',
          msg: () => ({ payload: 'x', attachments: [{ data: Buffer.alloc(0) }] }),
          message: /^msg\.attachments\[0\]\.data is an empty Buffer/,
        },
        {
          name: 'an empty file',
          msg: () => {
            fs.writeFileSync(path.join(workDir, 'empty.bin'), '');
            return { attachments: ['empty.bin'] };
          },
          message: /^msg\.attachments\[0\]: .*empty\.bin is empty/,
        },
        {
          name: '33 attachments',
          msg: () => ({ attachments: Array.from({ length: 33 }, () => makePng(2, 2)) }),
          message: /^Too many attachments: 33 in msg\.attachments, .* at most 32/,
        },
        {
          name: 'a Buffer payload and 32 attachments (33 in all)',
          msg: () => ({
            payload: makePng(2, 2),
            attachments: Array.from({ length: 32 }, () => makePng(2, 2)),
          }),
          message: /^Too many attachments: 33 \(msg\.payload and msg\.attachments\)/,
        },
        {
          name: 'a file over 100 MiB (a sparse file: never read whole)',
          msg: () => {
            const p = path.join(workDir, 'huge.mp4');
            const fd = fs.openSync(p, 'w');
            fs.ftruncateSync(fd, 100 * 1024 * 1024 + 1);
            fs.closeSync(fd);
            return { attachments: [p] };
          },
          message:
            /^msg\.attachments\[0\]: .*huge\.mp4 is 100\.0 MiB, over Signal's limit of 100 MiB/,
        },
        {
          name: 'a URL',
          msg: () => ({ attachments: ['https://camera.local/snapshot.jpg'] }),
          message:
            /^msg\.attachments\[0\] is a URL .*does not fetch URLs.*"http request" node \(Return: "a binary buffer"\)/,
        },
        {
          name: 'a URL as the object’s path',
          msg: () => ({ attachments: [{ path: 'http://camera.local/snapshot.jpg' }] }),
          message: /^msg\.attachments\[0\]\.path is a URL/,
        },
        {
          name: 'one bad entry after good ones: nothing of the good ones goes',
          msg: () => ({ attachments: [makePng(3, 3), 'missing.png'] }),
          message: /^msg\.attachments\[1\]: no such file/,
        },
        {
          name: 'both data and path',
          msg: () => ({ attachments: [{ data: Buffer.from('x'), path: '/etc/hostname' }] }),
          message: /^msg\.attachments\[0\] must have exactly one of data .* but it has both$/,
        },
        {
          name: 'neither data nor path',
          msg: () => ({ attachments: [{ fileName: 'x.txt' }] }),
          message: /but it has neither$/,
        },
        {
          name: 'a misspelt field',
          msg: () => ({ attachments: [{ data: Buffer.from('x'), filename: 'x.txt' }] }),
          message:
            /^msg\.attachments\[0\]\.filename is not an attachment field \(did you mean fileName\?\)/,
        },
        {
          name: 'a number as an entry',
          msg: () => ({ attachments: [42] }),
          message:
            /^msg\.attachments\[0\] must be a Buffer, a file path or an object .* a number \(42\)$/,
        },
        {
          name: 'data that is not a Buffer',
          msg: () => ({ attachments: [{ data: 'aGVsbG8=' }] }),
          message: /^msg\.attachments\[0\]\.data must be a Buffer, but it is text/,
        },
        {
          name: 'a width that is not a whole number',
          msg: () => ({ attachments: [{ data: makePng(2, 2), width: 1.5 }] }),
          message: /^msg\.attachments\[0\]\.width must be a whole number of pixels/,
        },
        {
          name: 'voiceNote not a boolean',
          msg: () => ({ attachments: [{ data: makePng(2, 2), voiceNote: 'yes' }] }),
          message: /^msg\.attachments\[0\]\.voiceNote must be true or false/,
        },
        {
          name: 'a content type that is no MIME type',
          msg: () => ({ attachments: [{ data: makePng(2, 2), contentType: 'png' }] }),
          message: /^msg\.attachments\[0\]\.contentType must be a MIME type/,
        },
        {
          name: 'msg.caption beside a text payload',
          msg: () => ({ payload: 'hello', caption: 'and this?', attachments: [makePng(2, 2)] }),
          message: /^msg\.caption and a text msg\.payload are both set/,
        },
        {
          name: 'msg.caption that is not text',
          msg: () => ({ payload: makePng(2, 2), caption: 42 }),
          message: /^msg\.caption must be text/,
        },
        {
          name: 'msg.caption with nothing attached',
          msg: () => ({ caption: 'a picture' }),
          message: /^msg\.caption is the text of an attachment, but there is none/,
        },
        {
          name: 'an object payload beside attachments',
          msg: () => ({ payload: { text: 'hi' }, attachments: [makePng(2, 2)] }),
          message:
            /^msg\.payload must be text or a Buffer beside msg\.attachments, but it is an object/,
        },
        {
          name: 'attachments with a reaction',
          msg: () => ({
            reaction: { emoji: '👍', timestamp: Date.now(), author: world.bob.device.aci },
            attachments: [makePng(2, 2)],
          }),
          message: /^msg\.attachments cannot go with msg\.reaction/,
        },
        {
          name: 'attachments with an edit',
          msg: () => ({ edit: Date.now(), payload: 'fixed', attachments: [makePng(2, 2)] }),
          message: /^msg\.attachments cannot go with msg\.edit/,
        },
        {
          name: 'a Buffer payload for an edit',
          msg: () => ({ edit: Date.now(), payload: makePng(2, 2) }),
          message: /^msg\.payload must be text .* but it is a Buffer$/,
        },
        {
          name: 'text over 64 KiB',
          msg: () => ({ payload: 'x'.repeat(64 * 1024 + 1) }),
          message: /^msg\.payload is too long: 65537 bytes/,
        },
      ];

      for (const row of rows) {
        it(row.name, async () => {
          const before = cdnFiles();
          const err = nextError(node('out1'));
          node('out1').receive({ to: world.bob.device.aci, ...row.msg() });
          const e = await err;
          assert.equal(e.code, 'INVALID_INPUT', e.message);
          assert.match(e.message, row.message);
          assert.deepEqual(statusesOf('out1').at(-1), {
            fill: 'red',
            shape: 'ring',
            text: 'invalid input',
          });
          // Nothing uploaded, and Bob's next message is the good one after it.
          const text = `still works ${++good}`;
          await send({ payload: text });
          assert.equal((await bobMessage()).body, text);
          assert.equal(cdnFiles(), before, 'no file reached the CDN');
        });
      }
    });
  });
});
