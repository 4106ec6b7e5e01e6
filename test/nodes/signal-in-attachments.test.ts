/**
 * signal-in's *Attachments* option end to end: the phone encrypts and pads an image as Signal's apps
 * do, stores it on the mock's CDN 3 and sends its pointer; signal-in emits it saved to a folder or
 * as a Buffer, bytes equal, on msg.signal.attachments.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import accountNode = require('../../nodes/signal-account');
import inNode = require('../../nodes/signal-in');
import { introduce, sendAttachmentFrom, type MockDevice } from '../harness/mock-phone';
import { until } from '../harness/wait';
import {
  accountConfig,
  freshDataDirPerTest,
  helper,
  linkThroughAdminRoutes,
  type AccountTestNode,
  type TestNode,
  phonesPerSuite,
} from './support';

describe('nodes: signal-in attachments', function () {
  this.timeout(90_000);
  const world = phonesPerSuite();
  freshDataDirPerTest('sigflow-signal-in-att-');

  async function linked(inConfig: Record<string, unknown>) {
    await helper.load(
      [accountNode, inNode],
      [
        accountConfig(world.sandbox, 'acct1', 'Alice'),
        { id: 'in1', type: 'signal-in', account: 'acct1', wires: [['inSink']], ...inConfig },
        { id: 'inSink', type: 'helper' },
      ],
    );
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    const client = await (helper.getNode('acct1') as AccountTestNode).client();
    const device = await introduce(world.sandbox, client, world.bob);
    const msgs: Array<Record<string, unknown>> = [];
    (helper.getNode('inSink') as TestNode).on('input', (m: Record<string, unknown>) =>
      msgs.push(m),
    );
    return { device, msgs };
  }

  async function sendImage(device: MockDevice, image: Buffer) {
    await sendAttachmentFrom(world.sandbox, world.bob, device, image, {
      pointer: { contentType: 'image/jpeg', fileName: 'photo.jpg' },
    });
  }

  type Att = { path?: string; data?: Buffer; contentType: string; size: number };
  const attachmentsOf = (m: Record<string, unknown>) =>
    (m.signal as { attachments?: Att[] }).attachments ?? [];

  it('save to a folder: an attachment-only message, the file bytes equal', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-in-att-'));
    try {
      const { device, msgs } = await linked({ attachments: 'files', attachmentsDir: dir });
      const image = crypto.randomBytes(5000);
      await sendImage(device, image);
      await until(() => msgs.length === 1, 20_000, 'the message');
      assert.equal(msgs[0]!.payload, '');
      const [a] = attachmentsOf(msgs[0]!);
      assert.ok(a?.path, JSON.stringify(a));
      assert.equal(path.dirname(a.path), dir);
      assert.deepEqual(fs.readFileSync(a.path), image);
      assert.equal(a.contentType, 'image/jpeg');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('as Buffers: msg.signal.attachments[0].data is a Buffer of the bytes', async () => {
    const { device, msgs } = await linked({ attachments: 'buffers' });
    const image = crypto.randomBytes(7000);
    await sendImage(device, image);
    await until(() => msgs.length === 1, 20_000, 'the message');
    const [a] = attachmentsOf(msgs[0]!);
    assert.ok(Buffer.isBuffer(a?.data));
    assert.deepEqual(a.data, image);
    assert.equal(a.path, undefined);
  });
});
