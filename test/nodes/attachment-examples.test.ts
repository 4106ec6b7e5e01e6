/**
 * The attachment examples end to end against the mock server. "Camera snapshot alert": its inject
 * and function nodes make a PNG and signal-out sends it; Bob's phone receives the picture, which the
 * test fetches from the mock's CDN and decrypts independently (cdn-attachment.ts): the bytes the
 * function made, a valid 160×120 PNG, with its caption as the text. "Save received files": Bob
 * sends a picture (encrypted and stored on the mock's CDN as his app would); signal-in saves it
 * under <userDir>/signal/attachments/<account>/ and the function reports the saved path, whose
 * bytes equal what Bob sent.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import accountNode = require('../../nodes/signal-account');
import inNode = require('../../nodes/signal-in');
import outNode = require('../../nodes/signal-out');
import type { NodeMessage } from '../../nodes/lib/red';
import { introduce, sendAttachmentFrom } from '../harness/mock-phone';
import { withTimeout } from '../harness/sandbox';
import { decryptReceived, type ReceivedPointer } from '../harness/cdn-attachment';
import {
  accountConfig,
  freshDataDirPerTest,
  helper,
  linkThroughAdminRoutes,
  nextInput,
  phonesPerSuite,
  type AccountTestNode,
  type TestNode,
} from './support';
import { coreNode, examplesDir, type FlowNode } from './examples-support';

const core = coreNode;
const CORE_NODES = [
  core('common/20-inject.js'),
  core('common/21-debug.js'),
  core('common/90-comment.js'),
  core('function/10-function.js'),
];

/** PNG's chunks, each CRC checked; the IHDR size and the inflated pixel bytes. */
function readPng(png: Buffer): { width: number; height: number; pixels: Buffer } {
  assert.deepEqual(png.subarray(0, 8), Buffer.from([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10]));
  let at = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  for (;;) {
    const length = png.readUInt32BE(at);
    const type = png.toString('ascii', at + 4, at + 8);
    const body = png.subarray(at + 4, at + 8 + length);
    assert.equal(png.readUInt32BE(at + 8 + length), zlib.crc32(body), `${type} CRC`);
    if (type === 'IHDR') {
      width = png.readUInt32BE(at + 8);
      height = png.readUInt32BE(at + 12);
    }
    if (type === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + length));
    at += 12 + length;
    if (type === 'IEND') break;
  }
  assert.equal(at, png.length, 'nothing after IEND');
  return { width, height, pixels: zlib.inflateSync(Buffer.concat(idat)) };
}

describe('examples: the attachment examples end to end', function () {
  this.timeout(90_000);
  const world = phonesPerSuite();
  const data = freshDataDirPerTest('sigflow-att-examples-');

  /** An example as the editor imports it, on a tab, its account pointed at the sandbox. */
  function load(file: string, extra: FlowNode[] = []): FlowNode[] {
    const example = JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
    return [
      { id: 'tab', type: 'tab', label: 'example' },
      ...example.map((n) =>
        n.type === 'signal-account'
          ? (accountConfig(world.sandbox, n.id, String(n.name)) as FlowNode)
          : { ...n, z: 'tab' },
      ),
      ...extra,
    ];
  }

  it('"Camera snapshot alert": Bob receives the generated PNG with its caption, bytes equal', async () => {
    const nodes = load('Camera snapshot alert.json', [{ id: 'sink', type: 'helper', z: 'tab' }]);
    const inject = nodes.find((n) => n.type === 'inject');
    const fn = nodes.find((n) => n.type === 'function');
    const account = nodes.find((n) => n.type === 'signal-account');
    assert.ok(inject && fn && account);
    // As a user sets the recipient: the inject node's msg.to.
    inject.props = (inject.props as Array<Record<string, string>>).map((p) =>
      p.p === 'to' ? { ...p, v: world.bob.device.number } : p,
    );
    // The test also watches the function's output: the bytes it made.
    fn.wires = [[...((fn.wires as string[][])[0] ?? []), 'sink']];
    await helper.load([accountNode, outNode, ...CORE_NODES] as never, nodes);
    await linkThroughAdminRoutes(world.sandbox, account.id, world.alice);

    const made = nextInput(helper.getNode('sink') as TestNode);
    (helper.getNode(inject.id) as TestNode).receive({} as NodeMessage);
    const snapshot = await made;
    assert.ok(Buffer.isBuffer(snapshot.payload));
    const png = readPng(snapshot.payload);
    assert.deepEqual([png.width, png.height], [160, 120]);
    assert.equal(png.pixels.length, (160 * 3 + 1) * 120);

    const m = await withTimeout(world.bob.waitForMessage(), 30_000, 'the snapshot');
    assert.match(m.body, /^Motion at the front door, /);
    assert.equal(m.body, snapshot.caption);
    const [pointer, ...rest] = (m.dataMessage.attachments ?? []) as ReceivedPointer[];
    assert.ok(pointer);
    assert.equal(rest.length, 0);
    assert.equal(pointer.contentType, 'image/png');
    assert.equal(pointer.width, 160);
    assert.equal(pointer.height, 120);
    assert.deepEqual(decryptReceived(world.sandbox, pointer), snapshot.payload);
  });

  it('"Save received files": the picture Bob sends is saved, and the report names its path', async () => {
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-att-userdir-'));
    try {
      helper.settings({ signalAccountDataDir: data.dir, userDir });
      const nodes = load('Save received files.json', [{ id: 'sink', type: 'helper', z: 'tab' }]);
      const fn = nodes.find((n) => n.type === 'function');
      const account = nodes.find((n) => n.type === 'signal-account');
      assert.ok(fn && account);
      fn.wires = [[...((fn.wires as string[][])[0] ?? []), 'sink']];
      await helper.load([accountNode, inNode, ...CORE_NODES] as never, nodes);
      await linkThroughAdminRoutes(world.sandbox, account.id, world.alice);
      const client = await (helper.getNode(account.id) as AccountTestNode).client();
      const device = await introduce(world.sandbox, client, world.bob);

      // Bob's app: encrypt and pad the file, store it on the CDN, send its pointer with a text.
      const image = crypto.randomBytes(20_000);
      const reported = nextInput(helper.getNode('sink') as TestNode, () => true, 30_000);
      await sendAttachmentFrom(world.sandbox, world.bob, device, image, {
        pointer: { contentType: 'image/jpeg', fileName: 'receipt.jpg' },
        dataMessage: { body: 'the receipt' },
      });
      const report = (await reported).payload as {
        from: string;
        text: string;
        saved: string[];
        failed: number;
      };
      assert.equal(report.text, 'the receipt');
      assert.equal(report.failed, 0);
      assert.ok(
        [world.bob.device.aci, world.bob.device.number, 'Bob'].includes(report.from),
        report.from,
      );
      assert.equal(report.saved.length, 1);
      const [saved] = report.saved;
      assert.ok(saved);
      assert.equal(path.dirname(saved), path.join(userDir, 'signal', 'attachments', account.id));
      assert.deepEqual(fs.readFileSync(saved), image);
    } finally {
      await helper.unload();
      fs.rmSync(userDir, { recursive: true, force: true });
    }
  });
});
